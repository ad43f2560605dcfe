"""The shared loop: resume is exact, accumulation matches bigger batches, early stopping, logs."""

import json

import pytest
import torch

from helpers import make_config
from peftbert import train as train_mod
from peftbert.errors import UserError
from peftbert.commands.tune import run_tune
from peftbert.predict import load_run


def weights(run):
    model, _, _ = load_run(run)
    # peft's `original_module` copies are the unused, freshly drawn heads of the base model
    return {k: v.clone() for k, v in model.state_dict().items() if "original_module" not in k}


@pytest.mark.parametrize("batching,contrastive,wise", [("packed", 0, 1), ("grouped", 0, 1), ("grouped", 0.5, 0.5)])
def test_resume_continues_exactly(tiny_bert, toy_files, tmp_path, monkeypatch, batching, contrastive, wise):
    """wise < 1: the weights mixed at the end are the starting model's, not the checkpoint's the resumed run loads."""
    sets = ["train.epochs=3", "train.save_every=7", "train.lr=1e-3", f"train.batching={batching}",
            f"train.contrastive={contrastive}", f"train.wise={wise}"]
    run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "straight", sets), log=lambda *a: None)

    # interrupt the second run after its step-14 checkpoint, then resume it
    real_train = train_mod.train

    def crash_at_15(model, step):
        if step == 15:
            raise KeyboardInterrupt

    def train_with_crash(*a, **kw):
        kw["hooks"] = train_mod.Hooks(on_optimizer_step=crash_at_15)
        return real_train(*a, **kw)

    monkeypatch.setattr("peftbert.train.train", train_with_crash)
    cfg = make_config(tiny_bert, toy_files, "full", tmp_path / "resumed", sets)
    with pytest.raises(KeyboardInterrupt):
        run_tune(cfg, log=lambda *a: None)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    monkeypatch.setattr("peftbert.train.train", real_train)
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

    monkeypatch.setattr("peftbert.train.train", train_with_poison)
    out = tmp_path / "r"
    cfg = make_config(tiny_bert, toy_files, "full", out, ["train.epochs=3", "train.save_every=4", "train.log_every=3"])
    with pytest.raises(UserError, match=r"loss became nan by step 6: the learning rate .* too high.*--overwrite"):
        run_tune(cfg, log=lambda *a: None)
    assert not (out / "metrics.json").exists()
    (ckpt,) = (out / "checkpoints").glob("checkpoint_*")  # step 4's, written before the loss went bad
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 4


@pytest.mark.parametrize("method", ["full", "lora"])
def test_head_learns_at_its_own_rate(tiny_bert, toy_files, method):
    """train.head_lr_ratio: the head's parameters (peft's modules_to_save copy for LoRA) get lr x ratio, every
    trainable parameter sits in exactly one group, and biases/LayerNorms are not decayed."""
    from peftbert.methods import Context, get_method
    from peftbert.models import arch_of, head_modules, load_classifier

    cfg = make_config(tiny_bert, toy_files, method, sets=["train.lr=1e-3", "train.head_lr_ratio=10"])
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    head = head_modules(model, arch_of(model.config))
    model = get_method(method).apply(model, cfg.method_args, Context(arch_of(model.config), num_labels=2, head=head))
    groups = train_mod.build_optimizer(model, cfg.train, head).param_groups
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(len(g["params"]) for g in groups) == len(trainable) == len(lr_of)
    for name, p in trainable.items():
        lr, decay = lr_of[id(p)]
        in_head = ".classifier." in f".{name}" or ".pooler." in f".{name}"  # (the tiny MLM checkpoint has no pooler)
        assert lr == pytest.approx(1e-2 if in_head else 1e-3), name
        assert decay == (0.0 if p.ndim < 2 or "LayerNorm" in name else cfg.train.weight_decay), name
    assert any(".classifier." in f".{n}" for n in trainable) and any(".layer." in f".{n}" for n in trainable)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_layer_lr_decay_lowers_the_lr_layer_by_layer(tiny_bert, toy_files, method):
    """train.layer_lr_decay: the top encoder block at lr, each one below at decay x the one above, the embeddings
    below the bottom block; the head keeps lr x head_lr_ratio."""
    from peftbert.methods import Context, get_method
    from peftbert.models import arch_of, head_modules, load_classifier

    cfg = make_config(tiny_bert, toy_files, method,
                      sets=["train.lr=1e-3", "train.head_lr_ratio=10", "train.layer_lr_decay=0.5"])
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    head = head_modules(model, arch_of(model.config))
    model = get_method(method).apply(model, cfg.method_args, Context(arch_of(model.config), num_labels=2, head=head))
    groups = train_mod.build_optimizer(model, cfg.train, head).param_groups
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    seen = set()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        want = (1e-2 if ".classifier." in f".{name}" or ".pooler." in f".{name}"
                else 2.5e-4 if ".embeddings." in name else 5e-4 if ".layer.0." in name else 1e-3)  # 2 layers
        lr, decay = lr_of[id(p)]
        assert lr == pytest.approx(want), name
        assert decay == (0.0 if p.ndim < 2 or "LayerNorm" in name else cfg.train.weight_decay), name
        seen.add(want)
    assert {5e-4, 1e-3} <= seen  # both blocks trained (LoRA leaves the embeddings frozen)
    assert groups[0]["lr"] == pytest.approx(1e-3)  # the logged lr is the top block's
    # at decay 1 the groups are the ones checkpoints from before the setting hold: (head or not) x (decayed or not)
    cfg.train.layer_lr_decay = 1.0
    kinds = {(lr_of[id(p)][0] == pytest.approx(1e-2), lr_of[id(p)][1]) for p in model.parameters() if p.requires_grad}
    assert len(train_mod.build_optimizer(model, cfg.train, head).param_groups) == len(kinds) >= 3


