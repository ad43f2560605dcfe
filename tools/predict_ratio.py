"""`peftbert predict RUN --file` against `transformers.pipeline` on the same texts, whole process, side by side.

Both arms run as fresh processes in one script, alternating (A B A B ...), so that they share the host's
conditions; each arm's wall time includes imports, loading and writing. The pipeline gets the run merged into
a plain checkpoint first (as benchmarks/speed.py does), and peftbert's ONNX cache is built before timing (its
one-off cost printed apart). Prints one JSON object: per arm the median wall seconds, texts/s and the ratio
to the pipeline at its default batch size.

    python tools/predict_ratio.py RUN --file texts.csv [--rows 3000] [--repeats 2]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "benchmarks" / "reference" / "pipeline_predict.py"


def timed(cmd) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of one process; on a shared host the CPU
    seconds move less with the other jobs' load than the wall time does."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a tuned run directory")
    p.add_argument("--file", required=True, help="CSV with a text column")
    p.add_argument("--rows", type=int, default=3000, help="the first N texts (0: all)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each arm")
    args = p.parse_args()
    from peftbert.predict import load_engine, load_run

    tmp = Path(tempfile.mkdtemp(prefix="predict-ratio-"))
    df = pd.read_csv(args.file)
    df = df.head(args.rows) if args.rows else df
    df[["text"]].to_csv(tmp / "texts.csv", index=False)
    model, tok, _ = load_run(Path(args.run), merge=True)
    model.save_pretrained(tmp / "merged")
    tok.save_pretrained(tmp / "merged")
    t = time.perf_counter()
    load_engine(args.run, "onnx", log=lambda m: None)
    load_engine(args.run, "onnx", int8=True, log=lambda m: None)
    cache_seconds = time.perf_counter() - t
    peftbert = [sys.executable, "-m", "peftbert.cli", "predict", args.run, "--file", tmp / "texts.csv", "--output"]
    arms = {
        "pipeline (default batch size)": [sys.executable, PIPELINE, "--model", tmp / "merged", "--file",
                                          tmp / "texts.csv", "--output", tmp / "ref.jsonl"],
        "pipeline --batch-size 64": [sys.executable, PIPELINE, "--model", tmp / "merged", "--file",
                                     tmp / "texts.csv", "--output", tmp / "ref.jsonl", "--batch-size", "64"],
        "peftbert predict (default: ONNX cached)": [*peftbert, tmp / "a.jsonl"],
        "peftbert predict --engine torch": [*peftbert, tmp / "b.jsonl", "--engine", "torch"],
        "peftbert predict --int8 (ONNX)": [*peftbert, tmp / "c.jsonl", "--int8"],
        "peftbert predict --int8 --engine torch": [*peftbert, tmp / "d.jsonl", "--int8", "--engine", "torch"],
    }
    walls, cpus = {name: [] for name in arms}, {name: [] for name in arms}
    for _ in range(args.repeats):
        for name, cmd in arms.items():
            wall, cpu = timed(cmd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    med = {name: statistics.median(w) for name, w in walls.items()}
    cpu = {name: statistics.median(c) for name, c in cpus.items()}
    base = "pipeline (default batch size)"
    report = {"texts": len(df), "onnx_cache_build_seconds": round(cache_seconds, 1), "arms": {
        name: {"wall_median": round(med[name], 2), "walls": [round(x, 2) for x in walls[name]],
               "cpu_seconds_median": round(cpu[name], 2), "texts_per_second": round(len(df) / med[name], 1),
               "speedup_vs_pipeline_default": round(med[base] / med[name], 2),
               "cpu_ratio_vs_pipeline_default": round(cpu[base] / cpu[name], 2)} for name in arms}}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
