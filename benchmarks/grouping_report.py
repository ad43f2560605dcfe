"""Accuracy before vs after the fast-training changes (benchmarks/run_grouping.sh), from its JSON files only.

    python benchmarks/grouping_report.py   # -> benchmarks/grouping.md
"""

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    runs = {}
    for f in sorted((HERE / "grouping").glob("*.json")):
        when, method, seed = f.stem.split("-")
        m = json.loads(f.read_text())
        runs.setdefault((method, when), []).append((int(seed[1:]), m["test"]["accuracy"], m["test"]["macro_f1"],
                                                     m["train_samples_per_second"]))
    lines = ["# Length-grouped batching and the other fast paths: accuracy before vs after", "",
             "Twitter finance sentiment (test = valid.csv, 2,388 rows), embedded MiniLM, each method's preset, seeds "
             "42, 1, 2. Before: commit 82c59c1 (random batches, torch dropout, plain AdamW); after: length-grouped "
             "batches, fast CPU dropout, fused AdamW. Runs: `bash benchmarks/run_grouping.sh`; this table: "
             "`python benchmarks/grouping_report.py`. Samples/s are not comparable across rows (some runs shared "
             "the cores); `benchmarks/speed.py` measures speed.", "",
             "| method | code | seeds | test accuracy (mean ± sd) | test macro-F1 (mean ± sd) "
             "| per seed (acc / F1) |",
             "|---|---|---|---|---|---|"]
    for method in ("full", "lora"):
        for when in ("before", "after"):
            rows = sorted(runs.get((method, when), []))
            if not rows:
                continue
            acc, f1 = [r[1] for r in rows], [r[2] for r in rows]
            sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)
            lines.append(f"| {method} | {when} | {' '.join(str(r[0]) for r in rows)} | "
                         f"{statistics.mean(acc):.4f} ± {sd(acc):.4f} | {statistics.mean(f1):.4f} ± {sd(f1):.4f} | "
                         + ", ".join(f"s{r[0]} {r[1]:.4f} / {r[2]:.4f}" for r in rows) + " |")
        pair = [runs.get((method, w)) for w in ("before", "after")]
        if all(pair):
            d_acc = statistics.mean(r[1] for r in pair[1]) - statistics.mean(r[1] for r in pair[0])
            d_f1 = statistics.mean(r[2] for r in pair[1]) - statistics.mean(r[2] for r in pair[0])
            lines.append(f"| {method} | after − before | | {100 * d_acc:+.2f} points | {100 * d_f1:+.2f} points | |")
    (HERE / "grouping.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
