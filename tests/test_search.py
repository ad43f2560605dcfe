"""`peftbert search`: Optuna trials as tune runs, validation-only selection, the best recipe, resuming, bad input."""

import importlib.util
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from peftbert.cli import app
from peftbert.config import build_config
from peftbert.methods import method_configs
from test_cli import assert_one_line_error

runner = CliRunner()
SPACE = {"train.lr": {"low": 3e-4, "high": 2e-2, "log": True}, "lora.r": {"choices": [2, 4]},
         "train.epochs": {"choices": [1, 2]}}


def preset(method):
    """The method's preset recipe (recipes/methods/<method>.yaml over the code's defaults)."""
    return build_config(None, {"method": method}, method_configs())


def search_args(tiny_bert, toy_files, out, space_file, *extra):
    return ["search", "--model", str(tiny_bert), "--method", "lora", "--train-file", str(toy_files["train"]),
            "--validation-file", str(toy_files["validation"]), "--test-file", str(toy_files["test"]),
            "--output", str(out), "--space", str(space_file), "--set", "data.max_length=16",
            "--set", "train.precision=no", "--set", "train.report_to=none", *extra]


def replace_space(path, space: dict):
    """A --space file that keeps only `space` (every default key set to null)."""
    from peftbert.methods import get_method
    from peftbert.search import train_space
    from peftbert.commands.tune import tune_config

    cfg = tune_config(None, {"method": "lora"})
    drop = {k: None for k in [*train_space(cfg), *(f"lora.{k}" for k in get_method("lora").space)]}
    path.write_text(yaml.safe_dump({**drop, **space}))
    return path


def load_study(out):
    return optuna.load_study(study_name="peftbert", storage=f"sqlite:///{out / 'study.db'}")


def test_search_selects_on_validation_and_its_recipe_reproduces(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", SPACE)
    r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "3", "--no-prune"))
    assert r.exit_code == 0, r.output

    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and set(trials["state"]) == {"COMPLETE"}
    study = load_study(out)
    for t in study.trials:
        m = json.loads((out / "trials" / f"{t.number:03d}" / "metrics.json").read_text())
        assert m["test"] is None  # a trial never scores the test set
        assert t.value == m["validation"]["macro_f1"]
        # each evaluation before the end reported to the pruner, at its share of the steps (2 epochs: at 50%)
        assert list(t.intermediate_values) == [50 * e for e in range(1, t.params["train.epochs"])]
        assert not list((out / "trials" / f"{t.number:03d}").glob("*.safetensors"))  # trials keep no weights
        assert t.params["lora.r"] in (2, 4) and 3e-4 <= t.params["train.lr"] <= 2e-2
    # trial 0 is the recipe as given, where the space holds its values (lora's preset lr; r and epochs are outside)
    assert study.trials[0].params["train.lr"] == preset("lora").train.lr and study.trials[0].user_attrs["note"] == "the starting recipe"
    best = max(study.trials, key=lambda t: t.value)
    assert f"**{best.value:.4f}**" in (out / "trials.md").read_text()

    # best.yaml is a tune recipe: the best trial's settings, and training it gives the same validation score
    recipe = yaml.safe_load((out / "best.yaml").read_text())
    assert recipe["lora"]["r"] == best.params["lora.r"] and recipe["train"]["lr"] == best.params["train.lr"]
    assert "peftbert search" in (out / "best.yaml").read_text().splitlines()[0]
    r = runner.invoke(app, ["tune", "--recipe", str(out / "best.yaml"), "--output", str(tmp_path / "final")])
    assert r.exit_code == 0, r.output
    final = json.loads((tmp_path / "final" / "metrics.json").read_text())
    assert final["validation"]["macro_f1"] == pytest.approx(best.value, abs=1e-9)
    assert final["test"] is not None  # the final run scores test, once


