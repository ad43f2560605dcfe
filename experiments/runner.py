"""`python -m experiments run ID`: an experiment's commands into runs/ID/, then its result files into results/.

The commands are shell lines from experiment.yaml, `{out}` standing for runs/ID. They run one after another
from the repository root; the first that fails stops the run. A rerun continues: bench keeps finished cells,
search finished trials, adapt a finished run. `collect` names what is copied back: globs under {out}, copied
with their relative paths into results/ (or results/<to>/; `rename: parent` names a copy after its folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .catalog import ROOT, Experiment, ExperimentError

REPO = ROOT.parent


def commands(exp: Experiment, out: Path) -> list[str]:
    return [c.replace("{out}", str(out)).rstrip() for c in exp.commands]


def run(exp: Experiment, runs_root: Path, dry_run: bool = False, log=print) -> list[Path]:
    """Run the commands (print them only, with dry_run) and copy the result files; the files copied."""
    out = runs_root / exp.id
    if exp.status == "superseded" and not dry_run:
        raise ExperimentError(f"{exp.id} is superseded: its commands are kept as they ran, at an older commit's "
                              "flags and presets; read them with --dry-run and run them by hand if you mean to")
    for i, command in enumerate(commands(exp, out), 1):
        log(f"$ {command}")
        if dry_run:
            continue
        out.mkdir(parents=True, exist_ok=True)
        rc = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=REPO, env=environment()).returncode
        if rc:
            raise ExperimentError(f"{exp.id}: command {i} of {len(exp.commands)} failed (exit {rc}); fix it and "
                                  f"rerun `python -m experiments run {exp.id}`, which keeps what finished")
    return collect(exp, out, dry_run, log)


def environment() -> dict:
    """This environment, with this Python's bin folder first: `peftbert` and `python` are the ones running us."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def collect(exp: Experiment, out: Path, dry_run: bool, log=print) -> list[Path]:
    copied = []
    for entry in exp.collect:
        source = out / entry.get("from", ".")
        target = exp.results / entry.get("to", ".")
        files = sorted({f for pattern in entry["files"] for f in source.glob(pattern) if f.is_file()})
        if not files and not dry_run:
            raise ExperimentError(f"{exp.id}: nothing under {source} matches {', '.join(entry['files'])}; "
                                  "did the commands write there?")
        for f in files:
            # rename: parent keeps a cell's metrics.json as <cell>.json, the layout older results used
            dest = (target / f"{f.parent.name}{f.suffix}" if entry.get("rename") == "parent"
                    else target / f.relative_to(source))
            log(f"{'would copy' if dry_run else 'copy'} {f} -> {dest}")
            if not dry_run:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dest)
                copied.append(dest)
    return copied
