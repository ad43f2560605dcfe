"""benchmarks/gpu.sh, the GPU speed table's one prepared script, run here on the CPU with a tiny random BERT: every
section runs both tools and the table is written (the plumbing; the figures come from a lent GPU), and the
pack a GPU machine without network is given round-trips the embedded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, data_dir, make_tiny_bert, needs_data

pytestmark = [pytest.mark.real, needs_data]


def test_gpu_script_runs_every_section_and_writes_the_table(tmp_path):
    model = make_tiny_bert(tmp_path / "tiny", max_positions=128)
    out = tmp_path / "results"
    env = {**os.environ, "PYTHON": sys.executable, "MODEL": str(model), "ROWS": "40", "EPOCHS": "1", "SEEDS": "1,2",
           "ADAPT_STEPS": "2", "CORPUS_DOCS": "2", "PREDICT_TEXTS": "24", "OUT_DIR": str(out), "LIMIT_S": "800",
           "PACK": str(tmp_path / "no-pack")}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cpu (no CUDA: plumbing only)" in r.stdout
    report = json.loads((out / "speed.json").read_text())
    for method in ("full", "lora"):
        for tool in ("peftbert", "reference"):
            assert [x["seed"] for x in report["train"][method][tool]["runs"]] == [1, 2]
            assert report["train"][method][tool]["samples_per_second"] > 0
    assert report["adapt"]["peftbert"]["tokens_per_second"] > 0 < report["adapt"]["reference"]["tokens_per_second"]
    assert report["predict"]["texts"] == 24 and "pipeline (default batch size)" in report["predict"]["rows"]
    table = (out / "speed.md").read_text()
    assert "| full (lr 0.0001) | peftbert tune |" in table and "## Masked-LM training" in table
    assert "## Prediction: 24 texts" in table


def test_pack_round_trips_the_model(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import speed
    from safetensors.torch import load_file

    from peftbert.models import resolve_model

    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--data-dir", str(data_dir()),
                    "--corpus-docs", "2", "--pack", str(tmp_path / "pack")], check=True, capture_output=True)
    pack = tmp_path / "pack"
    assert (pack / "data/finance-tasks/twitter-financial-news-sentiment/valid.csv").is_file()
    assert sorted(p.name for p in (pack / "data/finance-corpus").iterdir())
    assert (pack / "minilm/model-fp16.safetensors").stat().st_size < 48e6  # fits the GPU machine's transfer
    assert speed.packed(str(pack / "minilm"))
    restored = load_file(Path(speed.unpack(pack / "minilm", tmp_path)) / "model.safetensors")
    original = load_file(Path(resolve_model("minilm")) / "model.safetensors")
    assert restored.keys() == original.keys()
    for k, v in original.items():
        assert restored[k].dtype == v.dtype
        assert (restored[k] - v).abs().max() <= 1e-3 * max(1.0, v.abs().max().item()), k
