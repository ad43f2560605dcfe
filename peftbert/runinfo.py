"""What every run writes beside its outputs: versions, memory, output-directory safety, the final save."""

from __future__ import annotations

import errno
import json
import os
import platform
import resource
import shutil
import tempfile
from pathlib import Path

from .errors import UserError

RUN_MARKERS = ("metrics.json", "recipe.yaml", "eval_log.jsonl", "checkpoints", "tensorboard", "wandb", "mlruns")


def versions() -> dict:
    import accelerate
    import torch
    import peft
    import transformers

    from .version import __version__
    return {"peftbert": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "accelerate": accelerate.__version__}


def peak_memory() -> dict:
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_memory_kind": "cuda"}
    # ru_maxrss is in KiB on Linux: the process's peak resident memory
    return {"peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_memory_kind": "cpu_rss"}


def check_writable(out: Path, flag: str = "--output", file: bool = False) -> None:
    """Before the work starts: `out` (`file`: its directory), or its first existing parent, is a directory this
    process can write in. Probed by creating and removing a file, since permission bits say nothing for root,
    nor on read-only or immutable mounts: an hour's run must not end in PermissionError at its first write."""
    p = Path(out).absolute().parent if file else Path(out).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        where = "exists and" if p == Path(out).absolute() else f"is below {p}, which"
        raise UserError(f"{flag} {out} {where} is a file, not a directory; choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".peftbert-write-probe-", dir=p)
    except OSError as e:
        raise UserError(f"{flag} {out}: {p} is not writable ({io_reason(e)}); choose another {flag} or make "
                        "the directory writable") from None
    os.close(fd)
    os.unlink(probe)


def write_advice(e: Exception) -> str:
    """What to do about a failed write: free space for a full disk, fix permissions for the rest."""
    if isinstance(e, OSError) and e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "make the directory writable (or choose another --output)"
    return "free disk space"


def prepare_output(out: Path, overwrite: bool, resume: str | None) -> None:
    """Refuse to mix runs: an existing run directory needs --overwrite (or --resume to continue it)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a directory; choose another --output")
    check_writable(out)
    if resume or not out.exists():
        return
    entries = list(out.iterdir())
    if not entries:
        return
    if not overwrite:
        raise UserError(f"output directory {out} is not empty; pass --overwrite to replace it or --resume latest")
    if not any((out / m).exists() for m in RUN_MARKERS):
        raise UserError(f"refusing to overwrite {out}: it does not look like a peftbert run directory")
    if os.environ.get("RANK", "0") == "0":  # under `accelerate launch` the others would race it (no state yet)
        shutil.rmtree(out, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # per process: bench shards may write the same file
    tmp.write_text(text)
    tmp.replace(path)  # atomic: a reader never sees half a file


def main_process_log(acc, log):
    """`log` on the main process; silence on the others (each would print the same lines)."""
    return log if acc.is_main_process else (lambda *a, **k: None)


def _write_errors():
    from safetensors import SafetensorError  # safetensors' writer reports a full disk as its own error type

    return (OSError, SafetensorError)


WRITE_ERRORS = _write_errors()


def io_reason(e: Exception) -> str:
    """'No space left on device' from an OSError; the last clause of safetensors' message otherwise."""
    return (e.strerror if isinstance(e, OSError) and e.strerror else str(e).split(": ")[-1]) or type(e).__name__


def save_run(acc, out: Path, model, tokenizer, metrics: dict, extra=None, weights: bool = True) -> None:
    """The artefacts of a finished run, by the main process: weights (`save_pretrained`), tokenizer, then
    `extra(out)` (more files), then metrics.json, written last: its presence marks a finished run.
    `weights=False` (search trials): metrics.json only."""
    acc.wait_for_everyone()
    if acc.is_main_process:
        try:
            if weights:
                model.save_pretrained(out)
                tokenizer.save_pretrained(out)
            if extra is not None:
                extra(out)
            write_json(out / "metrics.json", metrics)
        except WRITE_ERRORS as e:  # a full disk: no metrics.json, so the directory does not pass for a finished run
            raise UserError(f"could not write the run to {out}: {io_reason(e)}; {write_advice(e)} and run the "
                            "same command with --resume latest (or --overwrite)") from None
