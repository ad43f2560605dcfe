"""Rewrite bench tables from every finished run in each directory, and join them as a suite.

    python benchmarks/bench_tables.py OUT [--suite finance] [--add DIR=LABEL ...] [--split validation]

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


def finished_runs(bench_dir: Path, label: str | None = None, split: str = "test") -> list[dict]:
    """Each finished run as bench's tables take it; the model label is the run name less -<method>-s<seed>.
    With a label, the method is shown as 'METHOD (LABEL)': a second recipe of a method gets rows of its own,
    compared with full fine-tuning like any method. With split "validation" the test scores are left out, so
    the tables score validation, the split recipes are chosen on (each run's chosen checkpoint's score: the best
    of its evaluations, a little flattering to runs with more of them)."""
    results = []
    for f in sorted(bench_dir.glob("runs/*/metrics.json")):
        m = json.loads(f.read_text())
        if split == "validation":
            m.pop("test", None)
        suffix = f"-{m['method']}-s{m['seed']}"
        name = f.parent.name
        model_label = name[: -len(suffix)] if name.endswith(suffix) else m["model"]
        if label:
            m["method"] = f"{m['method']} ({label})"
        results.append({"run": f"{label}/{name}" if label else name, "model_label": model_label, **m})
    return results


def in_order(results: list[dict]) -> list[dict]:
    """The embedded model's runs first (paired differences are taken against the first model), added ones last."""
    return sorted(results, key=lambda r: (r["model_label"] != DEFAULT_MODEL, "/" in r["run"], r["run"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="directory of per-task bench directories")
    p.add_argument("--suite", default="finance", help="suite recipe naming the tasks and their groups")
    p.add_argument("--add", action="append", default=[], metavar="DIR=LABEL",
                   help="also table another such directory's runs of OUT's tasks, their methods shown as "
                        "'METHOD (LABEL)'")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="the split scored; validation tables go to OUT/validation/ (OUT's own are test's)")
    args = p.parse_args()
    extra = [tuple(a.split("=", 1)) for a in args.add]
    if any(len(e) != 2 or not e[1] for e in extra):
        sys.exit("--add takes DIR=LABEL, e.g. --add runs/g/bench-lora-small-fomc=lora-small-fomc")
    for d in [args.out, *(Path(d) for d, _ in extra)]:
        if not d.is_dir():
            sys.exit(f"{d} is not a directory: give the OUT of benchmarks/run_best.sh or run_gpu.sh's OUT/da")
    suite = load_suite(args.suite)
    tables = args.out if args.split == "test" else args.out / "validation"
    for task in suite.tasks:
        own = finished_runs(task_dir(args.out, task), split=args.split)
        if own:  # (an added directory's other tasks are left out)
            added = [r for d, label in extra for r in finished_runs(task_dir(Path(d), task), label, args.split)]
            write_reports(task_dir(tables, task), in_order(own + added))
    write_suite_report(suite, tables)
    print((tables / "suite.md").read_text())


if __name__ == "__main__":
    main()
