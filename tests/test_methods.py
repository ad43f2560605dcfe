"""Every registered method: analytic parameter count, save -> load -> identical logits, learns the toy task."""

import json

import pytest
import torch

from helpers import make_config
from peftbert.methods import METHODS, Context, get_method
from peftbert.models import ARCHS, count_params, head_modules, load_classifier
from peftbert.predict import load_run
from peftbert.tune import run_tune

H, L, FF, LABELS = 32, 2, 64, 2  # the tiny BERT of conftest


def analytic_trainable(method: str, cfg, vocab: int) -> int:
    # the tiny BERT was saved as an MLM: its pooler is new, so it trains (and is saved) with the head
    head = H * LABELS + LABELS + H * H + H
    all_linear = [(H, H)] * 4 + [(H, FF), (FF, H)]  # (in, out): q, k, v, attention output, FFN in, FFN out
    if method == "full":
        emb = (vocab + 64 + 2) * H + 2 * H
        layer = 4 * (H * H + H) + 2 * H + (H * FF + FF) + (FF * H + H) + 2 * H
        return emb + L * layer + head
    if method in ("lora", "dora", "rslora", "lora-all"):
        targets = all_linear if cfg.target_modules == "all-linear" else [(H, H)] * 2  # query and value
        per_target = [cfg.r * (i + o) + (o if cfg.use_dora else 0) for i, o in targets]  # A: r x in, B: out x r
        return L * sum(per_target) + head  # (DoRA adds a magnitude per output)
    if method == "adalora":  # P (r x in), Q (out x r), singular values (r) at init_r on every matrix
        return L * sum(cfg.init_rank * (i + o + 1) for i, o in all_linear) + head
    if method == "adapter":
        m = cfg.bottleneck or round(H / cfg.reduction_factor)
        adapters = 2 if cfg.placement == "houlsby" else 1
        per_adapter = (H * m + m) + (m * H + H)  # down and up projections with biases
        layernorms = 2 * 2 * H if cfg.train_layernorm else 0
        return L * (adapters * per_adapter + layernorms) + head
    if method == "bitfit":  # embedding LayerNorm; per layer q, k, v, attn out, 2 LayerNorms, FFN out (H) + FFN in (FF)
        return H + L * (7 * H + FF) + head
    if method == "ia3":  # key and value outputs (H each), the FFN output layer's input (FF)
        return L * (2 * H + FF) + head
    if method == "prefix":  # a key and a value vector per virtual token per layer
        return cfg.num_virtual_tokens * L * 2 * H + head
    raise AssertionError(f"add the formula for {method}")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trainable_params_match_formula(tiny_bert, method):
    cfg = make_config(tiny_bert, {"train": "x", "validation": "x", "test": "x"}, method=method)
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    vocab = model.config.vocab_size
    head = head_modules(model, ARCHS["bert"])
    assert head == ("classifier", "bert.pooler.dense")
    model = get_method(method).apply(model, cfg.method_args, Context(ARCHS["bert"], 10, 2, head))
    counts = count_params(model, head)
    assert counts["trainable_params"] == analytic_trainable(method, cfg.method_args, vocab)
    assert counts["trainable_params"] - counts["trainable_params_no_head"] == H * LABELS + LABELS + H * H + H


# lr and epochs that learn the toy task from the tiny random model (chance is 0.5)
TRAIN = {"full": ("1e-3", 8)}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trains_saves_and_reloads_identically(tiny_bert, toy_files, tmp_path, method):
    lr, epochs = TRAIN.get(method, ("2e-2", 15))
    cfg = make_config(tiny_bert, toy_files, method=method, output=tmp_path / "run",
                      sets=[f"train.lr={lr}", f"train.epochs={epochs}"])
    metrics = run_tune(cfg, log=lambda *a: None)
    assert metrics["test"]["accuracy"] > 0.75, metrics["test"]  # chance is 0.5
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("method", "model", "task", "seed", "trainable_params", "total_params", "train_seconds",
                "train_samples_per_second", "peak_memory_mb", "versions"):
        assert key in saved
    for split in ("validation", "test"):
        assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(saved[split])

    model, tok, _ = load_run(tmp_path / "run")
    model2, _, _ = load_run(tmp_path / "run")
    enc = tok(["the company profit surge", "shares slump on debt"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = model(**enc).logits, model2(**enc).logits
    assert torch.equal(a, b)
    # the reloaded model scores the test set exactly as the trained one did
    from peftbert.predict import run_predict
    scored = run_predict(tmp_path / "run", file=str(toy_files["test"]), output=str(tmp_path / "p.jsonl"))
    assert scored["accuracy"] == pytest.approx(saved["test"]["accuracy"])


def test_lora_artefacts_load_with_plain_peft(tiny_bert, toy_files, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    cfg = make_config(tiny_bert, toy_files, method="lora", output=tmp_path / "run", sets=["train.epochs=1"])
    run_tune(cfg, log=lambda *a: None)
    assert (tmp_path / "run" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    plain = PeftModel.from_pretrained(base, str(tmp_path / "run")).eval()
    ours, tok, _ = load_run(tmp_path / "run")
    enc = tok(["market gain"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**enc).logits, ours(**enc).logits)
