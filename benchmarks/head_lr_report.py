"""The task head at 10x the learning rate vs the preset, full fine-tuning (benchmarks/run_head_lr.sh), from JSON only.

    python benchmarks/head_lr_report.py   # -> benchmarks/head_lr.md
Validation macro-F1 is what a choice may rest on; test is reported beside it.
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = [  # (regime, setting, files)
    ("short: 3,000 rows, 3 epochs", "preset (head at 1x)", "speed/short/grouped-s*.json"),
    ("short: 3,000 rows, 3 epochs", "head at 10x", "speed/short/head10-s*.json"),
    ("short: 3,000 rows, 3 epochs", "Trainer script (reference)", "speed/short/trainer-s*.json"),
    ("full data, preset (3 epochs)", "preset (head at 1x)", "grouping/after-full-s*.json"),
    ("full data, preset (3 epochs)", "head at 10x", "head_lr/full-head10-s*.json"),
]


def cell(xs):
    return "–" if not xs else f"{statistics.mean(xs):.4f}" + (f" ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else "")


def main():
    lines = ["# Full fine-tuning with the task head at 10x the learning rate", "",
             "Twitter finance sentiment (test = valid.csv), embedded MiniLM, length-grouped batches, seeds 42, 1, 2. "
             "Runs: `bash benchmarks/run_head_lr.sh`; this table: `python benchmarks/head_lr_report.py`. "
             "Validation is the split a choice may rest on (the Trainer script has none); test is reported beside it.",
             "", "| regime | setting | seeds | validation macro-F1 | test accuracy | test macro-F1 |",
             "|---|---|---|---|---|---|"]
    for regime, setting, pattern in ROWS:
        runs = [json.loads(f.read_text()) for f in sorted(HERE.glob(pattern))]
        if not runs:
            continue
        val = [m["validation"]["macro_f1"] for m in runs if m.get("validation")]
        lines.append(f"| {regime} | {setting} | {' '.join(str(m['seed']) for m in runs)} | {cell(val)} | "
                     f"{cell([m['test']['accuracy'] for m in runs])} | {cell([m['test']['macro_f1'] for m in runs])} |")
    (HERE / "head_lr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
