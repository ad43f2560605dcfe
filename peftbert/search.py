"""`peftbert search`: Optuna over a method's hyper-parameters, each trial an ordinary `tune` run.

The space is the training settings every method has (learning rate around the preset's, epochs, warm-up,
weight decay, the head's learning rate) plus the method's own (Method.space: rank, bottleneck, dropout, ...);
`--space FILE` edits it, and a setting given on the command line (a flag or --set) is fixed, not searched.
Selection sees validation only: trials run without the test set (run_tune's score_test=False), so no test
score can leak into the choice. Optuna's median pruner stops a trial whose validation score trails the
median of earlier trials at the same share of their schedule (reported as percent of steps done, so a 10-epoch
trial is compared with others at its 20%, not at its second epoch), from 30% on.

The study lives in OUTPUT/study.db (Optuna's SQLite storage): the same command again continues it up to
--trials, and a trial killed mid-run is run again with the same settings. After every trial the reports are
rewritten: trials.csv (Optuna's dataframe), trials.md and best.yaml, the best trial's recipe, which
`peftbert tune --recipe OUTPUT/best.yaml` trains and scores on the test set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

from . import artifacts
from .config import SELECTION_METRICS, TuneConfig, deep_merge, renamed
from .errors import TrainingDiverged, UserError
from .methods import get_method
from .runinfo import check_writable, write_text

STUDY = "peftbert"  # one study per output directory
REPORTS = ("trials.csv", "trials.md", "best.yaml")
PRUNE_FROM_PERCENT = 30  # no trial is pruned before this share of its steps (warm-up, early noise)
# settings that change what a trial is measured on or how it is run, not how it learns
NOT_SEARCHABLE = {"train.seed", "train.metric", "train.save_every", "train.log_every", "train.report_to",
                  "train.eval_every", "train.max_steps"}
SEARCHABLE_DATA = {"data.max_length"}  # the other data settings pick the rows a trial is scored on
SPACE_EXAMPLE = "train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}  or  lora.r: {choices: [8, 16]}"


def upgraded(settings: dict) -> dict:
    """A study's stored settings with the recipe keys renamed since (config.RENAMED), so it still continues."""
    run = settings.get("run") or {}
    if isinstance(run.get("train"), dict):
        run = {**run, "train": renamed(run["train"], "train")}
    return {**settings, "run": run}


def train_space(cfg: TuneConfig) -> dict:
    """The training settings every method searches, centred on the method's preset."""
    lr, epochs = cfg.train.lr, cfg.train.epochs
    space = {
        "train.lr": {"low": lr / 4, "high": lr * 4, "log": True},
        "train.epochs": {"choices": sorted({max(1, round(e)) for e in (epochs / 2, epochs, epochs * 2)})},
        "train.warmup_ratio": {"low": 0.0, "high": 0.2},
        "train.weight_decay": {"choices": [0.0, 0.01, 0.1]},
        "train.head_lr_ratio": {"choices": [1, 3, 10]},  # a freshly initialised head may want more
    }
    if cfg.train.max_steps:  # a step budget fixes the length: epochs would change nothing
        del space["train.epochs"]
    return space


def default_space(cfg: TuneConfig) -> dict:
    return {**train_space(cfg), **{f"{cfg.method}.{k}": v for k, v in get_method(cfg.method).space.items()}}


def given_keys(values: dict) -> set[str]:
    """"block.field" of every setting the user gave (flags, --set): fixed in every trial."""
    return {f"{block}.{k}" for block, v in values.items() if isinstance(v, dict) for k in v}


def load_space(path: str | None, cfg: TuneConfig, values: dict | None = None) -> dict:
    """The default space without the settings given in `values`, with a file's entries merged over it (an entry
    set to null leaves that key out)."""
    fixed = given_keys(values or {})
    space = {k: v for k, v in default_space(cfg).items() if k not in fixed}
    if path is None:
        return space
    from .config import load_yaml

    edits = load_yaml(path)
    if not isinstance(edits, dict):
        raise UserError(f"--space {path}: expected a mapping of settings to ranges, e.g. {SPACE_EXAMPLE}")
    for key, spec in edits.items():
        if spec is None:
            space.pop(key, None)
        elif key in fixed:
            raise UserError(f"--space {path} searches {key}, which the command line fixes; drop one of the two")
        else:
            space[key] = spec
    if not space:
        raise UserError(f"--space {path} leaves nothing to search; give at least one range, e.g. {SPACE_EXAMPLE}")
    return space


