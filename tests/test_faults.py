"""Faults: SIGKILL at seeded random moments (mid-checkpoint write included) and a full disk while saving.

Each killed command is resumed the way a user would (`--resume latest`, or the same `bench` command again) and
must end where the uninterrupted run ends: same weights, same metrics.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

from helpers import make_config
from peftbert.errors import UserError
from peftbert.commands.tune import run_tune

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PEFTBERT_DATA_DIR": ""}


def peftbert(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbert.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=ENV)


def kill_when(args, ready, rng, timeout=120, jitter=0.03) -> bool:
    """Start `peftbert ARGS`; SIGKILL it as soon as `ready()` holds (polled every 5 ms), plus a random
    0-`jitter` s. True if the kill landed (False: the run finished first)."""
    p = subprocess.Popen([sys.executable, "-m", "peftbert.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=ENV)
    t0 = time.time()
    while p.poll() is None:
        if time.time() - t0 > timeout:
            p.kill()
            pytest.fail(f"the kill point never came within {timeout} s")
        if ready():
            time.sleep(rng.uniform(0, jitter))
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    p.wait()
    return p.returncode == -signal.SIGKILL


def checkpoint_appears(out: Path, step: int):
    return lambda: (out / "checkpoints" / f"checkpoint_{step}").exists()  # the directory comes before its files


def same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def resume_or_restart(args, out):
    """What a user does after a crash: resume; with no complete checkpoint yet, start again."""
    r = peftbert(*args, "--resume", "latest")
    if r.returncode != 0 and "no checkpoint to resume" in r.stderr:
        r = peftbert(*args, "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("seed", [0, 1])
def test_tune_killed_at_random_resumes_to_the_same_result(tiny_bert, toy_files, tmp_path, seed):
    rng = random.Random(seed)
    base = ["tune", "--model", tiny_bert, "--train-file", toy_files["train"], "--validation-file",
            toy_files["validation"], "--method", "full", "--epochs", "4", "--save-every", "2", "--lr", "1e-3",
            "--precision", "no", "--max-length", "16", "--report-to", "none"]
    assert peftbert(*base, "--output", tmp_path / "straight").returncode == 0
    out = tmp_path / "killed"
    args = [*base, "--output", out]
    assert kill_when(args, checkpoint_appears(out, rng.choice([2, 6, 10, 14])), rng)
    resume_or_restart(args, out)
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["validation"] == straight["validation"] and resumed["steps"] == straight["steps"]
    same_weights(AutoModelForSequenceClassification.from_pretrained(tmp_path / "straight").state_dict(),
                 AutoModelForSequenceClassification.from_pretrained(out).state_dict())


def test_adapt_killed_mid_checkpoint_resumes_to_the_same_result(tiny_bert, tmp_path):
    corpus = tmp_path / "corpus.txt"
    rng = random.Random(3)
    words = ["profit", "loss", "the", "company", "market", "quarter", "shares", "growth", "cut", "debt"]
    corpus.write_text("".join(" ".join(rng.choice(words) for _ in range(12)) + "\n" + ("\n" if i % 4 == 3 else "")
                              for i in range(200)))
    base = ["adapt", "--model", tiny_bert, "--corpus", corpus, "--max-steps", "24", "--save-every", "4",
            "--eval-every", "8", "--batch-size", "8", "--block-size", "32", "--head-warmup-steps", "0",
            "--lr", "1e-3", "--precision", "no", "--report-to", "none"]
    assert peftbert(*base, "--output", tmp_path / "straight").returncode == 0
    out = tmp_path / "killed"
    args = [*base, "--output", out]
    assert kill_when(args, checkpoint_appears(out, rng.choice([8, 12, 16])), rng)
    resume_or_restart(args, out)
    same_weights(AutoModelForMaskedLM.from_pretrained(tmp_path / "straight").state_dict(),
                 AutoModelForMaskedLM.from_pretrained(out).state_dict())
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "straight", out))
    assert a["heldout_after"] == pytest.approx(b["heldout_after"], abs=1e-6)


def test_bench_grid_killed_mid_cell_continues_to_the_same_tables(tiny_bert, toy_files, tmp_path):
    def grid(out):
        return ["bench", "--models", tiny_bert, "--methods", "full,lora", "--seeds", "1,2", "--train-file",
                toy_files["train"], "--validation-file", toy_files["validation"], "--test-file", toy_files["test"],
                "--epochs", "2", "--max-length", "16", "--precision", "no", "--output", out,
                "--set", "train.report_to=none", "--set", "train.save_every=4"]

    r = peftbert(*grid(tmp_path / "straight"))
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "killed"
    runs = out / "runs"
    def mid_cell():  # a finished cell, and another with a checkpoint but no metrics.json: killed mid-cell
        cells = list(runs.iterdir()) if runs.is_dir() else []
        return any((c / "metrics.json").exists() for c in cells) and any(
            list(c.glob("checkpoints/checkpoint_*")) and not (c / "metrics.json").exists() for c in cells)

    assert kill_when(grid(out), mid_cell, random.Random(5), jitter=0.01)
    r = peftbert(*grid(out))  # the same command again continues the grid
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = ((d / "results.csv").read_text().splitlines() for d in (tmp_path / "straight", out))
    cols = a[0].split(",")
    keep = [i for i, c in enumerate(cols) if "seconds" not in c and "per_second" not in c and "memory" not in c
            and c not in ("run_dir", "output")]
    strip = lambda rows: sorted(",".join(r.split(",")[i] for i in keep) for r in rows[1:])  # noqa: E731
    assert strip(a) == strip(b)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tiny_bert, toy_files, tmp_path, monkeypatch):
    from accelerate import Accelerator

    real_save, calls, out = Accelerator.save_state, [], tmp_path / "r"

    def save_state(self, *a, **kw):
        calls.append(self.project_configuration.iteration)
        if len(calls) == 2:  # half of the second checkpoint is written, then the disk is full
            part = out / "checkpoints" / f"checkpoint_{calls[-1]}"
            part.mkdir(parents=True)
            (part / "model.safetensors").write_bytes(b"\0" * 64)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, *a, **kw)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    cfg = make_config(tiny_bert, toy_files, "full", out, ["train.epochs=3", "train.save_every=4"])
    with pytest.raises(UserError, match=r"checkpoint_8: No space left on device; .*checkpoint_4 is intact"):
        run_tune(cfg, log=lambda *a: None)
    assert not (out / "checkpoints" / "checkpoint_8").exists() and not (out / "metrics.json").exists()
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    m = run_tune(cfg, resume="latest", log=lambda *a: None)
    assert m["steps"] == 30  # 160 rows, batches of 16, 3 epochs: the run finished from checkpoint_4


def test_file_size_limit_while_saving_is_one_line_and_keeps_the_checkpoint(tiny_bert, toy_files, tmp_path):
    """A real write failure (RLIMIT_FSIZE: writes past 16 KB fail with EFBIG, as on a full disk) in the middle of
    a checkpoint: one line, the partial checkpoint gone, the previous one intact and resumable."""
    import resource

    base = ["tune", "--model", tiny_bert, "--train-file", toy_files["train"], "--validation-file",
            toy_files["validation"], "--method", "full", "--epochs", "3", "--save-every", "5", "--lr", "1e-3",
            "--precision", "no", "--max-length", "16", "--report-to", "none", "--output", tmp_path / "r"]
    out = tmp_path / "r"
    assert kill_when(base, (out / "checkpoints" / "checkpoint_5" / "trainer_state.json").exists, random.Random(0),
                     jitter=0)
    complete = sorted((p.parent.name for p in (out / "checkpoints").glob("*/trainer_state.json")),
                      key=lambda n: int(n.split("_")[1]))

    def limit():  # Python ignores SIGXFSZ, so an oversized write raises instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (16_000, 16_000))

    r = subprocess.run([sys.executable, "-m", "peftbert.cli", *map(str, base), "--resume", "latest"],
                       capture_output=True, text=True, timeout=300, env=ENV, preexec_fn=limit)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: could not write") and f"{complete[-1]} is intact" in line, line
    # the partial checkpoint is gone; the complete ones are as they were
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(complete)
    assert peftbert(*base, "--resume", "latest").returncode == 0  # space again: it finishes
    assert json.loads((out / "metrics.json").read_text())["steps"] == 15


class Killed(BaseException):
    """What SIGKILL leaves, in process: nothing after it runs (no `except` of the loop's catches a BaseException)."""


@pytest.mark.parametrize("stage", ["weights", "state"])
def test_kill_during_a_checkpoint_write_resumes_from_the_previous_checkpoint(tiny_bert, toy_files, tmp_path,
                                                                              monkeypatch, stage):
    """The second checkpoint's write stops part way, deterministically (a real kill lands there only now and
    then): `weights`, its weights half written and nothing else; `state`, Accelerate's files whole and the
    loop's state only as a cut temporary file. `--resume latest` skips it, resumes from the first checkpoint
    and ends where the uninterrupted run ends."""
    from accelerate import Accelerator

    sets = ["train.epochs=3", "train.save_every=4", "train.lr=1e-3"]
    straight = run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "straight", sets), log=lambda *a: None)
    out = tmp_path / "killed"
    real_save, calls = Accelerator.save_state, []

    def save_state(self, *a, **kw):
        calls.append(self.project_configuration.iteration)
        if len(calls) != 2:
            return real_save(self, *a, **kw)
        ckpt = out / "checkpoints" / f"checkpoint_{calls[-1]}"
        if stage == "weights":
            ckpt.mkdir(parents=True)
            weights = (out / "checkpoints" / f"checkpoint_{calls[0]}" / "model.safetensors").read_bytes()
            (ckpt / "model.safetensors").write_bytes(weights[: len(weights) // 2])
        else:
            real_save(self, *a, **kw)
            (ckpt / f"trainer_state.json.{os.getpid()}.tmp").write_text('{"step": ')
        raise Killed

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    cfg = make_config(tiny_bert, toy_files, "full", out, sets)
    with pytest.raises(Killed):
        run_tune(cfg, log=lambda *a: None)
    assert not (out / "checkpoints" / "checkpoint_8" / "trainer_state.json").exists()
    monkeypatch.setattr(Accelerator, "save_state", real_save)
    resumed = run_tune(cfg, resume="latest", log=lambda *a: None)
    assert resumed["validation"] == straight["validation"] and resumed["steps"] == straight["steps"]
    same_weights(AutoModelForSequenceClassification.from_pretrained(tmp_path / "straight").state_dict(),
                 AutoModelForSequenceClassification.from_pretrained(out).state_dict())
