"""Run an experiment's commands, or regenerate every table from the result files (experiments/INDEX.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peftbert.errors import UserError

from . import runner, tables
from .catalog import ROOT, ExperimentError, all_experiments, find


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=ROOT, help="the experiments folder (default: this one)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an experiment's commands into runs/ID/ and copy its result files")
    r.add_argument("id", help="the experiment's folder name (see `list`)")
    r.add_argument("--dry-run", action="store_true", help="print the commands and the copies; run nothing")
    r.add_argument("--runs", type=Path, default=runner.REPO / "runs", help="where runs/ID/ is made (default: runs)")
    t = sub.add_parser("tables", help="regenerate every experiment README, INDEX.md and README.md's results block")
    t.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is stale")
    t.add_argument("--readme", type=Path, default=None, help="the README whose results block is filled "
                                                              "(default: the repository's)")
    sub.add_parser("list", help="every experiment with its status")
    args = p.parse_args(argv)
    try:
        if args.command == "run":
            exp = find(args.id, args.root)
            runner.run(exp, args.runs, args.dry_run)
            if not args.dry_run:
                tables.write_all(args.root)
        elif args.command == "tables":
            stale = tables.write_all(args.root, args.readme, check=args.check)
            return 1 if args.check and stale else 0
        else:
            for e in all_experiments(args.root):
                print(f"{e.id:32s} {e.status:10s} {e.headline}")
    except (ExperimentError, UserError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
