"""Two processes under `accelerate launch` (CPU, gloo): metrics count each example once; one writer."""

import json
import os
import shutil
import subprocess
import sys

import pytest


@pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "accelerate")), reason="accelerate CLI not installed")
def test_two_processes(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "run"
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    # --multi_gpu with no GPU present gives MULTI_CPU (gloo); --cpu would force a single process
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "peftbert.cli", "tune", "--model", str(tiny_bert),
           "--train-file", str(toy_files["train"]), "--validation-file", str(toy_files["validation"]),
           "--test-file", str(toy_files["test"]), "--output", str(out), "--epochs", "2", "--batch-size", "16",
           "--max-length", "16", "--method", "full", "--lr", "1e-3", "--precision", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_processes"] == 2
    assert m["validation"]["n"] == 40 and m["test"]["n"] == 40  # gathered once per example, no duplicates
    assert m["steps"] == 2 * 5  # 160 examples / (16 x 2 processes) per step, 2 epochs
    lines = (out / "eval_log.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one writer
