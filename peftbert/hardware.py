"""What this machine does fast: the precision `auto` picks, and why.

Some CPUs of one machine kind have AMX (bf16 matrix products ~5x fp32), others have no bf16 units at all
(bf16 emulated, ~5x *slower*), and CPU flags alone do not say how oneDNN will run. So `auto` on a CPU
times one MiniLM-sized matrix product in both precisions (about 50 ms on one thread, once per process) and takes bf16
only where the flags promise it and it is measured at least 1.5x faster; on a GPU it follows CUDA's bf16
support (Ampere and newer), else fp16.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

BF16_MIN_SPEEDUP = 1.5  # below this the two are close: fp32 keeps runs reproducible across hosts


def cpu_bf16_flags() -> list[str]:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(flags & {"amx_bf16", "avx512_bf16"})


def matmul_seconds(dtype, m: int = 256, k: int = 384, n: int = 1536, reps: int = 10, rounds: int = 3) -> float:
    """Seconds of one (m x k) @ (k x n) product (MiniLM's feed-forward layer on a batch of tokens) on one
    thread, best of `rounds`: what one core can do. With all threads, another busy process on the machine
    made the measured bf16/fp32 ratio of an AMX host fall from 7x to 1.3x (thread wake-ups dominate)."""
    import torch

    # a private generator: drawing from the global one after a run's set_seed would shift every later draw of
    # the first run in a process only (`auto` is timed once per process), so its results differed from a rerun's
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen).to(dtype), torch.randn(k, n, generator=gen).to(dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(rounds):
            a @ b
            t = time.perf_counter()
            for _ in range(reps):
                a @ b
            best = min(best, (time.perf_counter() - t) / reps)
        return best
    finally:
        torch.set_num_threads(threads)


@functools.lru_cache(maxsize=None)
def auto_precision(cpu: bool) -> tuple[str, str]:
    """(precision, why) for `precision: auto`."""
    import torch

    if not cpu and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name()} supports bf16"
        return "fp16", f"{torch.cuda.get_device_name()} lacks bf16"
    flags = cpu_bf16_flags()
    if not flags or not torch.backends.mkldnn.is_available():
        return "no", "this CPU has no bf16 matrix units (no amx_bf16/avx512_bf16): fp32"
    speedup = matmul_seconds(torch.float32) / matmul_seconds(torch.bfloat16)
    if speedup >= BF16_MIN_SPEEDUP:
        return "bf16", f"{'/'.join(flags)}: bf16 matmul measured {speedup:.1f}x fp32"
    return "no", f"{'/'.join(flags)} present but bf16 matmul measured {speedup:.1f}x fp32 (< {BF16_MIN_SPEEDUP}): fp32"


def describe(precision: str, resolved: str, cpu: bool) -> str:
    """For the run's log line and metrics.json: what ran, and why when `auto` chose it."""
    return f"auto -> {resolved} ({auto_precision(cpu)[1]})" if precision == "auto" else resolved
