"""The shared loop: resume is exact, accumulation matches bigger batches, early stopping, logs."""

import json

import pytest
import torch

from helpers import make_config
from peftbert import train as train_mod
from peftbert.errors import UserError
from peftbert.tuning import run_tune
from peftbert.predict import load_run


def weights(run):
    model, _, _ = load_run(run)
    # peft's `original_module` copies are the unused, freshly drawn heads of the base model
    return {k: v.clone() for k, v in model.state_dict().items() if "original_module" not in k}


def test_resume_continues_exactly(tiny_bert, toy_files, tmp_path, monkeypatch):
    sets = ["train.epochs=3", "train.save_every=7", "train.lr=1e-3"]
    run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "straight", sets), log=lambda *a: None)

    # interrupt the second run after its step-14 checkpoint, then resume it
    real_train = train_mod.train

    def crash_at_15(model, step):
        if step == 15:
            raise KeyboardInterrupt

    def train_with_crash(*a, **kw):
        kw["hooks"] = train_mod.Hooks(on_optimizer_step=crash_at_15)
        return real_train(*a, **kw)

    monkeypatch.setattr("peftbert.tuning.train", train_with_crash)
    cfg = make_config(tiny_bert, toy_files, "full", tmp_path / "resumed", sets)
    with pytest.raises(KeyboardInterrupt):
        run_tune(cfg, log=lambda *a: None)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr("peftbert.tuning.train", real_train)
    run_tune(cfg, resume="latest", log=lambda *a: None)

    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    log_a = (tmp_path / "straight" / "eval_log.jsonl").read_text().splitlines()
    log_b = (tmp_path / "resumed" / "eval_log.jsonl").read_text().splitlines()
    assert [json.loads(x)["accuracy"] for x in log_a] == [json.loads(x)["accuracy"] for x in log_b]


def test_grad_accum_steps_like_a_bigger_batch(tiny_bert, toy_files, tmp_path):
    m1 = run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "a", ["train.epochs=1", "train.batch_size=32"]),
                  log=lambda *a: None)
    m2 = run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "b",
                              ["train.epochs=1", "train.batch_size=16", "train.grad_accum=2"]), log=lambda *a: None)
    assert m1["steps"] == m2["steps"] == 5  # 160 examples / 32 per optimizer step


def test_eval_every_patience_and_logs(tiny_bert, toy_files, tmp_path):
    cfg = make_config(tiny_bert, toy_files, "lora", tmp_path / "r",
                      ["train.epochs=20", "train.eval_every=2", "train.patience=2", "train.lr=1e-5"])
    m = run_tune(cfg, log=lambda *a: None)
    assert m["stopped_early"] and m["steps"] < 200
    records = [json.loads(x) for x in (tmp_path / "r" / "eval_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(2, 2 * len(records) + 1, 2))
    assert any((tmp_path / "r" / "tensorboard").rglob("events.out.tfevents.*"))
    assert m["best_step"] == max(records, key=lambda r: r["macro_f1"])["step"]


def test_same_seed_same_result(tiny_bert, toy_files, tmp_path):
    sets = ["train.epochs=1"]
    a = run_tune(make_config(tiny_bert, toy_files, "lora", tmp_path / "a", sets), log=lambda *a: None)
    b = run_tune(make_config(tiny_bert, toy_files, "lora", tmp_path / "b", sets), log=lambda *a: None)
    assert a["validation"]["confusion_matrix"] == b["validation"]["confusion_matrix"]
    assert weights(tmp_path / "a").keys() == weights(tmp_path / "b").keys()
    for k, v in weights(tmp_path / "a").items():
        assert torch.equal(v, weights(tmp_path / "b")[k]), k


def test_bf16_trains_on_cpu(tiny_bert, toy_files, tmp_path):
    m = run_tune(make_config(tiny_bert, toy_files, "lora", tmp_path / "r", ["train.epochs=1", "train.precision=bf16"]),
                 log=lambda *a: None)
    assert m["precision"] == "bf16"


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_checkpoint(tiny_bert, toy_files, tmp_path, monkeypatch):
    real_train = train_mod.train

    def poison_at_5(model, step):  # what a too-high learning rate does, made certain
        if step == 5:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).fill_(float("nan"))

    def train_with_poison(*a, **kw):
        kw["hooks"] = train_mod.Hooks(on_optimizer_step=poison_at_5)
        return real_train(*a, **kw)

    monkeypatch.setattr("peftbert.tuning.train", train_with_poison)
    out = tmp_path / "r"
    cfg = make_config(tiny_bert, toy_files, "full", out, ["train.epochs=3", "train.save_every=4", "train.log_every=3"])
    with pytest.raises(UserError, match=r"loss became nan by step 6: the learning rate .* too high.*--overwrite"):
        run_tune(cfg, log=lambda *a: None)
    assert not (out / "metrics.json").exists()
    (ckpt,) = (out / "checkpoints").glob("checkpoint_*")  # step 4's, written before the loss went bad
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4