def spec_values(key: str, spec) -> list:
    """The values a spec can take at its edges (choices, or low and high), after checking its shape."""
    if isinstance(spec, dict) and set(spec) == {"choices"} and isinstance(spec["choices"], list) and spec["choices"]:
        if not all(v is None or isinstance(v, (bool, int, float, str)) for v in spec["choices"]):
            raise UserError(f"search space {key}: choices must be numbers, strings or booleans, got {spec['choices']}")
        return spec["choices"]
    if isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
        low, high = spec["low"], spec["high"]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if numbers and low < high and (low > 0 or not spec.get("log")):
            return [low, high]
    raise UserError(f"search space {key}: {spec!r} is not a range; write {{choices: [...]}} or "
                    f"{{low: a, high: b, log: true|false}} with a < b (a > 0 on a log scale)")


def settings_blocks(cfg: TuneConfig) -> dict:
    """The blocks a space key can name: train.*, data.* and the method's own."""
    return {"train": cfg.train, "data": cfg.data, cfg.method: cfg.method_args}


def nest(picked: dict) -> dict:
    """{"train.lr": 1e-3, "lora.r": 8} -> {"train": {"lr": 1e-3}, "lora": {"r": 8}}"""
    out: dict = {}
    for key, value in picked.items():
        block, name = key.split(".", 1)
        out.setdefault(block, {})[name] = value
    return out


def check_space(space: dict, cfg: TuneConfig, build) -> None:
    """Every key names a setting of this run and every edge of every range makes a valid config, before any
    trial starts (`build(nested values)` builds and validates a TuneConfig)."""
    blocks = settings_blocks(cfg)
    for key, spec in space.items():
        block, _, name = key.partition(".")
        if block not in blocks or name not in {f.name for f in dataclasses.fields(blocks[block])}:
            raise UserError(f"search space key {key!r} is not a setting of `tune --method {cfg.method}`; use "
                            f"train.<field>, data.<field> or {cfg.method}.<field> (see `peftbert methods`)")
        if key == "train.seed":
            raise UserError("search space: train.seed is not a hyper-parameter (search with one seed, then "
                            "`peftbert bench` the best recipe over seeds)")
        if key in NOT_SEARCHABLE or (block == "data" and key not in SEARCHABLE_DATA):
            raise UserError(f"search space: {key} changes what or how trials are measured, not how they learn; "
                            "fix it with a flag instead")
        for value in spec_values(key, spec):
            build({block: {name: value}})


def starting_point(cfg: TuneConfig, space: dict) -> dict:
    """The run's own values of the searched keys, those the space can take (Optuna samples the others)."""
    blocks = settings_blocks(cfg)
    out = {}
    for key, spec in space.items():
        block, _, name = key.partition(".")
        value = getattr(blocks[block], name)
        if "choices" in spec:  # the choice itself (epochs 5 for 5.0), never True for 1
            matches = [c for c in spec["choices"] if c == value and isinstance(c, bool) == isinstance(value, bool)]
            if matches:
                out[key] = matches[0]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and spec["low"] <= value <= spec["high"]:
            out[key] = value
    return out


def field_types(cfg: TuneConfig, space: dict) -> dict:
    """key -> the setting's declared type, which decides integer or float sampling of a range."""
    import typing

    blocks = settings_blocks(cfg)
    out = {}
    for key in space:
        block, _, name = key.partition(".")
        hint = typing.get_type_hints(type(blocks[block]))[name]
        out[key] = int if hint is int or int in typing.get_args(hint) and float not in typing.get_args(hint) else float
    return out


def suggest(trial, key: str, spec: dict, kind: type):
    if "choices" in spec:
        return trial.suggest_categorical(key, spec["choices"])
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if kind is int:
        return trial.suggest_int(key, int(low), int(high), log=log)
    return trial.suggest_float(key, float(low), float(high), log=log)


