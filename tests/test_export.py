"""`peftbert export`: plain checkpoints that transformers.pipeline loads without peft or peftbert."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from helpers import make_config
from peftbert.cli import app
from peftbert.predict import load_run
from peftbert.tuning import run_tune
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
