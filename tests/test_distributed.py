"""Two processes under `accelerate launch` (CPU, gloo): metrics count each example once; one writer."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


LAUNCHER = os.path.join(os.path.dirname(sys.executable), "accelerate")
needs_launcher = pytest.mark.skipif(shutil.which("accelerate") is None and not os.path.exists(LAUNCHER),
                                    reason="accelerate CLI not installed")


def launch_tune(*args) -> dict:
    """`peftbert tune ARGS` on two CPU processes; its metrics.json."""
    # --multi_gpu with no GPU present gives MULTI_CPU (gloo); --cpu would force a single process
    cmd = [LAUNCHER, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "peftbert.cli", "tune", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((Path(args[args.index("--output") + 1]) / "metrics.json").read_text())


@needs_launcher
def test_two_processes(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "run"
    m = launch_tune("--model", tiny_bert, "--train-file", toy_files["train"], "--validation-file",
                    toy_files["validation"], "--test-file", toy_files["test"], "--output", out, "--epochs", "2",
                    "--batch-size", "16", "--max-length", "16", "--method", "full", "--lr", "1e-3", "--precision", "no")
    assert m["num_processes"] == 2
    assert m["validation"]["n"] == 40 and m["test"]["n"] == 40  # gathered once per example, no duplicates
    assert m["steps"] == 2 * 5  # 160 examples / (16 x 2 processes) per step, 2 epochs
    lines = (out / "eval_log.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one writer


@needs_launcher
def test_adalora_schedule_is_the_steps_run_under_two_processes_and_accumulation(tiny_bert, toy_files, tmp_path):
    """140 examples in batches of 16 are 9 batches: 5 per process (Accelerate pads the shorter shard), so
    3 optimizer steps per epoch at grad_accum 2. Counting 9 // 2 = 4 batches per process would plan 2."""
    m = launch_tune("--model", tiny_bert, "--train-file", toy_files["train"], "--validation-file",
                    toy_files["validation"], "--output", tmp_path / "run", "--epochs", "2", "--batch-size", "16",
                    "--grad-accum", "2", "--max-train-samples", "140", "--max-length", "16", "--method", "adalora",
                    "--adalora.target_r", "2", "--adalora.deltaT", "1", "--precision", "no")
    assert m["num_processes"] == 2 and m["steps"] == 2 * 3
    assert m["adalora"]["schedule"]["total_step"] == m["steps"]
    assert m["adalora"]["final_total_rank"] == m["adalora"]["target_total_rank"]  # the pruning ran to the end