def check_search_dir(out: Path) -> None:
    """An existing search continues (or, with --overwrite, is replaced once its lock is held); anything else in
    the way is refused."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir() or not ((out / "study.db").is_file() or (out / "search.lock").is_file()):
        raise UserError(f"{out} exists and is not a peftbert search directory; choose another --output")


def clear_search_dir(out: Path) -> None:
    """--overwrite, under the lock: everything but the lock file itself (a running search would hold it)."""
    for entry in out.iterdir():
        if entry.name != "search.lock":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def resolve_space(values: dict, recipe: str | None, space_file: str | None) -> tuple[TuneConfig, dict]:
    """(the run as given, its checked search space): what `--show-space` prints and a search explores."""
    from .commands.tune import tune_config

    base = tune_config(recipe, values)
    space = load_space(space_file, base, values)
    check_space(space, base, lambda extra: tune_config(recipe, deep_merge(values, extra)))
    return base, space


def run_search(values: dict, *, recipe: str | None, space_file: str | None, trials: int, minutes: float | None,
               output: str, overwrite: bool = False, prune: bool = True, cpu: bool = False, command: str = "",
               log=print) -> dict:
    """Run (or continue) a search; returns {"best_trial", "best_value", "trials"} and writes the reports."""
    import optuna

    from .commands.tune import preflight, run_tune, tune_config

    def build(extra: dict) -> TuneConfig:
        return tune_config(recipe, deep_merge(values, extra))

    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if minutes is not None and not minutes > 0:
        raise UserError(f"--minutes must be a positive number, got {minutes}")
    base, space = resolve_space(values, recipe, space_file)
    kinds = field_types(base, space)
    preflight(base)  # data, model, tokenizer and method: a mistake there is one line now, not a failed trial 0
    metric = base.train.metric
    out = Path(output)
    check_search_dir(out)
    check_writable(out)  # before the first trial trains, not at the study's first write
    if not overwrite:  # a study to continue: its database whole, or one line before any trial
        artifacts.study(out)
    out.mkdir(parents=True, exist_ok=True)
    with search_lock(out):
        if overwrite:
            clear_search_dir(out)
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=PRUNE_FROM_PERCENT) if prune
                  else optuna.pruners.NopPruner())
        study = optuna.create_study(
            storage=f"sqlite:///{out / 'study.db'}", study_name=STUDY, load_if_exists=True,
            direction="maximize" if SELECTION_METRICS[metric] else "minimize", pruner=pruner)
        # seeded by the run's seed and the trials so far: a continued search draws new points, not the same again
        study.sampler = optuna.samplers.TPESampler(seed=(base.train.seed + len(study.trials)) % 2**32)
        settings = json.loads(json.dumps({"run": {**base.to_dict(), "output": None}, "space": space, "prune": prune}))
        if "settings" not in study.user_attrs:
            study.set_user_attr("settings", settings)
            study.set_user_attr("command", command)
            # trial 0 is the recipe as given (where the space holds its values): the bar the others are read against
            start = starting_point(base, space)
            if start:
                study.enqueue_trial(start, user_attrs={"note": "the starting recipe"})
        elif upgraded(study.user_attrs["settings"]) != settings:
            raise UserError(f"{out} holds a search with other settings (run, space or pruning); continue it with "
                            f"its own command ({study.user_attrs.get('command') or 'see trials.md'}), or pass "
                            "--overwrite")
        (out / "trials").mkdir(exist_ok=True)
        requeue_interrupted(study, out, log)

        def objective(trial) -> float:
            picked = {key: suggest(trial, key, spec, kinds[key]) for key, spec in space.items()}
            trial_dir = out / "trials" / f"{trial.number:03d}"
            cfg = build(deep_merge(nest(picked), {"output": str(trial_dir)}))
            cfg.train.save_every = None  # trials keep no weights, checkpoints included

            reported = set()

            def on_evaluate(step: int, total: int, metrics: dict) -> None:
                percent = int(100 * step / total)  # schedules of different lengths compare at equal progress
                if step >= total or percent in reported:  # the end is the trial's value, not a reason to prune
                    return
                reported.add(percent)
                trial.report(metrics[metric], percent)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation {metric} {metrics[metric]:.4f} at {percent}% of its steps")

            log(f"trial {trial.number}: " + ", ".join(f"{k}={fmt(v)}" for k, v in picked.items()))
            try:
                m = run_tune(cfg, overwrite=True, cpu=cpu, on_evaluate=on_evaluate, score_test=False,
                             save_weights=False, log=lambda *a: None)
            except (optuna.TrialPruned, TrainingDiverged) as e:  # a diverged trial counts as pruned: search goes on
                # (the divergence message up to its advice, which is for a lone tune run)
                trial.set_user_attr("note", str(e).split(";")[0] if isinstance(e, TrainingDiverged) else f"pruned: {e}")
                shutil.rmtree(trial_dir, ignore_errors=True)  # no half-finished run left behind
                raise optuna.TrialPruned() from None
            except KeyboardInterrupt:  # Optuna marks it failed; its settings run first next time
                shutil.rmtree(trial_dir, ignore_errors=True)
                study.enqueue_trial(trial.params, user_attrs={**trial.user_attrs, "rerun_of": trial.number})
                raise
            for k in ("trainable_percent", "train_seconds", "epochs", "stopped_early"):
                trial.set_user_attr(k, m[k])
            return m["validation"][metric]

        def after_trial(study, trial) -> None:
            done = trial.state.name == "COMPLETE"
            log(f"trial {trial.number} {trial.state.name.lower()}: " +
                (f"validation {metric} {trial.value:.4f}" if done else trial.user_attrs.get("note", "")))
            write_reports(study, out, metric)

        remaining = trials - len(finished(study))
        if remaining > 0:
            log(f"search {base.method} on {base.data.task or base.data.train_file}: {remaining} trial(s) to go of "
                f"{trials}, space: {', '.join(space)}; selection by validation {metric}")
            study.optimize(objective, n_trials=remaining, timeout=minutes * 60 if minutes else None,
                           callbacks=[after_trial], gc_after_trial=True)
        best = write_reports(study, out, metric)
    if best is None:
        raise UserError(f"no trial of {out} finished (all pruned or diverged); widen the space or lower train.lr")
    log(f"best: trial {best.number}, validation {metric} {best.value:.4f}; recipe {out / 'best.yaml'} "
        f"(peftbert tune --recipe {out / 'best.yaml'} trains it and scores the test set)")
    return {"best_trial": best.number, "best_value": best.value, "trials": len(finished(study))}


@contextlib.contextmanager
def search_lock(out: Path):
    """One process per study: a second search on the same --output would fail the first one's live trial."""
    import fcntl

    with open(out / "search.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `peftbert search` is running on {out}; wait for it, or use another "
                            "--output") from None
        yield


def finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def requeue_interrupted(study, out: Path, log) -> None:
    """Trials left RUNNING by a killed search (one process per study: none can be alive) fail, and their
    settings go back in the queue, so the search runs them again; their partial run directories go.
    (Optuna's heartbeat + RetryFailedTrialCallback does this for many workers, but only after a grace period.)"""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        shutil.rmtree(out / "trials" / f"{t.number:03d}", ignore_errors=True)
        study.enqueue_trial(t.params, user_attrs={**t.user_attrs, "rerun_of": t.number})
        log(f"trial {t.number} was interrupted: queued to run again")


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_reports(study, out: Path, metric: str):
    """trials.csv, trials.md and best.yaml from the study; returns the best finished trial (or None)."""
    import yaml
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    if not done:
        return None
    study.trials_dataframe().to_csv(out / "trials.csv.tmp", index=False)
    (out / "trials.csv.tmp").replace(out / "trials.csv")
    best = study.best_trial if complete else None
    keys = list(study.user_attrs["settings"]["space"])
    lines = [f"# Search: {len(done)} trials ({len(complete)} complete), selection by validation {metric}", "",
             f"Command: `{study.user_attrs.get('command', '')}`. Test scores are not computed in a search.", "",
             f"| trial | state | validation {metric} | " + " | ".join(keys) + " | trainable % | train s |",
             "|---" * (len(keys) + 5) + "|"]
    for t in done:
        value = f"{t.value:.4f}" if t.state == TrialState.COMPLETE else "-"  # a pruned trial's is mid-schedule
        if best is not None and t.number == best.number:
            value = f"**{value}**"
        note = t.user_attrs.get("note", "")
        state = (note or "pruned") if t.state == TrialState.PRUNED else "complete" + (f" ({note})" if note else "")
        cells = [fmt(t.params.get(k, "")) for k in keys]
        pct, secs = t.user_attrs.get("trainable_percent"), t.user_attrs.get("train_seconds")
        lines.append(f"| {t.number} | {state} | {value} | " + " | ".join(cells) +
                     f" | {'' if pct is None else f'{pct:.3f}'} | {'' if secs is None else f'{secs:.0f}'} |")
    write_text(out / "trials.md", "\n".join(lines) + "\n")
    if best is not None:
        recipe = artifacts.trial_recipe(out / "trials" / f"{best.number:03d}" / "recipe.yaml")
        recipe.pop("output", None)
        # trials ran without checkpoints; the recipe keeps what the search was given
        recipe["train"]["save_every"] = study.user_attrs["settings"]["run"]["train"]["save_every"]
        header = (f"# Chosen by `{study.user_attrs.get('command', '')}`\n"
                  f"# trial {best.number} of {len(done)}: validation {metric} {best.value:.4f} (test not seen)\n"
                  f"# searched: {', '.join(f'{k}={fmt(v)}' for k, v in best.params.items())}\n")
        write_text(out / "best.yaml", header + yaml.safe_dump(recipe, sort_keys=False))
    return best
