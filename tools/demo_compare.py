"""The end of `make demo`: the tuned run's test scores beside the TF-IDF + logistic-regression baseline's.

    python tools/demo_compare.py RUN_DIR     (the run's task must be a named task in the data directory)
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tfidf_baseline import tfidf_scores  # noqa: E402

run = Path(sys.argv[1])
m = json.loads((run / "metrics.json").read_text())
base = tfidf_scores(m["task"])
rows = [(f"peftbert {m['method']} from {Path(m['model']).name} ({m['trainable_percent']:.1f}% trained)", m["test"]),
        ("TF-IDF + logistic regression", base)]
print(f"\n{m['task']}, test set of {m['test']['n']} texts")
print(f"  {'':44s} accuracy  macro-F1")
for name, r in rows:
    print(f"  {name:44s} {r['accuracy']:.4f}    {r['macro_f1']:.4f}")