def test_search_continues_and_reruns_an_interrupted_trial(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-3, "high": 2e-2, "log": True}})
    args = search_args(tiny_bert, toy_files, out, space, "--max-steps", "3")
    assert runner.invoke(app, [*args, "--trials", "2"]).exit_code == 0
    # a search killed mid-trial leaves it RUNNING; the next run fails it and runs its settings again
    study = load_study(out)
    killed = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 2e-2, log=True)})
    (out / "trials" / f"{killed.number:03d}").mkdir()
    r = runner.invoke(app, [*args, "--trials", "3"])
    assert r.exit_code == 0, r.output
    assert f"trial {killed.number} was interrupted" in r.output
    assert not (out / "trials" / f"{killed.number:03d}").exists()
    study = load_study(out)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1
    assert study.trials[-1].params == killed.params  # the rerun has the interrupted trial's settings
    lrs = [t.params["train.lr"] for t in study.trials]
    assert len(set(lrs)) == len(lrs) - 1  # a continued search draws afresh (only the rerun repeats a point)
    # a finished search is not rerun; other settings in the same directory are refused
    r = runner.invoke(app, [*args, "--trials", "3"])
    assert r.exit_code == 0 and "trial" not in r.output.split("best:")[0], r.output
    assert_one_line_error(runner.invoke(app, [*args, "--trials", "3", "--set", "train.warmup_ratio=0.2"]),
                          "other settings", "--overwrite")
    assert runner.invoke(app, [*args, "--trials", "1", "--overwrite"]).exit_code == 0
    assert len(load_study(out).trials) == 1


def test_an_interrupted_trial_runs_again_first(tiny_bert, toy_files, tmp_path, monkeypatch):
    """Ctrl-C in a trial: Optuna marks it failed; its directory goes and its settings run first next time."""
    from peftbert.commands import tune as tuning

    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-3, "high": 2e-2, "log": True}})
    args = search_args(tiny_bert, toy_files, out, space, "--max-steps", "3", "--trials", "2")
    real = tuning.run_tune

    def interrupted(cfg, **kw):
        Path(cfg.output).mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning, "run_tune", interrupted)
    runner.invoke(app, args)  # CliRunner turns the KeyboardInterrupt into an exit
    study = load_study(out)
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"] and not (out / "trials" / "000").exists()
    first = study.trials[0].params
    monkeypatch.setattr(tuning, "run_tune", real)
    assert runner.invoke(app, args).exit_code == 0
    study = load_study(out)
    assert study.trials[1].state.name == "COMPLETE" and study.trials[1].params == first


def test_bad_data_or_a_busy_output_stop_before_any_trial(tiny_bert, toy_files, tmp_path):
    import fcntl

    space = replace_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "search"
    bad = [a if a != str(tiny_bert) else str(tmp_path / "no-model") for a in search_args(tiny_bert, toy_files, out,
                                                                                         space)]
    assert_one_line_error(runner.invoke(app, bad), "no-model")
    assert not out.exists()
    out.mkdir()
    (out / "study.db").write_text("")
    with open(out / "search.lock", "w") as f:  # another search holds it: not even --overwrite touches its files
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for extra in ([], ["--overwrite"]):
            assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, space, *extra)),
                                  "another `peftbert search` is running")
    assert (out / "study.db").exists()


def test_finished_trials_are_never_pruned(tiny_bert, toy_files, tmp_path):
    """The pruner sees evaluations before a trial's end only: a finished trial below the median is complete."""
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-4, "high": 5e-2, "log": True}})
    r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "6", "--max-steps", "3"))
    assert r.exit_code == 0, r.output
    assert [t.state.name for t in load_study(out).trials] == ["COMPLETE"] * 6


