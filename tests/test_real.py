"""Real model, real data: the embedded all-MiniLM-L6-v2 on small slices of ../shared/data."""

import json

import pytest
import torch

from conftest import needs_data
from peftbert.config import build_config
from peftbert.methods import method_configs
from peftbert.predict import load_run
from peftbert.commands.tune import run_tune

pytestmark = pytest.mark.real


def real_config(out, method="lora", task="twitter-fin-sentiment", **train):
    cli = {"model": "minilm", "method": method, "task": task, "output": str(out),
           "train": {"epochs": 1, "batch_size": 32, **train},
           "data": {"max_train_samples": 384, "max_eval_samples": 128, "max_length": 64}}
    return build_config(None, cli, method_configs())


@needs_data
def test_lora_on_finance_sentiment_slice(tmp_path):
    m = run_tune(real_config(tmp_path / "run", lr=2e-3, epochs=2), log=lambda *a: None)
    assert m["model"] == "minilm" and m["task"] == "twitter-fin-sentiment"
    assert m["trainable_params"] < 0.01 * m["total_params"]
    assert m["precision"] in ("bf16", "no")
    assert m["test"]["n"] == 128 and set(m["test"]["per_class"]) == {"bearish", "bullish", "neutral"}
    # plain peft loads the artefacts and gives the same logits as peftbert's loader
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification
    from peftbert.models import resolve_model

    base = AutoModelForSequenceClassification.from_pretrained(resolve_model("minilm"), num_labels=3)
    plain = PeftModel.from_pretrained(base, str(tmp_path / "run")).eval()
    ours, tok, _ = load_run(tmp_path / "run")
    enc = tok(["$AAPL beats estimates, shares jump", "Fed holds rates steady"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**enc).logits, ours(**enc).logits)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["versions"]["peft"]


@needs_data
def test_full_on_fomc_slice(tmp_path):
    m = run_tune(real_config(tmp_path / "run", method="full", task="fomc-hawkish-dovish", lr=1e-4), log=lambda *a: None)
    assert m["task"] == "fomc-hawkish-dovish@5768"
    assert m["trainable_params"] == m["total_params"]
    model, _, info = load_run(tmp_path / "run")
    assert info["label_names"] == ["dovish", "hawkish", "neutral"]
    assert model.config.id2label == {0: "dovish", 1: "hawkish", 2: "neutral"}


def test_sample_fallback_without_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("PEFTBERT_DATA_DIR", raising=False)
    cli = {"model": "minilm", "method": "lora", "output": str(tmp_path / "run"), "train": {"epochs": 1}}
    m = run_tune(build_config(None, cli, method_configs()), log=lambda *a: None)
    assert m["task"] == "finance-sample" and m["test"]["n"] == 57
