"""--report-to: each tracker, with the real library, writes the run's curves inside the run directory, offline."""

import json

import pytest

from helpers import make_config
from peftbert.config import TrainArgs
from peftbert.errors import UserError
from peftbert.commands.tune import run_tune


def tune(tiny_bert, toy_files, out, tracker):
    return run_tune(make_config(tiny_bert, toy_files, "lora", out, ["train.epochs=1", f"train.report_to={tracker}"]),
                    log=lambda *a: None)


def test_wandb_offline(tiny_bert, toy_files, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    tune(tiny_bert, toy_files, tmp_path / "r", "wandb")
    (run,) = (tmp_path / "r" / "wandb").glob("offline-run-*")  # what `wandb sync` uploads later
    (log,) = run.glob("*.wandb")
    history = log.read_bytes()  # W&B's binary record log: the metric names are stored as plain strings
    assert b"eval/macro_f1" in history and b"train/loss" in history


def test_mlflow_local_file_store(tiny_bert, toy_files, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tune(tiny_bert, toy_files, tmp_path / "r", "mlflow")
    store = tmp_path / "r" / "mlruns"
    assert store.is_dir()
    client = mlflow.tracking.MlflowClient(tracking_uri=store.resolve().as_uri())
    (exp,) = [e for e in client.search_experiments() if e.name == "peftbert"]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["lr"] and "eval/macro_f1" in run.data.metrics and "train/loss" in run.data.metrics
    records = [json.loads(x) for x in (tmp_path / "r" / "eval_log.jsonl").read_text().splitlines()]
    assert run.data.metrics["eval/macro_f1"] == pytest.approx(records[-1]["macro_f1"])


def test_none_writes_no_tracker_files(tiny_bert, toy_files, tmp_path):
    tune(tiny_bert, toy_files, tmp_path / "r", "none")
    assert not any((tmp_path / "r" / d).exists() for d in ("tensorboard", "wandb", "mlruns"))
    assert (tmp_path / "r" / "metrics.json").is_file()


def test_unknown_or_missing_tracker_is_one_line(monkeypatch):
    with pytest.raises(UserError, match="report_to"):
        TrainArgs(report_to="comet")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install wandb"):
        TrainArgs(report_to="wandb")
