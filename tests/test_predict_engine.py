"""`peftbert predict`'s engines: ONNX Runtime from an export cached in the run by default (same labels as
PyTorch, built once, rebuilt when the run changes), PyTorch when asked or when the export cannot be made."""

import json

import pytest
from typer.testing import CliRunner

from helpers import make_config
from peftbert.cli import app
from peftbert.errors import UserError
from peftbert.predict import ONNX_CACHE, load_engine, run_fingerprint
from peftbert.commands.tune import run_tune

pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.fixture(scope="module")
def lora_run(tiny_bert, toy_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "run"
    run_tune(make_config(tiny_bert, toy_files, "lora", out, ["train.epochs=2", "train.lr=1e-2"]), log=lambda *a: None)
    return out


def predict(run, toy_files, out, *flags):
    r = runner.invoke(app, ["predict", str(run), "--file", str(toy_files["test"]), "--output", str(out), *flags])
    assert r.exit_code == 0, r.output
    return [json.loads(x) for x in out.read_text().splitlines()], r.output


def test_default_engine_is_a_cached_onnx_export_with_torchs_labels(lora_run, toy_files, tmp_path):
    torch_rows, out = predict(lora_run, toy_files, tmp_path / "t.jsonl", "--engine", "torch")
    assert "PyTorch" in out and not (lora_run / ONNX_CACHE).exists()
    rows, out = predict(lora_run, toy_files, tmp_path / "a.jsonl")
    assert "exporting the run to ONNX once" in out and "ONNX Runtime" in out
    assert (lora_run / ONNX_CACHE / "fingerprint.txt").read_text().strip() == run_fingerprint(lora_run)
    assert [r["label"] for r in rows] == [r["label"] for r in torch_rows]
    assert max(abs(a[k] - b[k]) for a, b in zip(rows, torch_rows) for k in a if k.startswith("p_")) < 1e-4
    _, out = predict(lora_run, toy_files, tmp_path / "b.jsonl")
    assert "exporting" not in out and "ONNX Runtime" in out  # the cache is reused
    _, out = predict(lora_run, toy_files, tmp_path / "c.jsonl", "--int8")
    assert "ONNX Runtime, int8" in out and "int8 vs fp32" in out


def test_a_few_texts_do_not_pay_for_an_export(tiny_bert, toy_files, tmp_path):
    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "full", run, ["train.epochs=1"]), log=lambda *a: None)
    r = runner.invoke(app, ["predict", str(run), "--text", "profit surge"])
    assert r.exit_code == 0 and not (run / ONNX_CACHE).exists(), r.output


def test_an_export_that_fails_falls_back_to_torch_or_is_one_line(lora_run, toy_files, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise UserError("ONNX export failed: unsupported operator")

    monkeypatch.setattr("peftbert.onnx_export.export_onnx", broken)
    monkeypatch.setattr("peftbert.predict.run_fingerprint", lambda run: "changed")  # the cache is stale
    rows, out = predict(lora_run, toy_files, tmp_path / "p.jsonl")
    assert "note: serving with PyTorch (ONNX export failed" in out and len(rows) == 40
    r = runner.invoke(app, ["predict", str(lora_run), "--text", "x", "--engine", "onnx"])
    # the progress line that announced the export, then the one error line
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1] == "error: ONNX export failed: unsupported operator"
    assert not list(lora_run.glob(f"{ONNX_CACHE}.tmp-*"))  # no half-written cache left


def test_unknown_engine_is_one_line(lora_run):
    with pytest.raises(UserError, match="--engine must be one of auto|torch|onnx"):
        load_engine(lora_run, "tensorrt")


def test_a_damaged_cache_is_rebuilt(lora_run, toy_files, tmp_path):
    predict(lora_run, toy_files, tmp_path / "a.jsonl")  # the cache exists
    (lora_run / ONNX_CACHE / "model.onnx").write_bytes(b"not a graph")
    rows, out = predict(lora_run, toy_files, tmp_path / "b.jsonl")
    assert "exporting the run to ONNX once" in out and "ONNX Runtime" in out and len(rows) == 40


def test_a_fresh_cache_serves_without_loading_the_pytorch_model(lora_run, toy_files, tmp_path, monkeypatch):
    want, _ = predict(lora_run, toy_files, tmp_path / "a.jsonl")  # builds or reuses the cache
    assert (lora_run / ONNX_CACHE / "config.json").is_file()

    def no_torch_model(*a, **k):
        raise AssertionError("the PyTorch model was loaded")

    monkeypatch.setattr("peftbert.predict.load_run", no_torch_model)
    rows, out = predict(lora_run, toy_files, tmp_path / "b.jsonl")
    assert rows == want and "ONNX Runtime" in out
