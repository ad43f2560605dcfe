"""`peftbert bench --suite NAME|FILE`: a benchmark suite as a recipe (recipes/bench/<name>.yaml).

A suite lists tasks, models, methods and seeds. Each task is an ordinary bench grid in OUTPUT/<task>/ (its own
tables, plot and baselines; resumable; --shard applies to each). suite.md then joins them per group of tasks
(FOMC's three published splits are one group): each model x method's mean over the group's tasks and seeds,
the group's baselines (means of its tasks'), and paired differences whose units are (task, seed) pairs. The
interval treats those pairs as independent; runs on one split share its test set, so it is a rough guide,
narrower than one that modelled the splits apart.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .config import RECIPES_DIR, deep_merge, load_yaml
from .errors import UserError

KEYS = {"tasks", "models", "methods", "seeds", "groups", "budget", "per_class", "recipe", "set"}


@dataclass
class Suite:
    tasks: list[str]
    models: list[str]
    methods: list[str]
    seeds: list[int]
    groups: dict[str, list[str]] = field(default_factory=dict)
    budget: str | None = None
    # the low-label regime: each N (labelled rows per class, `all` = the whole training set) is a suite of its
    # own in OUTPUT/n<N>/ (tune --train-per-class N)
    per_class: list | None = None
    recipe: str | None = None  # the tune recipe every run starts from (a --recipe given to bench wins)
    overrides: list[str] = field(default_factory=list)  # `set:` in the YAML: key=value for every run, as --set

    def group_of(self) -> dict[str, list[str]]:
        """group name -> its tasks, in suite order; a task in no group is a group of its own."""
        grouped = {t for ts in self.groups.values() for t in ts}
        out = {name: list(ts) for name, ts in self.groups.items()}
        out.update({t: [t] for t in self.tasks if t not in grouped})
        return dict(sorted(out.items(), key=lambda kv: self.tasks.index(kv[1][0])))


def load_suite(name: str) -> Suite:
    path = Path(name) if Path(name).is_file() else RECIPES_DIR / "bench" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (RECIPES_DIR / "bench").glob("*.yaml"))
        raise UserError(f"--suite {name!r}: no such file or suite; give a YAML file or one of: {', '.join(known)}")
    d = load_yaml(path)
    if not isinstance(d, dict) or set(d) - KEYS or not {"tasks", "models", "methods", "seeds"} <= set(d):
        optional = ", ".join(sorted(KEYS - {"tasks", "models", "methods", "seeds"}))
        raise UserError(f"suite {path}: expected the keys tasks, models, methods, seeds (and optionally {optional}); "
                        f"got {', '.join(d) if isinstance(d, dict) else type(d).__name__}")
    suite = Suite(**{k: v for k, v in d.items() if k != "set"}, overrides=list(d.get("set") or []))
    if suite.per_class is not None and (not isinstance(suite.per_class, list) or not suite.per_class or not all(
            n == "all" or (type(n) is int and n > 0) for n in suite.per_class)):
        raise UserError(f"suite {path}: per_class must be a list of positive integers or `all`, got "
                        f"{suite.per_class!r}")
    if suite.recipe is not None and not isinstance(suite.recipe, str):
        raise UserError(f"suite {path}: recipe must be a tune recipe's name or file, got {suite.recipe!r}")
    if not all(isinstance(x, str) and "=" in x for x in suite.overrides):
        raise UserError(f"suite {path}: set must be a list of key=value items, got {suite.overrides!r}")
    for key in ("tasks", "models", "methods", "seeds"):
        items = getattr(suite, key)
        kind = int if key == "seeds" else str
        if (not isinstance(items, list) or not items or len(set(map(str, items))) != len(items)
                or not all(type(x) is kind for x in items)):
            raise UserError(f"suite {path}: {key} must be a non-empty list of {kind.__name__}s without repeats, "
                            f"got {items!r}")
    suite.groups = suite.groups or {}
    if not isinstance(suite.groups, dict) or not all(
            isinstance(ts, list) and ts and all(type(t) is str for t in ts) for ts in suite.groups.values()):
        raise UserError(f"suite {path}: groups must map a name to a non-empty list of tasks, got {suite.groups!r}")
    stray = {t for ts in suite.groups.values() for t in ts} - set(suite.tasks)
    if stray:
        raise UserError(f"suite {path}: groups name tasks not in tasks: {', '.join(sorted(stray))}")
    return suite


def task_dir(out: Path, task: str) -> Path:
    return out / task.replace("@", "-")


def run_suite(suite: Suite, *, recipe: str | None, values: dict, overrides: list[str] | None, out: Path,
              cpu: bool = False, shard: str | None = None, log=print) -> None:
    from .bench import plan, run_bench

    if "data" in values and "task" in values["data"]:
        raise UserError("--task and --suite both name tasks; drop --task (the suite lists its tasks)")
    overrides = [*suite.overrides, *(overrides or [])]
    sizes = [(n, out / f"n{n}") for n in suite.per_class] if suite.per_class else [(None, out)]
    # every cell of every size and task is planned (and so checked) before the first run
    plans = [(size_out, task, plan(suite.models, suite.methods, suite.seeds, recipe=recipe or suite.recipe,
                                   values=deep_merge(values, {"data": {"task": task, **per_class(n)}}),
                                   overrides=overrides, budget=suite.budget, out=task_dir(size_out, task), log=log))
             for n, size_out in sizes for task in suite.tasks]
    for size_out, task, cells in plans:
        log(f"== {task}" + (f" ({size_out.name})" if suite.per_class else ""))
        run_bench(cells, task_dir(size_out, task), cpu=cpu, shard=shard, log=log)
    for _, size_out in sizes:
        write_suite_report(suite, size_out)
        log(f"wrote {size_out / 'suite.md'}")


def per_class(n) -> dict:
    return {} if n in (None, "all") else {"train_per_class": n}


def write_suite_report(suite: Suite, out: Path) -> None:
    from .bench_report import to_csv
    from .runinfo import write_text

    rows_of = {task: read_results(task_dir(out, task) / "results.csv") for task in suite.tasks}
    text, table = suite_tables(suite, rows_of, lambda tasks: group_baselines(out, tasks))
    if table:
        write_text(out / "suite.csv", to_csv(table, list(table[0])))
    write_text(out / "suite.md", "# Suite results\n\nMean over each group's tasks and seeds; baselines are the mean "
               "of the tasks' own (`<task>/baselines.json`). Generated from `<task>/results.csv`.\n\n" + text)


def read_results(path: Path) -> list[dict]:
    """A bench grid's results.csv as rows with numbers (none when the grid has not written it yet)."""
    if not path.is_file():
        return []
    with open(path) as fh:
        return [{**r, "seed": int(r["seed"]), "accuracy": float(r["accuracy"]), "macro_f1": float(r["macro_f1"]),
                 "trainable_percent": float(r["trainable_percent"])} for r in csv.DictReader(fh)]


