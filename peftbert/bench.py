"""`peftbert bench`: one task, a grid of models x methods x seeds, then tables and a plot.

Every cell is an ordinary `tune` run in <output>/runs/<model>-<method>-s<seed>, so each keeps its own
metrics.json, recipe.yaml and weights. A cell whose metrics.json exists is finished and kept, so an
interrupted grid continues where it stopped when the same command is run again (a cell that crashed
with checkpoints resumes from them). The tables are rewritten after every cell (see bench_report.py),
so a long grid can be read while it runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import TuneConfig, deep_merge, parse_set, yaml_load
from .errors import CheckpointMismatch, UserError
from .methods import METHODS, sizable
from .methods.budget import parse_budget
from .runinfo import check_writable

EXAMPLES = {"models": "minilm,runs/adapt-finance", "methods": "lora,adapter,adalora", "seeds": "1,2,3"}
# set per cell by the grid: a --set of these would silently make every cell the same
GRID_KEYS = {"model": "--models", "method": "--methods", "output": "--output", "train.seed": "--seeds"}
REPORTS = ("results.csv", "summary.csv", "summary.md", "plot.png", "baselines.json")


@dataclass
class Cell:
    model: str
    method: str
    seed: int
    cfg: TuneConfig  # built (and so validated) before any cell runs

    @property
    def name(self) -> str:
        return f"{model_label(self.model)}-{self.method}-s{self.seed}"


def model_label(model: str) -> str:
    """A short, path-safe name: 'minilm', 'adapt-finance' for runs/adapt-finance, 'org--bert' for org/bert."""
    p = Path(model)
    return p.resolve().name if p.exists() else model.replace("/", "--")


def split_list(text: str, what: str, cast=str) -> list:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError(f"--{what} is empty: give a comma-separated list, e.g. --{what} {EXAMPLES[what]}")
    try:
        items = [cast(x) for x in items]
    except ValueError:
        raise UserError(f"--{what} {text!r}: expected a comma-separated list like {EXAMPLES[what]}") from None
    if len(set(items)) != len(items):
        raise UserError(f"--{what} {text!r} names an entry twice")
    return items


def check_overrides(overrides: dict) -> None:
    for key, flag in GRID_KEYS.items():
        head, _, leaf = key.partition(".")
        if head in overrides and (not leaf or leaf in (overrides[head] or {})):
            raise UserError(f"--set {key}=...: bench sets {key} per cell; use {flag} instead")


def plan(models: list[str], methods: list[str], seeds: list[int], *, recipe: str | None, values: dict,
         overrides: list[str] | None, budget: str | None, out: Path, log=print) -> list[Cell]:
    """Build and check every cell first, so a typo in the last one fails before hours of runs.

    `values` are the tune settings given as flags, `overrides` the --set items: the same for every cell.
    """
    from .models import resolve_model
    from .commands.tune import tune_config

    sets = parse_set(overrides)
    check_overrides(sets)
    given = deep_merge(values, sets)
    blocks = [m for m in METHODS if m in given]  # settings of a method apply to that method's cells only
    if set(blocks) - set(methods):
        raise UserError(f"{', '.join(sorted(set(blocks) - set(methods)))} settings given but not in --methods")
    knobs = sizable()
    if budget is not None:
        parse_budget(budget)  # checked even when no method here has a size
    check_output(out)
    check_writable(out)  # before the first cell trains, not at its first write
    labels = [model_label(m) for m in models]
    if "" in labels or len(set(labels)) != len(labels):
        raise UserError(f"--models {','.join(models)}: the run names would be {', '.join(map(repr, labels))}; "
                        "give models whose directory names differ (copy or rename one)")
    cells = []
    for model in models:
        resolve_model(model)  # a missing directory or unreachable hub fails now, not after the first model's runs
        for method in methods:
            sized = budget if method in knobs else None  # full/bitfit/ia3 have no size to set
            for seed in seeds:
                own = {k: v for k, v in given.items() if k not in blocks or k == method}
                cell_values = deep_merge(own, {"model": model, "method": method, "train": {"seed": seed}})
                cell = Cell(model, method, seed, tune_config(recipe, cell_values, sized))
                check_finished(cell, out)
                cells.append(cell)
    unsized = sorted({m for m in methods if m not in knobs})
    if budget and unsized:
        log(f"note: --budget sizes {', '.join(m for m in methods if m in knobs) or 'none of these methods'}; "
            f"{', '.join(unsized)} run at their own size")
    return cells


def check_output(out: Path) -> None:
    """An existing --output must be a bench directory: its tables are rewritten, its runs reused."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"--output {out} exists and is not a directory; choose another --output")
    if any(out.iterdir()) and not ((out / "runs").is_dir() or any((out / r).exists() for r in REPORTS)):
        raise UserError(f"--output {out} is not empty and is not a bench directory; choose another --output")


