"""Rewrite bench tables from every finished run in each directory, and join them as a suite.

    python benchmarks/bench_tables.py OUT [--suite finance]

`peftbert bench` tables cover the cells of the command that wrote them; a directory filled by several bench
commands (benchmarks/run_best.sh runs one per recipe: full and lora-all) gets one table of all its runs here.
OUT holds one bench directory per task, named as `bench --suite` names them; OUT/suite.md joins them per group.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from peftbert.bench_report import write_reports
from peftbert.models import DEFAULT_MODEL
from peftbert.suite import load_suite, task_dir, write_suite_report


def finished_runs(bench_dir: Path) -> list[dict]:
    """Each finished run as bench's tables take it; the model label is the run name less -<method>-s<seed>.
    The embedded model's runs come first: paired differences are taken against the first model."""
    results = []
    for f in sorted(bench_dir.glob("runs/*/metrics.json")):
        m = json.loads(f.read_text())
        suffix = f"-{m['method']}-s{m['seed']}"
        name = f.parent.name
        results.append({"run": name, "model_label": name[: -len(suffix)] if name.endswith(suffix) else m["model"],
                        **m})
    return sorted(results, key=lambda r: (r["model_label"] != DEFAULT_MODEL, r["run"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="directory of per-task bench directories")
    p.add_argument("--suite", default="finance", help="suite recipe naming the tasks and their groups")
    args = p.parse_args()
    if not args.out.is_dir():
        sys.exit(f"{args.out} is not a directory: give the OUT of benchmarks/run_best.sh or run_gpu.sh's OUT/da")
    suite = load_suite(args.suite)
    for task in suite.tasks:
        results = finished_runs(task_dir(args.out, task))
        if results:
            write_reports(task_dir(args.out, task), results)
    write_suite_report(suite, args.out)
    print((args.out / "suite.md").read_text())


if __name__ == "__main__":
    main()