def test_trials_whose_head_is_refitted_are_not_pruned(tiny_bert, toy_files, tmp_path, monkeypatch):
    """With train.head_refit the head scoring validation during training is not the one the trial ends with."""
    from peftbert.commands import tune as tuning

    real, hooked = tuning.run_tune, []

    def watched(cfg, **kw):
        hooked.append(kw["on_evaluate"] is not None)
        return real(cfg, **kw)

    monkeypatch.setattr(tuning, "run_tune", watched)
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-4, "high": 5e-2, "log": True}})
    for refit, out in ((False, tmp_path / "plain"), (True, tmp_path / "refit")):
        extra = ["--max-steps", "2", "--trials", "1", *(["--head-refit"] if refit else [])]
        r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, *extra))
        assert r.exit_code == 0 and ("are not pruned" in r.output) == refit, r.output
    assert hooked == [True, False]


def test_diverging_trials_are_recorded_and_the_search_goes_on(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"choices": [1e12]}})
    r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "2", "--max-steps", "4"))
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]  # among the trials' lines
    assert len(errors) == 1 and errors[0].startswith("error: no trial of"), r.output
    study = load_study(out)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all("loss became" in t.user_attrs["note"] for t in study.trials)
    assert "loss became" in (out / "trials.md").read_text()


def test_default_space_comes_from_the_method_and_its_preset():
    r = runner.invoke(app, ["search", "--method", "lora", "--show-space"])
    assert r.exit_code == 0, r.output
    space = yaml.safe_load(r.output)
    lr, epochs = preset("lora").train.lr, preset("lora").train.epochs
    assert space["train.lr"] == {"low": lr / 4, "high": lr * 4, "log": True}  # around the preset's
    assert space["train.epochs"] == {"choices": [round(epochs / 2), round(epochs), round(epochs * 2)]}
    assert space["lora.r"] == {"choices": [4, 8, 16, 32]}
    r = runner.invoke(app, ["search", "--method", "adapter", "--show-space"])
    assert "adapter.reduction_factor" in yaml.safe_load(r.output) and "lora.r" not in r.output
    # what the command line sets is fixed, not searched
    r = runner.invoke(app, ["search", "--method", "lora", "--lr", "1e-3", "--set", "lora.r=16", "--max-steps", "50",
                            "--show-space"])
    space = yaml.safe_load(r.output)
    assert not {"train.lr", "lora.r", "train.epochs"} & set(space) and "lora.alpha" in space, r.output


def test_a_searched_key_the_command_line_fixes_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("lora.r: {choices: [4, 8]}\n")
    r = runner.invoke(app, ["search", "--method", "lora", "--set", "lora.r=16", "--space", str(path), "--show-space"])
    assert_one_line_error(r, "lora.r", "command line fixes")


@pytest.mark.parametrize("space, needles", [
    ({"train.nonsense": {"choices": [1]}}, ["train.nonsense", "not a setting"]),
    ({"adapter.reduction_factor": {"choices": [4]}}, ["adapter.reduction_factor", "not a setting"]),
    ({"train.lr": {"low": 1e-2, "high": 1e-3}}, ["train.lr", "not a range"]),
    ({"train.lr": {"low": 0, "high": 1e-3, "log": True}}, ["train.lr", "a > 0"]),
    ({"train.lr": {"choices": [-1.0]}}, ["lr"]),  # an edge value the config refuses
    ({"lora.target_modules": {"choices": [["query"]]}}, ["choices must be"]),
    ({"train.seed": {"choices": [1, 2]}}, ["train.seed", "bench"]),
    ({"train.metric": {"choices": ["accuracy", "mcc"]}}, ["train.metric", "how trials are measured"]),
    ({"data.validation_fraction": {"low": 0.1, "high": 0.3}}, ["data.validation_fraction", "measured"]),
])
def test_bad_space_is_one_line_and_writes_nothing(tiny_bert, toy_files, tmp_path, space, needles):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp_path / "search"
    assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, path)), *needles)
    assert not out.exists()


