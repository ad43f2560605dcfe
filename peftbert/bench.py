"""`peftbert bench`: one task, a grid of models x methods x seeds, then tables and a plot.

Every cell is an ordinary `tune` run in <output>/runs/<model>-<method>-s<seed>, so each keeps its own
metrics.json, recipe.yaml and weights. A cell whose metrics.json exists is finished and skipped: an
interrupted grid continues where it stopped when the same command is run again. The tables are
rewritten after every cell (see bench_report.py), so a long grid can be read while it runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import UserError
from .methods.budget import KNOBS


@dataclass
class Cell:
    model: str
    method: str
    seed: int
    cfg: object  # the cell's RunConfig, built (and so validated) before any cell runs

    @property
    def name(self) -> str:
        return f"{model_label(self.model)}-{self.method}-s{self.seed}"


def model_label(model: str) -> str:
    """A short, path-safe name: 'minilm', 'adapt-finance' for runs/adapt-finance, 'org--bert' for org/bert."""
    p = Path(model)
    return p.name if p.exists() else model.replace("/", "--")


def split_list(text: str, what: str, cast=str) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError(f"--{what} is empty: give a comma-separated list, e.g. --{what} {_EXAMPLES[what]}")
    try:
        items = [cast(x) for x in items]
    except ValueError:
        raise UserError(f"--{what} {text!r}: expected a comma-separated list like {_EXAMPLES[what]}") from None
    if len(set(items)) != len(items):
        raise UserError(f"--{what} {text!r} names an entry twice")
    return items


_EXAMPLES = {"models": "minilm,runs/adapt-finance", "methods": "lora,adapter,adalora", "seeds": "1,2,3"}


def plan(models: list[str], methods: list[str], seeds: list[int], build: Callable[..., object],
         budget: str | None, log=print) -> list[Cell]:
    """Build every cell's config first, so a typo in the last one fails before hours of runs."""
    from .models import resolve_model

    cells = []
    for model in models:
        resolve_model(model)  # a missing directory or unreachable hub fails now, not after the first model's runs
        for method in methods:
            sized = budget if method in KNOBS else None  # full/bitfit/ia3 have no size to set
            for seed in seeds:
                cells.append(Cell(model, method, seed, build(model=model, method=method, seed=seed, budget=sized)))
    unsized = sorted({m for m in methods if m not in KNOBS})
    if budget and unsized:
        log(f"note: --budget sizes {', '.join(m for m in methods if m in KNOBS) or 'none of these methods'}; "
            f"{', '.join(unsized)} run at their own size")
    return cells


def run_bench(cells: list[Cell], out: Path, *, cpu: bool = False, log=print) -> list[dict]:
    from .bench_report import write_reports
    from .tune import run_tune

    runs = out / "runs"
    results = []
    for i, cell in enumerate(cells, 1):
        cell_dir = runs / cell.name
        done = cell_dir / "metrics.json"
        if done.exists():
            log(f"[{i}/{len(cells)}] {cell.name}: done, kept")
        else:
            log(f"[{i}/{len(cells)}] {cell.name}")
            cfg = dataclasses.replace(cell.cfg, output=str(cell_dir))
            run_tune(cfg, overwrite=True, cpu=cpu, log=lambda *a, **k: log("   ", *a, **k))
        results.append({"run": cell.name, "model_label": model_label(cell.model), **json.loads(done.read_text())})
        write_reports(out, results)
    log(f"wrote {out / 'summary.md'}, {out / 'results.csv'} and {out / 'plot.png'}")
    return results