def suite_tables(suite: Suite, rows_of: dict[str, list[dict]], baselines_of) -> tuple[str, list[dict]]:
    """Markdown of each group (model x method means, the group's baselines, paired differences) and its rows.
    rows_of: task -> bench_report.run_rows rows; baselines_of(tasks) -> group_baselines' dict."""
    from .bench_report import paired, paired_markdown

    lines, table = [], []
    for group, tasks in suite.group_of().items():
        rows = [{**r, "task": task} for task in tasks for r in rows_of.get(task, [])]
        if not rows:
            continue
        split = rows[0]["split"]
        lines += [f"## {group} ({len(tasks)} task{'s' if len(tasks) > 1 else ''}, {split})", "",
                  "| model | method | trainable % | runs (tasks x seeds) | accuracy | macro-F1 (mean ± sd) |",
                  "|---|---|---|---|---|---|"]
        for name, score in baselines_of(tasks).items():
            lines.append(f"| (baseline) | {name} | – | {score['n']} tasks | {score['accuracy']:.4f} | "
                         f"{score['macro_f1']:.4f} |")
        for (model, method) in dict.fromkeys((r["model"], r["method"]) for r in rows):
            runs = [r for r in rows if (r["model"], r["method"]) == (model, method)]
            f1 = [r["macro_f1"] for r in runs]
            row = {"group": group, "model": model, "method": method, "runs": len(runs),
                   "trainable_percent": float(runs[0]["trainable_percent"]),
                   "accuracy_mean": round(statistics.mean(r["accuracy"] for r in runs), 4),
                   "macro_f1_mean": round(statistics.mean(f1), 4),
                   "macro_f1_sd": round(statistics.stdev(f1), 4) if len(f1) > 1 else None}
            table.append(row)
            sd = "" if row["macro_f1_sd"] is None else f" ± {row['macro_f1_sd']:.4f}"
            lines.append(f"| {model} | {method} | {row['trainable_percent']:.2f} | {len(runs)} | "
                         f"{row['accuracy_mean']:.4f} | {row['macro_f1_mean']:.4f}{sd} |")
        lines.append(paired_markdown(paired(rows), split))
    return "\n".join(lines) + "\n", table


def group_baselines(out: Path, tasks: list[str]) -> dict[str, dict]:
    found = [json.loads((task_dir(out, t) / "baselines.json").read_text())["scores"] for t in tasks
             if (task_dir(out, t) / "baselines.json").is_file()]
    if not found:
        return {}
    return {name: {"n": len(found), "accuracy": statistics.mean(s[name]["accuracy"] for s in found),
                   "macro_f1": statistics.mean(s[name]["macro_f1"] for s in found)} for name in found[0]}