def test_bad_search_options_are_one_line(tiny_bert, toy_files, tmp_path):
    space = replace_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "search"
    assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "0")),
                          "--trials")
    assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--minutes", "-1")),
                          "--minutes")
    assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, tmp_path / "none.yaml")),
                          "none.yaml")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text("{}")
    assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, tmp_path / "run", space)),
                          "not a peftbert search directory")
    assert not out.exists()


# -- one study, several workers (--workers, --storage) --------------------------------------------------------

def journal_study(path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name="peftbert", storage=JournalStorage(JournalFileBackend(str(path))))


def worker_pid(trial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def check_final_reports(out, study, finished: int):
    """trials.csv is the whole study, best.yaml its best complete trial, each trial its own directory."""
    rows = pd.read_csv(out / "trials.csv")
    assert sorted(rows["number"]) == [t.number for t in study.trials]
    assert (rows["state"].isin(["COMPLETE", "PRUNED"])).sum() == finished
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"# trial {best.number} of {finished}:" in (out / "best.yaml").read_text()
    done = sorted(f"{t.number:03d}" for t in study.trials if t.state.name == "COMPLETE")
    assert sorted(p.name for p in (out / "trials").iterdir()) == done
    assert not list(out.glob("*.tmp"))  # every report replaced whole, none left half-written


def test_workers_share_one_study(tiny_bert, toy_files, tmp_path):
    """--workers 2: two processes on one journal study; 4 trials in all, each run once, each its own point."""
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-3, "high": 2e-2, "log": True},
                                                    "lora.r": {"choices": [2, 4]}})
    r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "4", "--max-steps", "2",
                                       "--no-prune", "--workers", "2"))
    assert r.exit_code == 0, r.output
    pids = {int(p) for p in r.output.split("workers started (pids ")[1].split(")")[0].split(", ")}
    assert len(pids) == 2 and all(f"[worker {k}] best: trial" in r.output for k in (1, 2)), r.output
    study = journal_study(out / "study.journal")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4  # none run twice, none beyond --trials
    points = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(points)) == 4  # the workers' samplers draw apart
    assert {worker_pid(t) for t in study.trials} <= pids
    check_final_reports(out, study, 4)
    # the same command continues the study (the journal in --output is found without --workers)
    r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--trials", "4", "--max-steps", "2",
                                       "--no-prune"))
    assert r.exit_code == 0 and "trial" not in r.output.split("best:")[0], r.output


