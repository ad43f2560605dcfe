"""The held-out table of benchmarks/nsp/README.md, from the run's metrics.json: python benchmarks/nsp_table.py"""

import json
from pathlib import Path

m = json.loads((Path(__file__).parent / "nsp" / "finance-minilm-metrics.json").read_text())
print("| held-out | MLM loss | perplexity | masked-token accuracy | next-sentence accuracy |")
print("|---|---|---|---|---|")
for name, key in (("before", "heldout_before"), ("after the head warm-up", "heldout_after_head_warmup"),
                  ("after", "heldout_after")):
    r = m[key]
    print(f"| {name} | {r['loss']:.3f} | {r['perplexity']:.1f} | {r['accuracy']:.4f} | {r['nsp_accuracy']:.4f} |")
