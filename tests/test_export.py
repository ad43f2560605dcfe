"""`peftbert export`: plain checkpoints that transformers.pipeline loads without peft or peftbert."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import make_config
from peftbert.cli import app
from peftbert.predict import load_run
from peftbert.commands.tune import run_tune
from test_cli import assert_one_line_error

runner = CliRunner()

PIPELINE = """
import json, sys
from transformers import pipeline
texts = json.loads(sys.argv[2])
clf = pipeline("text-classification", model=sys.argv[1], device=-1)
out = clf(texts, top_k=None, function_to_apply="none")
assert "peft" not in sys.modules and "peftbert" not in sys.modules, "needed peft or peftbert"
print(json.dumps([{d["label"]: d["score"] for d in row} for row in out]))
"""


@pytest.mark.parametrize("method", ["lora", "full"])
def test_exported_run_loads_in_a_plain_pipeline(tiny_bert, toy_files, tmp_path, method):
    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, method, run, ["train.epochs=3", "train.lr=1e-2"]),
             log=lambda *a: None)
    r = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "plain")])
    assert r.exit_code == 0, r.output
    texts = pd.read_csv(toy_files["test"])["text"].tolist()
    p = subprocess.run([sys.executable, "-c", PIPELINE, str(tmp_path / "plain"), json.dumps(texts)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    scores = json.loads(p.stdout)
    model, tok, info = load_run(run)  # the run as trained (adapters not merged)
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    names = info["label_names"]
    plain = torch.tensor([[row[n] for n in names] for row in scores])
    assert torch.allclose(plain, logits, atol=1e-4)
    gold = pd.read_csv(toy_files["test"])["label"].map(names.index)
    accuracy = float((plain.argmax(-1).numpy() == gold.to_numpy()).mean())
    assert accuracy == json.loads((run / "metrics.json").read_text())["test"]["accuracy"]


def test_export_refuses_what_cannot_merge_and_existing_dirs(tiny_bert, toy_files, tmp_path):
    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "adapter", run, ["train.epochs=1"]), log=lambda *a: None)
    r = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "plain")])
    assert_one_line_error(r, "adapter runs cannot be merged", "peftbert predict")
    assert not (tmp_path / "plain").exists() and not (tmp_path / "plain.tmp").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert_one_line_error(runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "mine")]), "not an empty")
    assert_one_line_error(runner.invoke(app, ["export", str(tmp_path), "--output", str(tmp_path / "x")]),
                          "not a finished peftbert run")


def test_onnx_export_matches_pytorch_and_scores_int8(tiny_bert, toy_files, tmp_path):
    import onnxruntime as ort

    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "lora", run, ["train.epochs=3", "train.lr=1e-2"]), log=lambda *a: None)
    r = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "onnx"), "--format", "onnx", "--int8",
                            "--eval-file", toy_files["test"]])
    assert r.exit_code == 0, r.output
    out = tmp_path / "onnx"
    info = json.loads((out / "export_info.json").read_text())
    assert info["parity_max_abs_logit_diff"] < 1e-4
    # independently of the exporter's own check: ONNX Runtime on the test texts against the run as trained
    texts = pd.read_csv(toy_files["test"])["text"].tolist()
    model, tok, _ = load_run(run)
    enc = tok(texts, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {i.name: enc[i.name] for i in sess.get_inputs()})[0]
    with torch.no_grad():
        ref = model(**tok(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(torch.from_numpy(logits), ref, atol=1e-4)
    scores = info["on_eval_file"]
    assert scores["onnx"]["accuracy"] == scores["pytorch"]["accuracy"] == \
        json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert (out / "model_quantized.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    assert "ONNX parity" in r.output and "onnx-int8: accuracy" in r.output and 0 <= scores["onnx-int8"]["accuracy"] <= 1


def test_onnx_options_need_onnx_format(tiny_bert, toy_files, tmp_path):
    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "full", run, ["train.epochs=1"]), log=lambda *a: None)
    r = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "x"), "--int8"])
    assert_one_line_error(r, "--format onnx")
    r = runner.invoke(app, ["export", str(run), "--output", str(tmp_path / "x"), "--format", "onnx",
                            "--eval-file", str(tmp_path / "missing.csv")])
    assert_one_line_error(r, "file not found", "--eval-file")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()


def test_predict_serves_exports_with_the_runs_labels(tiny_bert, toy_files, tmp_path):
    """`peftbert predict EXPORT`: an ONNX export answers through ONNX Runtime (and its int8 graph with --int8),
    an hf export through transformers; every engine gives the run's own labels."""
    run = tmp_path / "run"
    run_tune(make_config(tiny_bert, toy_files, "lora", run, ["train.epochs=3", "train.lr=1e-2"]), log=lambda *a: None)
    for fmt in ("onnx", "hf"):
        extra = ["--int8"] if fmt == "onnx" else []
        assert runner.invoke(app, ["export", str(run), "--output", str(tmp_path / fmt), "--format", fmt,
                                   *extra]).exit_code == 0

    def labels(source, *flags):
        out = tmp_path / f"preds-{len(list(tmp_path.glob('preds-*')))}.jsonl"
        r = runner.invoke(app, ["predict", str(source), "--file", str(toy_files["test"]), "--output", str(out), *flags])
        assert r.exit_code == 0, r.output
        return [json.loads(line)["label"] for line in out.read_text().splitlines()], r.output

    ours, _ = labels(run)
    assert labels(tmp_path / "onnx")[0] == ours
    assert labels(tmp_path / "hf")[0] == ours
    int8, output = labels(tmp_path / "onnx", "--int8")
    assert len(int8) == len(ours) and "int8 vs fp32" in output
    from peftbert.onnx_runtime import OnnxClassifier
    assert isinstance(load_run(tmp_path / "onnx")[0], OnnxClassifier)
    assert_one_line_error(runner.invoke(app, ["export", str(tmp_path / "onnx"), "--output", str(tmp_path / "again")]),
                          "is an export", "source_run")
    shutil.rmtree(tmp_path / "hf")
    (tmp_path / "onnx" / "model_quantized.onnx").unlink()
    assert_one_line_error(runner.invoke(app, ["predict", str(tmp_path / "onnx"), "--text", "x", "--int8"]),
                          "model_quantized.onnx", "--int8")