def test_layer_depths_of_other_encoders():
    """DistilBERT's and ELECTRA's names (the projection with the embeddings), LoRA under PEFT, and a frozen top
    block still counted in the depth."""
    names = ["distilbert.embeddings.word_embeddings.weight", "distilbert.transformer.layer.0.ffn.lin1.weight",
             "distilbert.transformer.layer.2.ffn.lin1.weight", "electra.embeddings_project.weight",
             "base_model.model.bert.encoder.layer.1.attention.self.query.lora_A.default.weight",
             "classifier.weight", "pre_classifier.weight"]
    assert train_mod.layer_depths(names) == {names[0]: 3, names[1]: 2, names[2]: 0, names[3]: 3, names[4]: 1,
                                             names[5]: None, names[6]: None}


def test_layer_lr_decay_outside_0_1_is_one_line(tiny_bert, toy_files):
    for bad in ("1.5", "0"):
        with pytest.raises(UserError, match=rf"train.layer_lr_decay must be in \(0, 1\], got {bad}"):
            make_config(tiny_bert, toy_files, "full", sets=[f"train.layer_lr_decay={bad}"])


def test_resume_with_other_learning_rates_is_one_line(tiny_bert, toy_files, tmp_path):
    """A checkpoint's optimizer holds its learning rates: resuming with others would silently keep the old ones."""
    from typer.testing import CliRunner

    from peftbert.cli import app

    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "lora", run, ["train.save_every=2", "train.max_steps=4"]),
             log=lambda *a: None)
    base = ["tune", "--model", str(tiny_bert), "--method", "lora", "--train-file", str(toy_files["train"]),
            "--validation-file", str(toy_files["validation"]), "--output", str(run), "--resume", "latest",
            "--set", "data.max_length=16", "--set", "train.precision=no", "--batch-size", "16", "--max-steps", "6"]
    recipe = (run / "recipe.yaml").read_text()
    for extra in (["--lr", "5e-2"], ["--head-lr-ratio", "3"], ["--weight-decay", "0.3"], ["--layer-lr-decay", "0.5"]):
        r = CliRunner().invoke(app, [*base, *extra])  # found once the checkpoint is read, after the run's log lines
        errors = [line for line in r.output.splitlines() if line.startswith("error:")]
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert len(errors) == 1 and "other optimizer settings" in errors[0] and "--overwrite" in errors[0]
        assert (run / "recipe.yaml").read_text() == recipe  # the advice (resume with it) still holds
    assert not (run / "checkpoints" / "checkpoint_6").exists()
    # a half-done epoch resumed in another batch order would skip other texts than the ones it trained on
    r = CliRunner().invoke(app, [*base, "--batching", "grouped"])
    assert r.exit_code == 2 and "trained with packed batches, not grouped" in r.output, r.output
    # its best score so far is of another metric: compared with this run's, it would decide the weights kept
    r = CliRunner().invoke(app, [*base, "--metric", "accuracy"])
    assert r.exit_code == 2 and "kept its best weights by macro_f1, this run chooses by accuracy" in r.output, r.output
    # trained on cross-entropy alone: resumed with a contrastive term, its objective would change halfway
    r = CliRunner().invoke(app, [*base, "--contrastive", "0.5"])
    assert r.exit_code == 2, r.output
    assert "trained with train.contrastive 0, this run asks for train.contrastive 0.5 at temperature 0.3" in r.output
    assert not (run / "checkpoints" / "checkpoint_6").exists()
    # a checkpoint from before the record holds none, so nothing can be checked: it resumes as it did
    state_file = run / "checkpoints" / "checkpoint_4" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps({k: v for k, v in state.items() if not k.startswith("contrastive")}))
    r = CliRunner().invoke(app, [*base, "--contrastive", "0.5"])
    assert r.exit_code == 0 and "resumed from" in r.output and (run / "metrics.json").exists(), r.output


def test_resumed_loss_is_checked_by_weight_and_temperature(tmp_path):
    from peftbert.config import TrainArgs
    from peftbert.errors import CheckpointMismatch
    from peftbert.train import check_resumed_loss

    args = TrainArgs(contrastive=0.5, contrastive_temperature=0.1)
    check_resumed_loss(0.5, 0.1, args, tmp_path)  # the same loss
    check_resumed_loss(0.0, 0.3, TrainArgs(contrastive_temperature=0.1), tmp_path)  # no contrastive loss either way
    with pytest.raises(CheckpointMismatch, match="contrastive 0.5 at temperature 0.3, this run asks for train.con"):
        check_resumed_loss(0.5, 0.3, args, tmp_path)
