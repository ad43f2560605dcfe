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


def free_port() -> int:
    """A port nobody holds now: back-to-back launches on the default 29500 can meet one still closing."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(command, *args) -> Path:
    """`peftbert COMMAND ARGS` on two CPU processes; its --output directory."""
    # --multi_gpu with no GPU present gives MULTI_CPU (gloo); --cpu would force a single process
    cmd = [LAUNCHER, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "peftbert.cli", command,
           *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return Path(args[args.index("--output") + 1])


def launch_tune(*args) -> dict:
    """`peftbert tune ARGS` on two CPU processes; its metrics.json."""
    return json.loads((launch("tune", *args) / "metrics.json").read_text())


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


@needs_launcher
@pytest.mark.parametrize("batching", ["packed", "grouped"])
def test_two_processes_train_like_one_with_the_same_global_batch(tiny_bert, toy_files, tmp_path, batching):
    """Without dropout (see without_dropout), 2 processes x 16 rows give the weights and scores of 1 process x 32:
    the same batches (a random or length-grouped order cut by the global batch; each rank packs its share),
    averaged gradients."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = without_dropout(tiny_bert, tmp_path / "no-dropout")
    common = ["--model", model, "--train-file", toy_files["train"], "--validation-file", toy_files["validation"],
              "--test-file", toy_files["test"], "--epochs", "2", "--max-length", "16", "--method", "full",
              "--lr", "1e-3", "--precision", "no", "--batching", batching]
    one = tmp_path / "one"
    r = subprocess.run([sys.executable, "-m", "peftbert.cli", "tune", *map(str, common), "--batch-size", "32",
                        "--output", str(one)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = launch_tune(*common, "--batch-size", "16", "--output", tmp_path / "two")
    m1 = json.loads((one / "metrics.json").read_text())
    assert m1["steps"] == two["steps"] == 10 and two["num_processes"] == 2
    for split in ("validation", "test"):
        assert two[split]["accuracy"] == m1[split]["accuracy"] and two[split]["confusion_matrix"] == \
            m1[split]["confusion_matrix"]
    a = AutoModelForSequenceClassification.from_pretrained(one).state_dict()
    b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "two").state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def without_dropout(model: Path, out: Path) -> Path:
    """A copy of `model` without dropout. Every rank draws dropout masks from the same seeded stream, so N ranks
    x B rows do not drop what one process x N*B rows drops; without dropout the runs can agree."""
    shutil.copytree(model, out)
    cfg = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**cfg, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}))
    return out


@needs_launcher
@pytest.mark.parametrize("preserve, loss_tolerance", [(0, 1e-4), (1, 5e-4)])  # measured: 9e-5 and 2.4e-4
def test_adapt_under_two_processes_trains_like_one(tiny_bert, tmp_path, preserve, loss_tolerance):
    """2 processes x 4 blocks = 1 process x 8: the same blocks per step, the same masks (drawn for the global
    batch, see data.mlm.mask_tokens), averaged gradients -> the same weights and held-out scores."""
    from transformers import AutoModelForMaskedLM

    corpus = tmp_path / "corpus.txt"
    words = ["profit", "loss", "the", "company", "market", "quarter", "shares", "growth", "cut", "debt"]
    corpus.write_text("".join(" ".join(words[(i * 7 + j) % 10] for j in range(12)) + "\n" + ("\n" if i % 4 == 3 else "")
                              for i in range(120)))
    args = ["--model", without_dropout(tiny_bert, tmp_path / "model"), "--corpus", corpus, "--max-steps", "4",
            "--block-size", "32", "--head-warmup-steps", "0", "--lr", "1e-3", "--precision", "no", "--eval-every", "2",
            "--preserve", preserve]
    one = tmp_path / "one"
    r = subprocess.run([sys.executable, "-m", "peftbert.cli", "adapt", *map(str, args), "--batch-size", "8",
                        "--output", str(one)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = launch("adapt", *args, "--batch-size", "4", "--output", tmp_path / "two")
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["num_processes"] == 2 and m2["steps"] == m1["steps"] == 4
    for when in ("heldout_before", "heldout_after"):
        assert m2[when]["masked_tokens"] == m1[when]["masked_tokens"]  # counted once per token
        # the preservation term's gradient adds to the float noise below; the weights differ by the same 3.5e-3
        assert abs(m2[when]["loss"] - m1[when]["loss"]) < loss_tolerance, when
    assert len((two / "eval_log.jsonl").read_text().splitlines()) == 2  # one writer
    a, b = (AutoModelForMaskedLM.from_pretrained(d).state_dict() for d in (one, two))
    # Adam divides by sqrt(v): where a gradient is ~0 (embedding rows of tokens a step barely sees), float noise
    # in the summed gradients (two partial sums instead of one) moves the update by up to lr (1e-3) per step
    for k in a:
        assert (a[k] - b[k]).abs().max() < 4e-3, k


@needs_launcher
def test_bench_under_two_processes(tiny_bert, toy_files, tmp_path):
    out = launch("bench", "--models", tiny_bert, "--methods", "full,lora", "--seeds", "1", "--train-file",
                 toy_files["train"], "--validation-file", toy_files["validation"], "--test-file", toy_files["test"],
                 "--epochs", "1", "--max-length", "16", "--precision", "no", "--output", tmp_path / "grid")
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per cell, written once
    for cell in (out / "runs").iterdir():
        m = json.loads((cell / "metrics.json").read_text())
        assert m["num_processes"] == 2 and m["test"]["n"] == 40