def check_finished(cell: Cell, out: Path) -> None:
    """A finished cell is reused only if it ran with this cell's settings (recipe.yaml is the run's config)."""
    cell_dir = out / "runs" / cell.name
    if not (cell_dir / "metrics.json").exists():
        return
    from .artifacts import bench_cell

    bench_cell(cell_dir)  # its metrics.json whole: read for the tables, before any cell runs
    ran = bench_cell(cell_dir, "recipe.yaml") if (cell_dir / "recipe.yaml").exists() else None
    wanted = yaml_load(yaml.safe_dump(dataclasses.replace(cell.cfg, output=str(cell_dir)).to_dict()))
    if ran != wanted:
        changed = sorted(k for k in set(ran or {}) | set(wanted) if (ran or {}).get(k) != wanted.get(k))
        raise UserError(f"{cell_dir} finished with other settings ({', '.join(changed)} differ); "
                        "use another --output, or delete that run to redo it")


def parse_shard(text: str | None) -> tuple[int, int]:
    """"K/N" -> (K, N): this process runs cells K, K+N, K+2N, ... (1-based) of the planned grid."""
    if text is None:
        return 1, 1
    k, _, n = text.partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise UserError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 2/4 (the 2nd of 4 parts)")
    return k, n


def run_bench(cells: list[Cell], out: Path, *, cpu: bool = False, shard: str | None = None, log=print) -> list[dict]:
    from accelerate import PartialState

    from .bench_report import write_reports
    from .commands.tune import run_tune

    from .train import complete_checkpoints, use_cpu

    # under `accelerate launch` every process runs each cell; one writes the tables
    state = PartialState(cpu=use_cpu(cpu))
    k, n = parse_shard(shard)
    if state.is_main_process and cells:
        from .baselines import write_baselines

        write_baselines(cells[0].cfg, out, log)  # the bars the tables and plot are read against
    def finished() -> list[dict]:
        """Every finished cell of the grid, whichever process or shard ran it: the tables never go backwards."""
        from .artifacts import bench_cell

        return [{"run": c.name, "model_label": model_label(c.model), **bench_cell(out / "runs" / c.name)}
                for c in cells if (out / "runs" / c.name / "metrics.json").exists()]

    def write_tables() -> None:
        """The tables from every finished cell, read and written under a lock: of shards finishing together,
        the last to write has seen every cell the others finished (unlocked, an older view could land last)."""
        import fcntl

        with open(out / "bench.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            write_reports(out, finished())

    for i, cell in enumerate(cells, 1):
        cell_dir = out / "runs" / cell.name
        if (cell_dir / "metrics.json").exists():
            log(f"[{i}/{len(cells)}] {cell.name}: done, kept")
            continue
        if (i - 1) % n != k - 1:  # another shard's cell: the tables take it once it is finished
            continue
        # a complete checkpoint (a killed cell may have left only a partial one): resume; otherwise start over
        resume = "latest" if complete_checkpoints(cell_dir) else None
        log(f"[{i}/{len(cells)}] {cell.name}" + (" (resuming)" if resume else ""))
        cfg = dataclasses.replace(cell.cfg, output=str(cell_dir))
        cell_log = lambda *a, **kw: log("   ", *a, **kw)  # noqa: E731
        try:
            run_tune(cfg, overwrite=True, resume=resume, cpu=cpu, log=cell_log)
        except CheckpointMismatch:  # saved with other settings or another version: this cell starts over
            log("    its checkpoint is from other settings: starting the cell over")
            run_tune(cfg, overwrite=True, resume=None, cpu=cpu, log=cell_log)
        state.wait_for_everyone()  # metrics.json is written by the main process
        if state.is_main_process:
            write_tables()
    results = finished()
    if results and state.is_main_process:
        write_tables()
        log(f"wrote {out / 'summary.md'}, {out / 'results.csv'} and {out / 'plot.png'}")
    return results
