"""`peftbert search`: Optuna over a method's hyper-parameters, each trial an ordinary `tune` run.

The space is the training settings every method has (learning rate around the preset's, epochs, warm-up,
weight decay, the head's learning rate) plus the method's own (Method.space: rank, bottleneck, dropout, ...);
`--space FILE` edits it, and a setting given on the command line (a flag or --set) is fixed, not searched.
Selection sees validation only: trials run without the test set (run_tune's score_test=False), so no test
score can leak into the choice. Optuna's median pruner stops a trial whose validation score trails the
median of earlier trials at the same share of their schedule (reported as percent of steps done, so a 10-epoch
trial is compared with others at its 20%, not at its second epoch), from 30% on.

The study lives in OUTPUT/study.db (Optuna's SQLite storage, one process at a time): the same command again
continues it up to --trials, and a trial killed mid-run is run again with the same settings. With --storage
(journal:PATH or a database URL) or --workers N, the same command on many processes or machines works on one
study: Optuna's storage hands each trial to one worker, a trial whose worker stops beating is run again once by
another, and each worker stops when the study holds --trials finished trials. After every trial the worker that
ran it rewrites the reports (each file replaced whole): trials.csv (Optuna's dataframe), trials.md and best.yaml,
the best trial's recipe, which `peftbert tune --recipe OUTPUT/best.yaml` trains and scores on the test set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import time
from pathlib import Path

from . import artifacts
from .artifacts import first_line
from .config import SELECTION_METRICS, TuneConfig, deep_merge, renamed
from .errors import TrainingDiverged, UserError
from .methods import get_method, method_configs
from .runinfo import check_writable, write_text

STUDY = "peftbert"  # one study per output directory
REPORTS = ("trials.csv", "trials.md", "best.yaml")
PRUNE_FROM_PERCENT = 30  # no trial is pruned before this share of its steps (warm-up, early noise)
# settings that change what a trial is measured on or how it is run, not how it learns
NOT_SEARCHABLE = {"train.seed", "train.metric", "train.save_every", "train.log_every", "train.report_to",
                  "train.eval_every", "train.max_steps"}
SEARCHABLE_DATA = {"data.max_length"}  # the other data settings pick the rows a trial is scored on
LOCKS = ("search.lock", "search.setup.lock", "search.claim.lock")  # (--overwrite keeps them: others may hold them)
WORKER_ENV = "PEFTBERT_SEARCH_WORKER"  # set in the processes --workers starts: each runs trials, none starts more
BEAT = "peftbert:beat"  # a running trial's last sign of life (time.time()), in its system attrs
STALE_BEATS = 4  # a RUNNING trial silent for this many --heartbeat intervals has lost its worker
SPACE_EXAMPLE = "train.lr: {low: 1.0e-4, high: 3.0e-3, log: true}  or  lora.r: {choices: [8, 16]}"


def changed_after_training(cfg: TuneConfig) -> bool:
    """Whether the weights scored on the way differ from the ones the trial ends with (a head refit, a WiSE mix)."""
    return cfg.train.head_refit or cfg.train.wise < 1


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
    """--overwrite, under the lock: everything but the lock files themselves (a running search would hold them)."""
    for entry in out.iterdir():
        if entry.name not in LOCKS:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def resolve_space(values: dict, recipe: str | None, space_file: str | None) -> tuple[TuneConfig, dict]:
    """(the run as given, its checked search space): what `--show-space` prints and a search explores."""
    from .commands.tune import tune_config

    base = tune_config(recipe, values)
    space = load_space(space_file, base, values)
    check_space(space, base, lambda extra: tune_config(recipe, deep_merge(values, extra)))
    return base, space


def check_options(trials: int, minutes: float | None, workers: int, heartbeat: float) -> None:
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if minutes is not None and not minutes > 0:
        raise UserError(f"--minutes must be a positive number, got {minutes}")
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if not heartbeat > 0:
        raise UserError(f"--heartbeat must be a positive number of seconds, got {heartbeat}")


def run_search(values: dict, *, recipe: str | None, space_file: str | None, trials: int, minutes: float | None,
               output: str, overwrite: bool = False, prune: bool = True, cpu: bool = False, command: str = "",
               storage: str | None = None, study_name: str = STUDY, workers: int = 1, heartbeat: float = 30.0,
               argv: list[str] | None = None, log=print) -> dict:
    """Run (or continue) a search; returns {"best_trial", "best_value", "trials"} and writes the reports.
    With a shared storage (--storage, --workers) this process is one worker of the study; `argv` is the
    command line (less --overwrite) that --workers starts again in each worker process."""
    import optuna

    from .commands.tune import preflight, run_tune, tune_config

    def build(extra: dict) -> TuneConfig:
        return tune_config(recipe, deep_merge(values, extra))

    check_options(trials, minutes, workers, heartbeat)
    base, space = resolve_space(values, recipe, space_file)
    kinds = field_types(base, space)
    preflight(base)  # data, model, tokenizer and method: a mistake there is one line now, not a failed trial 0
    metric = base.train.metric
    out = Path(output)
    check_search_dir(out)
    check_writable(out)  # before the first trial trains, not at the study's first write
    store = storage_spec(storage, workers, out)
    shared = store is not None  # several processes (here or on other machines) may work on the study
    if storage:
        check_storage(storage)  # before --output is made
    out.mkdir(parents=True, exist_ok=True)
    with search_lock(out, exclusive=not shared or overwrite) as lock:
        if not overwrite and not shared:  # a study to continue: its database whole, or one line before any trial
            artifacts.study(out)
        with setup_lock(out):  # workers starting together: one creates the study and queues trial 0
            if overwrite:
                clear_search_dir(out)
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
            pruner = (optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=PRUNE_FROM_PERCENT) if prune
                      else optuna.pruners.NopPruner())
            study = open_study(store, out, study_name, "maximize" if SELECTION_METRICS[metric] else "minimize",
                               pruner, replace=overwrite)
            settings = json.loads(json.dumps({"run": {**base.to_dict(), "output": None}, "space": space,
                                              "prune": prune}))
            record_settings(study, settings, starting_point(base, space), command, out)
            (out / "trials").mkdir(exist_ok=True)
        if shared and overwrite:  # the old study is gone: other workers may join now
            fcntl_lock(lock, exclusive=False, out=out)
        if workers > 1 and not os.environ.get(WORKER_ENV):
            log(f"search {base.method}: {workers} worker processes on {masked(store)}")
            run_workers(workers, argv or [], log)
        else:
            # seeded by the run's seed and the trials so far: a continued search draws new points, not the same
            # again; a shared study's workers also by their process, or two would draw the same points (mixed,
            # not summed: pid p after 1 trial and pid p+1 after none would sum to one seed)
            seed = base.train.seed + len(study.trials)
            if shared:
                import numpy as np

                seed = int(np.random.SeedSequence([seed, os.getpid()]).generate_state(1)[0])
            study.sampler = optuna.samplers.TPESampler(seed=seed % 2**32, constant_liar=shared)
            if not shared:  # the lock says no other process runs a trial: every RUNNING one was interrupted
                requeue_interrupted(study, out, log)

            release_claim = [lambda: None]  # set by work(): see claim_lock

            def objective(trial) -> float:
                release_claim[0]()  # this trial is RUNNING in the storage now: other workers count it
                picked = {key: suggest(trial, key, spec, kinds[key]) for key, spec in space.items()}
                trial_dir = out / "trials" / f"{trial.number:03d}"
                cfg = build(deep_merge(nest(picked), {"output": str(trial_dir)}))
                cfg.train.save_every = None  # trials keep no weights, checkpoints included
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")

                reported = set()

                def on_evaluate(step: int, total: int, metrics: dict) -> None:
                    percent = int(100 * step / total)  # schedules of different lengths compare at equal progress
                    if step >= total or percent in reported:  # the end is the trial's value, not a reason to prune
                        return
                    reported.add(percent)
                    trial.report(metrics[metric], percent)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"validation {metric} {metrics[metric]:.4f} at {percent}% of its "
                                                 "steps")

                log(f"trial {trial.number}: " + ", ".join(f"{k}={fmt(v)}" for k, v in picked.items()))
                try:
                    with beating(trial, heartbeat):
                        # with train.head_refit the head is replaced after training, with train.wise < 1 the
                        # weights are mixed: the scores on the way are another model's, no grounds to prune on
                        m = run_tune(cfg, overwrite=True, cpu=cpu, score_test=False,
                                     on_evaluate=None if changed_after_training(cfg) else on_evaluate,
                                     save_weights=False, log=lambda *a: None)
                except (optuna.TrialPruned, TrainingDiverged) as e:  # a diverged trial counts as pruned
                    # (the divergence message up to its advice, which is for a lone tune run)
                    trial.set_user_attr("note", str(e).split(";")[0] if isinstance(e, TrainingDiverged)
                                        else f"pruned: {e}")
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
                log(f"search {base.method} on {base.data.task or base.data.train_file}: {remaining} trial(s) to go "
                    f"of {trials}, space: {', '.join(space)}; selection by validation {metric}")
                if prune and changed_after_training(base):
                    log("note: trials with train.head_refit or train.wise < 1 are not pruned: the head is fitted "
                        "again or the weights mixed after training, so the validation scores on the way are another "
                        "model's")
            def run_one(release) -> None:
                release_claim[0] = release
                study.optimize(objective, n_trials=1, callbacks=[after_trial], gc_after_trial=True)

            work(study, run_one, trials=trials, deadline=time.time() + minutes * 60 if minutes else None, out=out,
                 log=log, stale_after=heartbeat * STALE_BEATS if shared else None)
        best = write_reports(study, out, metric)
    if best is None:
        raise UserError(f"no trial of {out} finished (all pruned or diverged); widen the space or lower train.lr")
    log(f"best: trial {best.number}, validation {metric} {best.value:.4f}; recipe {out / 'best.yaml'} "
        f"(peftbert tune --recipe {out / 'best.yaml'} trains it and scores the test set)")
    return {"best_trial": best.number, "best_value": best.value, "trials": len(finished(study))}


def work(study, run_one, *, trials: int, deadline: float | None, out: Path, log, stale_after: float | None) -> None:
    """Run trials one at a time until the study has `trials` finished ones (whichever worker ran them) or the
    deadline passes. Trials running elsewhere count as on their way; while they are the last ones this worker
    waits rather than leaving, so a trial whose worker dies is run again here (stale_after: seconds without a
    sign of life that mark a RUNNING trial dead; None in a single-process study, where none runs elsewhere).
    run_one(release) runs one trial and calls release() once that trial is RUNNING in the storage."""
    waiting = False
    while True:
        if stale_after is not None:
            requeue_interrupted(study, out, log, stale_after)
        with claim_lock(out) as release:  # count and take a trial one worker at a time: none past --trials
            done, running = len(finished(study)), len(running_trials(study))
            if done >= trials or (deadline is not None and time.time() > deadline):
                return
            if done + running < trials:
                waiting = False
                run_one(release)
                continue
        if not waiting:  # one more here would overshoot --trials
            log(f"waiting for the {running} trial(s) other workers are running (a dead one is run again here)")
        waiting = True
        time.sleep(stale_after / STALE_BEATS)


def storage_spec(storage: str | None, workers: int, out: Path) -> str | None:
    """The study's storage: --storage as given; else, for --workers (or a study they left in OUT), a journal
    file in OUT; else None: OUT/study.db, one process at a time."""
    if storage:
        return storage
    journal = out / "study.journal"
    if workers > 1 or journal.exists():
        return f"journal:{journal}"
    return None


def masked(spec: str) -> str:
    """A storage URL as shown and recorded: without its password."""
    if "://" not in spec or "@" not in spec:
        return spec
    from sqlalchemy.engine import make_url

    try:
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # not a URL after all (an argument that merely looks like one): shown as typed
        return spec


def open_storage(spec: str | None, out: Path):
    """Optuna's storage for `spec`: journal:PATH (a journal file, for processes on one filesystem), an RDB URL
    (sqlite:///, postgresql://, mysql://), or None for OUT/study.db."""
    import optuna

    if spec is None:
        return optuna.storages.RDBStorage(f"sqlite:///{out / 'study.db'}")
    check_storage(spec)
    if spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    # a busy SQLite file under several workers: wait for its lock rather than fail a trial
    kwargs = {"connect_args": {"timeout": 60}} if spec.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(spec, engine_kwargs=kwargs)


def check_storage(spec: str) -> None:
    """--storage's form, and a journal's folder, before anything is written."""
    if spec.startswith("journal:"):
        folder = Path(spec[len("journal:"):]).parent
        if not folder.is_dir():
            raise UserError(f"--storage {spec}: folder {folder} does not exist; create it on a filesystem every "
                            "worker sees")
    elif "://" not in spec:
        raise UserError(f"--storage {masked(spec)}: expected journal:PATH or a database URL, e.g. "
                        "postgresql://user@host/db or sqlite:///study.db")


def open_study(spec: str | None, out: Path, name: str, direction: str, pruner, *, replace: bool):
    """The study `name` in its storage, created if new (replace: deleted first, for --overwrite)."""
    import optuna

    shown = masked(spec) if spec else str(out / "study.db")
    try:
        storage = open_storage(spec, out)
        if replace:
            with contextlib.suppress(KeyError):  # KeyError: no such study yet
                optuna.delete_study(study_name=name, storage=storage)
        return optuna.create_study(storage=storage, study_name=name, load_if_exists=True, direction=direction,
                                   pruner=pruner)
    except UserError:
        raise
    except ImportError as e:  # (Optuna re-raises SQLAlchemy's ImportError for the driver as its own)
        missing = getattr(e.__cause__, "name", None) or e.name or "?"
        raise UserError(f"--storage {shown}: its database driver (Python module {missing}) is not installed; for "
                        "PostgreSQL: pip install 'peftbert[postgres]'") from None
    except Exception as e:
        raise UserError(f"--storage {shown}: cannot open study {name!r} ({first_line(e)}); check the URL, the "
                        "server and its credentials") from None


def record_settings(study, settings: dict, start: dict, command: str, out: Path) -> None:
    """A new study records its settings and queues trial 0; a continued one must have been made with the same."""
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", settings)
        study.set_user_attr("command", command)
        # trial 0 is the recipe as given (where the space holds its values): the bar the others are read against
        if start:  # (skip_if_exists: two machines' workers, whose setup locks differ, starting at once)
            study.enqueue_trial(start, user_attrs={"note": "the starting recipe"}, skip_if_exists=True)
    elif upgraded(study.user_attrs["settings"]) != settings:
        raise UserError(f"{out} holds a search with other settings (run, space or pruning); continue it with "
                        f"its own command ({study.user_attrs.get('command') or 'see trials.md'}), or pass "
                        "--overwrite (or, in a shared --storage, another --study name)")


def run_workers(n: int, argv: list[str], log) -> None:
    """--workers N: this command again in N processes, each a worker on the study set up here, each with its
    share of the cores; their lines come through here, marked by worker."""
    import io
    import subprocess
    import sys
    import threading

    env = {**os.environ, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # torch's threads per process
    procs = [subprocess.Popen([sys.executable, "-m", "peftbert.cli", *argv], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(n)]
    log(f"workers started (pids {', '.join(str(p.pid) for p in procs)}), {env['OMP_NUM_THREADS']} thread(s) each")

    def relay(k: int, proc) -> None:
        for line in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="\n"):
            shown = line.rstrip("\n").split("\r")[-1]  # a progress bar's last state, as a terminal shows it
            if shown.strip():
                log(f"[worker {k}] {shown}")

    relays = [threading.Thread(target=relay, args=(k, p), daemon=True) for k, p in enumerate(procs, 1)]
    for t in relays:
        t.start()
    try:
        codes = [p.wait() for p in procs]
    finally:  # interrupted here: the workers go too (their trials run again when the study continues)
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    for t in relays:
        t.join()
    failed = [str(k) for k, code in enumerate(codes, 1) if code != 0]
    if failed:
        raise UserError(f"worker {', '.join(failed)} of {n} stopped with an error (its lines above say why); fix "
                        "it and run the same command to continue the study")


@contextlib.contextmanager
def beating(trial, every: float):
    """A running trial's sign of life: the time, in its system attrs, every `every` seconds, so that other
    workers can tell a trial whose worker died (killed, out of memory, a lost node) from a slow one.
    (Optuna's own heartbeat exists for RDB storages only, not the journal file.)"""
    import threading

    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a missed beat fails no trial: the next one may get through
                trial.storage.set_trial_system_attr(trial._trial_id, BEAT, time.time())
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fcntl_lock(f, *, exclusive: bool, out: Path) -> None:
    import fcntl

    try:
        fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        if exclusive:
            raise UserError(f"another `peftbert search` is running on {out}; wait for it, or use another --output "
                            "(one study on several processes or machines: --workers N or --storage URL, see "
                            "docs/cluster.md)") from None
        raise UserError(f"another `peftbert search` holds {out} alone (one without --storage, or an --overwrite "
                        "starting); wait for it, then start the workers") from None


@contextlib.contextmanager
def search_lock(out: Path, *, exclusive: bool):
    """One process per study in OUT/study.db (a second search would fail the first one's live trial); workers
    of a shared storage hold it together, and none can start beside a single-process search."""
    with open(out / "search.lock", "a") as f:
        fcntl_lock(f, exclusive=exclusive, out=out)
        yield f


@contextlib.contextmanager
def setup_lock(out: Path):
    import fcntl

    with open(out / "search.setup.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # held for a moment: while a study is created or checked
        yield


@contextlib.contextmanager
def claim_lock(out: Path):
    """Held by a worker from counting the study's trials until the trial it takes exists (RUNNING) in the
    storage; yields the release, which the trial calls (workers share OUT, so the lock is theirs too)."""
    import fcntl

    f = open(out / "search.claim.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield f.close  # closing the file releases the lock; closing twice is harmless
    finally:
        f.close()


def finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def running_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def last_sign_of_life(trial) -> float:
    return trial.system_attrs.get(BEAT) or trial.datetime_start.timestamp()


def requeue_interrupted(study, out: Path, log, stale_after: float | None = None) -> None:
    """Trials whose worker died fail, their partial run directories go, and their settings are queued to run
    again, once (a rerun that dies too stays failed: it may be what kills its worker, e.g. its memory).
    stale_after None: every RUNNING trial (a single-process study's lock says none is alive); else those
    without a sign of life for that many seconds. Of several workers that see it, one fails it and requeues."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    now = time.time()
    for t in running_trials(study):
        if stale_after is not None and now - last_sign_of_life(t) < stale_after:
            continue
        try:  # as Optuna's fail_stale_trials: the storage refuses a second worker's update of a failed trial
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue
        shutil.rmtree(out / "trials" / f"{t.number:03d}", ignore_errors=True)
        if "rerun_of" in t.user_attrs:
            log(f"trial {t.number} (a rerun of trial {t.user_attrs['rerun_of']}) was interrupted too: not run again")
            continue
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
    tmp = out / f"trials.csv.{os.getpid()}.tmp"  # per process: workers of one study write the same reports
    study.trials_dataframe().to_csv(tmp, index=False)
    tmp.replace(out / "trials.csv")
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
        fields_of = {name: {f.name for f in dataclasses.fields(cls)} for name, cls in method_configs().items()}
        recipe = artifacts.trial_recipe(out / "trials" / f"{best.number:03d}" / "recipe.yaml", fields_of)
        recipe.pop("output", None)
        # trials ran without checkpoints; the recipe keeps what the search was given
        recipe["train"]["save_every"] = study.user_attrs["settings"]["run"]["train"]["save_every"]
        header = (f"# Chosen by `{study.user_attrs.get('command', '')}`\n"
                  f"# trial {best.number} of {len(done)}: validation {metric} {best.value:.4f} (test not seen)\n"
                  f"# searched: {', '.join(f'{k}={fmt(v)}' for k, v in best.params.items())}\n")
        write_text(out / "best.yaml", header + yaml.safe_dump(recipe, sort_keys=False))
    return best