def test_a_worker_killed_mid_trial_has_its_trial_run_again_once(tiny_bert, toy_files, tmp_path):
    """Two workers on --storage journal:...; one is SIGKILLed while it runs a trial: the other sees the trial
    stop beating, fails it, runs its settings again (once) and finishes the study."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out, journal = tmp_path / "search", tmp_path / "study.journal"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-3, "high": 2e-2, "log": True}})
    args = [*search_args(tiny_bert, toy_files, out, space, "--trials", "3", "--max-steps", "6", "--no-prune"),
            "--storage", f"journal:{journal}", "--heartbeat", "0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    logs = [open(tmp_path / f"worker{k}.log", "w") for k in (1, 2)]
    survivor, victim = [subprocess.Popen([sys.executable, "-m", "peftbert.cli", *args], env=env, stdout=f,
                                         stderr=subprocess.STDOUT) for f in logs]
    try:
        killed = None
        deadline = time.time() + 120
        while killed is None and time.time() < deadline and victim.poll() is None:
            if journal.exists():
                running = [t for t in journal_study(journal).trials if t.state.name == "RUNNING"
                           and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
                if running:
                    victim.send_signal(signal.SIGKILL)
                    killed = running[0]
            time.sleep(0.1)
        assert killed is not None, (tmp_path / "worker2.log").read_text()
        assert survivor.wait(timeout=240) == 0, (tmp_path / "worker1.log").read_text()
    finally:
        for p in (survivor, victim):
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    study = journal_study(journal)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    assert study.trials[killed.number].state.name == "FAIL"
    reruns = [t for t in study.trials if t.user_attrs.get("rerun_of") == killed.number]
    assert len(reruns) == 1 and reruns[0].state.name == "COMPLETE" and reruns[0].params == killed.params
    assert worker_pid(reruns[0]) == survivor.pid
    assert f"trial {killed.number} was interrupted: queued to run again" in (tmp_path / "worker1.log").read_text()
    check_final_reports(out, study, 3)


def test_bad_storage_or_workers_are_one_line(tiny_bert, toy_files, tmp_path):
    space = replace_space(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "search"
    for extra, needles in ((["--storage", "redis-ish"], ["--storage", "journal:PATH"]),
                           (["--storage", f"journal:{tmp_path}/no/such/dir/j"], ["does not exist"]),
                           (["--workers", "0"], ["--workers"]), (["--heartbeat", "0"], ["--heartbeat"]),
                           (["--storage", "postgresql://me:secret@127.0.0.1:1/none"],
                            # without the optional driver (peftbert[postgres]) the refusal names the driver instead
                            ["cannot open" if importlib.util.find_spec("psycopg") else "pip install", "***"])):
        r = runner.invoke(app, search_args(tiny_bert, toy_files, out, space, *extra))
        assert_one_line_error(r, *needles)
        assert "secret" not in r.output
        if "postgresql" not in extra[1]:  # (a server that does not answer is found only at the study)
            assert not out.exists()
    # a single-process search holds its output alone: workers cannot join it, and its lock points at them
    import fcntl

    out.mkdir(exist_ok=True)
    with open(out / "search.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, space, "--storage",
                                                             f"journal:{tmp_path}/j")), "holds", "alone")
        assert_one_line_error(runner.invoke(app, search_args(tiny_bert, toy_files, out, space)),
                              "another `peftbert search` is running", "--storage")


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server from the system's package (Debian: apt-get install postgresql), on a free
    loopback port in a temporary directory, stopped and removed afterwards; skipped, with the reason, where it
    cannot start."""
    import glob
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    import sqlalchemy

    try:
        sqlalchemy.create_engine("postgresql://peftbert@127.0.0.1/postgres")  # loads the URL's driver, connects not
    except ImportError as e:
        pytest.skip(f"no PostgreSQL driver for SQLAlchemy ({e}): pip install 'peftbert[postgres]'")
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.skip("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
    as_user = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the package's own user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root, and no postgres user (or runuser) to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="peftbert-pg-"))
    if as_user:
        shutil.chown(home, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, bin_dir = home / "data", Path(bins[-1])

    def run(*cmd):
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)

    try:
        r = run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "peftbert", "--no-sync")
        if r.returncode == 0:
            r = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-o",
                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        if r.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        yield f"postgresql://peftbert@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.real
def test_workers_share_a_postgresql_study(tiny_bert, toy_files, tmp_path, postgres_url):
    out = tmp_path / "search"
    space = replace_space(tmp_path / "space.yaml", {"train.lr": {"low": 1e-3, "high": 2e-2, "log": True}})
    args = search_args(tiny_bert, toy_files, out, space, "--trials", "4", "--max-steps", "2", "--no-prune",
                       "--storage", postgres_url, "--study", "pg-test")
    r = runner.invoke(app, [*args, "--workers", "2"])
    assert r.exit_code == 0, r.output
    study = optuna.load_study(study_name="pg-test", storage=postgres_url)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert len({t.params["train.lr"] for t in study.trials}) == 4
    assert not (out / "study.db").exists() and not (out / "study.journal").exists()  # the study is in the server
    check_final_reports(out, study, 4)
    # --overwrite replaces the study in the server too
    r = runner.invoke(app, [*args, "--trials", "1", "--overwrite"])
    assert r.exit_code == 0, r.output
    assert len(optuna.load_study(study_name="pg-test", storage=postgres_url).trials) == 1
