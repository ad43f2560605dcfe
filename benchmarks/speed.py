"""peftbert against the script a practitioner would write, side by side, on one machine, in one run.

    PEFTBERT_DATA_DIR=../shared/data python benchmarks/speed.py     # -> runs/speed-cpu/<name>.json, .md

Rows (each command timed as a whole process; throughput as each tool measures its own training loop):
- tune full / lora: `peftbert tune` vs reference/trainer_tune.py (transformers.Trainer + peft, random batches,
  DataCollatorWithPadding), same model, rows, epochs, batch, recipe (SAME_RECIPE), max length, precision, at
  each of --seeds; test accuracy is compared as the difference of the two tools' means over the seeds (a
  single seed's score swings by points in this short regime);
- adapt: `peftbert adapt` (packed blocks, head on masked positions only) vs reference/trainer_mlm.py
  (run_mlm.py --line_by_line: a padded line per example, head on every position), real tokens per second;
- predict: `peftbert predict` on the tuned LoRA run vs reference/pipeline_predict.py
  (transformers.pipeline on the same run merged into a plain checkpoint), fp32, whole process and steady state,
  labels compared row by row; then `peftbert predict --int8`.
Useful-FLOP utilisation = useful FLOP/s / measured matmul peak at the precision used, where useful FLOPs count
real tokens only (no padding) with F = 2 N_linear + 4 L d T per token forward (N_linear: encoder weight
matrices, T: mean real length; attention scores and their product with values), 3F per token for full
training (forward, input and weight gradients), 2F when the encoder weights are frozen (LoRA: no weight
gradients), and for masked-LM training 3F plus the MLM head (d^2 + d V) x 6 on the 15% predicted tokens only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
REF = HERE / "reference"
# The recipe both tools train: reference/trainer_tune.py's fixed settings (warm-up 0.06, weight decay 0.01, the
# head at the model's lr, LoRA r 8 / alpha 16 / dropout 0.1 on query and value), given to peftbert as flags, at
# the learning rates of the presets these rows were first measured with. A row compares tools, not recipes: the
# presets (head at 10x, searched LoRA shapes) would change what is trained, not how fast.
SAME_RECIPE = {
    "full": {"lr": 1e-4, "peftbert": ["--warmup-ratio", 0.06, "--weight-decay", 0.01, "--head-lr-ratio", 1]},
    "lora": {"lr": 2e-3, "peftbert": ["--warmup-ratio", 0.06, "--weight-decay", 0.01, "--head-lr-ratio", 1,
                                      "--lora.r", 8, "--lora.alpha", 16, "--lora.dropout", 0.1,
                                      "--lora.target_modules", "qv"]},
}
PEFTBERT = [sys.executable, "-m", "peftbert.cli"]


def run(cmd: list[str], env=None) -> tuple[float, str, str]:
    """(wall seconds, stdout, stderr) of a whole process; stops the benchmark if it fails."""
    t = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n{r.stderr[-3000:]}")
    return wall, r.stdout, r.stderr


def last_json(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def matmul_tflops(dtype, n: int | None = None, reps: int = 10) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = n or (8192 if device == "cuda" else 2048)  # a GPU needs large products to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def device_name() -> str:
    """The GPU's name as a file name (nvidia-h200), or cpu."""
    if not torch.cuda.is_available():
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def host() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpuinfo).group(1)
        info["amx"] = "amx_bf16" in cpuinfo
    except (OSError, AttributeError):
        pass
    return info


def flops_per_token(config, mean_len: float) -> float:
    """Forward FLOPs per real token of the encoder (see the module docstring)."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2 * layers * (4 * d * d + 2 * d * ff) + 4 * layers * d * mean_len


def make_data(data_dir: Path, tmp: Path, rows: int, corpus_docs: int, texts: int) -> dict:
    twitter = data_dir / "finance-tasks" / "twitter-financial-news-sentiment"
    full = pd.read_csv(twitter / "train.csv")
    picked = full.sample(n=rows + rows // 10, random_state=0)
    picked.iloc[:rows].to_csv(tmp / "train.csv", index=False)
    picked.iloc[rows:].to_csv(tmp / "validation.csv", index=False)
    lines = []
    for f in sorted((data_dir / "finance-corpus").glob("*.txt.gz")):  # the first documents of every source
        lines += [line.rstrip("\n") for line in first_documents(f, corpus_docs)] + [""]
    (tmp / "corpus.txt").write_text("\n".join(lines) + "\n")
    if texts:  # a smaller prediction set (smoke runs of this script)
        full.iloc[:texts].to_csv(tmp / "texts.csv", index=False)
    return {"train": tmp / "train.csv", "validation": tmp / "validation.csv", "test": twitter / "valid.csv",
            "texts": tmp / "texts.csv" if texts else twitter / "train.csv", "corpus": tmp / "corpus.txt"}


def first_documents(path: Path, n: int) -> list[str]:
    """The lines of a .txt.gz corpus file up to and including its n-th blank line (documents end at one)."""
    import gzip

    lines, docs = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            lines.append(line)
            docs += not line.strip()
            if docs >= n:
                break
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("PEFTBERT_DATA_DIR", str(HERE.parent.parent / "shared/data")))
    p.add_argument("--rows", type=int, default=3000, help="training rows of twitter finance sentiment")
    p.add_argument("--epochs", type=float, default=3, help="training epochs (both tools)")
    p.add_argument("--seeds", default="42,1,2", help="training seeds (both tools); accuracy is compared over all")
    p.add_argument("--adapt-steps", type=int, default=60, help="optimizer steps of each masked-LM run")
    p.add_argument("--corpus-docs", type=int, default=40, help="documents taken from each finance-corpus file")
    p.add_argument("--predict-texts", type=int, default=0, help="predict only the first N texts (0: all 9.5k)")
    p.add_argument("--sections", default="train,adapt,predict",
                   help="comma-separated sections to run (predict runs on the CPU; a GPU run may skip it)")
    p.add_argument("--model", default="minilm", help="the model both tools train (a tiny one tests the plumbing)")
    p.add_argument("--name", default=device_name(), help="results file name (default: the device, e.g. nvidia-h200)")
    p.add_argument("--out", default=str(HERE.parent / "runs" / "speed-cpu"),
                   help="directory for <name>.md and <name>.json")
    p.add_argument("--pack", metavar="DIR", help="write what a GPU machine without network needs (these data "
                   "slices, the embedded model in fp16) into DIR and stop (benchmarks/gpu.sh prepare)")
    args = p.parse_args()
    if args.pack:
        return pack(Path(args.data_dir), Path(args.pack), args.corpus_docs)
    sections = set(args.sections.split(","))
    if sections - {"train", "adapt", "predict"} or ("predict" in sections and "train" not in sections):
        sys.exit(f"--sections {args.sections}: choose from train, adapt, predict (predict needs train's LoRA run)")

    from transformers import AutoConfig, AutoTokenizer

    from peftbert.hardware import auto_precision
    from peftbert.models import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="peftbert-speed-"))
    data = make_data(Path(args.data_dir), tmp, args.rows, args.corpus_docs, args.predict_texts)
    model = unpack(Path(args.model), tmp) if packed(args.model) else resolve_model(args.model)
    config, tokenizer = AutoConfig.from_pretrained(model), AutoTokenizer.from_pretrained(model)
    cpu = not torch.cuda.is_available()
    precision, why = auto_precision(cpu)
    bf16 = ["--bf16"] if precision == "bf16" else []
    peak = {"fp32": matmul_tflops(torch.float32), "bf16": matmul_tflops(torch.bfloat16)}
    peak_used = peak["bf16" if precision == "bf16" else "fp32"]
    train_lengths = [len(x) for x in tokenizer(pd.read_csv(data["train"])["text"].astype(str).tolist(),
                                               truncation=True, max_length=128)["input_ids"]]
    mean_len = sum(train_lengths) / len(train_lengths)
    report = {"host": host(), "precision": precision, "precision_why": why, "peak_tflops": peak,
              "rows": args.rows, "epochs": args.epochs, "mean_tokens": mean_len, "train": {}, "cmd": sys.argv}

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save():  # after every section, so a run stopped part-way keeps what it measured
        (out_dir / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (out_dir / f"{args.name}.md").write_text(markdown(report))

    seeds = [int(x) for x in args.seeds.split(",")]
    for method in ("full", "lora") if "train" in sections else ():
        lr = SAME_RECIPE[method]["lr"]
        per_token = flops_per_token(config, mean_len) * (3 if method == "full" else 2)
        tokens = sum(train_lengths) * args.epochs
        runs = {"peftbert": [], "reference": []}
        for seed in seeds:
            common = ["--epochs", args.epochs, "--lr", lr, "--batch-size", 32, "--max-length", 128, "--seed", seed]
            run_dir = tmp / f"ours-{method}-s{seed}"
            wall, _, _ = run(PEFTBERT + ["tune", "--method", method, "--train-file", data["train"],
                                         "--validation-file", data["validation"], "--test-file", data["test"],
                                         "--output", run_dir, *common, *SAME_RECIPE[method]["peftbert"]])
            m = json.loads((run_dir / "metrics.json").read_text())
            runs["peftbert"].append({"seed": seed, "wall": wall, "samples_per_second": m["train_samples_per_second"],
                                     "train_seconds": m["train_seconds"], "accuracy": m["test"]["accuracy"],
                                     "macro_f1": m["test"]["macro_f1"]})
            wall, out, _ = run([sys.executable, REF / "trainer_tune.py", "--model", model, "--method", method,
                                "--train", data["train"], "--test", data["test"], "--output", tmp / f"ref-{method}",
                                *common, *bf16])
            r = last_json(out)
            runs["reference"].append({"seed": seed, "wall": wall, "samples_per_second": r["train_samples_per_second"],
                                      "train_seconds": r["train_seconds"], "accuracy": r["test_accuracy"],
                                      "macro_f1": r["test_macro_f1"]})
        report["train"][method] = {"lr": lr, "seeds": seeds,
                                   **{tool: summarise(rs, per_token * tokens, peak_used) for tool, rs in runs.items()}}
        for metric in ("accuracy", "macro_f1"):
            report["train"][method][f"{metric}_difference"] = difference(
                [x[metric] for x in runs["peftbert"]], [x[metric] for x in runs["reference"]])
        save()
    if "adapt" in sections:
        measure_adapt(report, data, model, config, args.adapt_steps, bf16, peak_used, tmp)
        save()
    if "predict" in sections:
        measure_predict(report, data, tmp / f"ours-lora-s{seeds[0]}", tmp)  # the first seed's LoRA run
        save()
    shutil.rmtree(tmp, ignore_errors=True)
    print(markdown(report))


def pack(data_dir: Path, out: Path, corpus_docs: int) -> None:
    """DIR/data: twitter's two files and the first documents of each finance-corpus file (make_data's layout);
    DIR/minilm: the embedded model's files with its weights in fp16 (44 MB; the 87 MB of fp32 would not fit the
    GPU machine's 64 MiB transfer), upcast to fp32 there (unpack) before either tool reads them."""
    import gzip

    from safetensors.torch import load_file, save_file

    from peftbert.models import resolve_model

    twitter = Path("finance-tasks") / "twitter-financial-news-sentiment"
    (out / "data" / twitter).mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "valid.csv"):
        shutil.copy(data_dir / twitter / name, out / "data" / twitter / name)
    (out / "data" / "finance-corpus").mkdir(exist_ok=True)
    for f in sorted((data_dir / "finance-corpus").glob("*.txt.gz")):
        lines = first_documents(f, corpus_docs * 2)  # twice what a run reads: room for --corpus-docs up to that
        with gzip.open(out / "data" / "finance-corpus" / f.name, "wt", encoding="utf-8") as fh:
            fh.writelines(lines)
    model = Path(resolve_model("minilm"))
    shutil.copytree(model, out / "minilm", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("model.safetensors"))
    weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(model / "model.safetensors").items()}
    save_file(weights, out / "minilm" / "model-fp16.safetensors", metadata={"format": "pt"})
    print(f"{out}: data slices and the model (fp16) for benchmarks/gpu.sh")


def packed(model: str) -> bool:
    return (Path(model) / "model-fp16.safetensors").is_file()


def unpack(model: Path, tmp: Path) -> str:
    """A packed model (pack) as the fp32 checkpoint both tools load, in tmp."""
    from safetensors.torch import load_file, save_file

    out = tmp / "model"
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("model-fp16.safetensors"))
    weights = load_file(model / "model-fp16.safetensors")
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    return str(out)


def measure_adapt(report, data, model, config, steps, bf16, peak_used, tmp) -> None:
    """masked-LM on the same corpus slice, real tokens per second (plain MLM, as run_mlm.py: no --preserve)"""
    run(PEFTBERT + ["adapt", "--corpus", data["corpus"], "--max-steps", steps, "--preserve", 0,
                    "--batch-size", 32, "--block-size", 128, "--head-warmup-steps", 0,
                    "--eval-every", 10 ** 6, "--max-heldout-tokens", 5000, "--output", tmp / "ours-adapt"])
    a = json.loads((tmp / "ours-adapt" / "metrics.json").read_text())
    _, out, _ = run([sys.executable, REF / "trainer_mlm.py", "--model", model, "--corpus", data["corpus"],
                     "--max-steps", steps, "--batch-size", 32, "--max-length", 128, "--output",
                     tmp / "ref-adapt", *bf16])
    r = last_json(out)
    head = 6 * (config.hidden_size ** 2 + config.hidden_size * config.vocab_size) * 0.15  # on predicted tokens
    mlm_flops = 3 * flops_per_token(config, 128) + head
    report["adapt"] = {"peftbert": {"tokens_per_second": a["tokens_per_second"]},
                       "reference": {"tokens_per_second": r["tokens_per_second"]}}
    for row in report["adapt"].values():
        row["utilisation"] = mlm_flops * row["tokens_per_second"] / 1e12 / peak_used


def measure_predict(report, data, lora_run, tmp) -> None:
    """the tuned LoRA run, fp32, on the 9.5k training texts (every prediction row serves the same run). On a GPU
    both tools run there (peftbert predict's auto engine is PyTorch on the GPU) and the CPU-only rows (ONNX
    Runtime, int8) are left out."""
    gpu = torch.cuda.is_available()
    from peftbert.predict import load_run

    merged, tok, _ = load_run(lora_run, merge=True)
    merged.save_pretrained(tmp / "merged")
    tok.save_pretrained(tmp / "merged")
    rows = {}
    wall, _, err = run(PEFTBERT + ["predict", lora_run, "--file", data["texts"], "--output",
                                   tmp / "ours.jsonl"])
    steady = float(re.search(r"\(([\d,]+) texts/s", err).group(1).replace(",", ""))
    n = len(pd.read_csv(data["texts"]))
    rows["peftbert predict"] = {"wall": wall, "texts_per_second": n / wall, "steady_texts_per_second": steady}
    ours_labels = [json.loads(x)["label"] for x in (tmp / "ours.jsonl").read_text().splitlines()]
    for label, extra in (("pipeline (default batch size)", []), ("pipeline --batch-size 64", ["--batch-size", 64])):
        wall, out, _ = run([sys.executable, REF / "pipeline_predict.py", "--model", tmp / "merged", "--file",
                            data["texts"], "--output", tmp / "ref.jsonl", *extra])
        r = last_json(out)
        ref_labels = [json.loads(x)["label"] for x in (tmp / "ref.jsonl").read_text().splitlines()]
        rows[label] = {"wall": wall, "texts_per_second": n / wall, "steady_texts_per_second": r["texts_per_second"],
                       "labels_differing": sum(a != b for a, b in zip(ours_labels, ref_labels))}
    if gpu:
        report["predict"] = {"texts": n, "rows": rows, "device": "cuda"}
        return
    # the same run exported once to ONNX (its one-off cost reported apart, as the merge for the pipeline is),
    # then served by `peftbert predict EXPORT` through ONNX Runtime
    export_wall, _, _ = run(PEFTBERT + ["export", lora_run, "--format", "onnx", "--int8", "--output",
                                        tmp / "onnx"])
    wall, _, err = run(PEFTBERT + ["predict", tmp / "onnx", "--file", data["texts"], "--output", tmp / "onnx.jsonl"])
    onnx_labels = [json.loads(x)["label"] for x in (tmp / "onnx.jsonl").read_text().splitlines()]
    rows["peftbert predict, ONNX export"] = {
        "wall": wall, "texts_per_second": n / wall, "export_seconds": export_wall,
        "steady_texts_per_second": float(re.search(r"\(([\d,]+) texts/s", err).group(1).replace(",", "")),
        "labels_differing": sum(a != b for a, b in zip(ours_labels, onnx_labels))}
    rows = {k: rows[k] for k in ("peftbert predict", "peftbert predict, ONNX export", *[k for k in rows if "pipe" in k])}
    for name, source in (("peftbert predict --int8", lora_run), ("ONNX export --int8", tmp / "onnx")):
        rows[name] = int8_row(source, data["texts"], tmp)
    report["predict"] = {"texts": n, "rows": rows}


def summarise(runs: list[dict], useful_flops: float, peak: float) -> dict:
    """One tool's runs over the seeds: means (sd for the scores), and each run as measured."""
    mean = lambda key: statistics.mean(r[key] for r in runs)
    sd = lambda key: statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0
    row = {k: mean(k) for k in ("wall", "samples_per_second", "train_seconds", "accuracy", "macro_f1")}
    row.update(accuracy_sd=sd("accuracy"), macro_f1_sd=sd("macro_f1"), runs=runs)
    row["useful_tflops"] = statistics.mean(useful_flops / r["train_seconds"] / 1e12 for r in runs)
    row["utilisation"] = row["useful_tflops"] / peak
    return row


def difference(ours: list[float], ref: list[float]) -> dict:
    """Mean of ours minus mean of the reference, with a 95% Welch interval (seeds do not pair across tools:
    the same seed draws different things in each)."""
    from scipy import stats

    diff = statistics.mean(ours) - statistics.mean(ref)
    if min(len(ours), len(ref)) < 2:
        return {"mean": diff, "low": None, "high": None}
    va, vb = statistics.variance(ours) / len(ours), statistics.variance(ref) / len(ref)
    df = (va + vb) ** 2 / (va ** 2 / (len(ours) - 1) + vb ** 2 / (len(ref) - 1)) if va + vb > 0 else 1
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    return {"mean": diff, "low": diff - half, "high": diff + half}


def int8_row(source, texts, tmp) -> dict:
    """`peftbert predict --int8` on a labelled file: its speed and its accuracy change against fp32."""
    _, _, err = run(PEFTBERT + ["predict", source, "--file", texts, "--int8", "--output", tmp / "int8.jsonl"])
    change = re.search(r"int8 vs fp32: accuracy ([\d.]+) vs ([\d.]+) \(([-+\d.]+) points\), same label on ([\d.]+)%",
                       err)
    return {"steady_texts_per_second": float(re.search(r"\(([\d,]+) texts/s", err).group(1).replace(",", "")),
            "accuracy": float(change.group(1)), "fp32_accuracy": float(change.group(2)),
            "change_points": float(change.group(3)), "agreement_percent": float(change.group(4))}


def markdown(r: dict) -> str:
    h = r["host"]
    command = "PEFTBERT_DATA_DIR=../shared/data python benchmarks/speed.py " + shlex.join(r["cmd"][1:])
    lines = [f"# Speed: peftbert vs the plain scripts ({r['host'].get('gpu') or h.get('cpu', 'CPU')})", "",
             f"Generated by `{command}` (one run, one machine: {h['cores']} cores, AMX {'yes' if h.get('amx') else 'no'}, torch {h['torch']}). "
             f"Precision both sides: {r['precision']} (peftbert's auto: {r['precision_why']}). "
             f"Measured matmul peak: fp32 {r['peak_tflops']['fp32']:.2f}, bf16 {r['peak_tflops']['bf16']:.2f} TFLOP/s."]
    if r["train"]:
        lines += train_markdown(r)
    if "adapt" in r:
        lines += adapt_markdown(r["adapt"])
    if "predict" in r:
        lines += predict_markdown(r["predict"])
    return "\n".join(lines + [""])


def train_markdown(r: dict) -> list[str]:
    lines = ["", f"## Training: {r['rows']:,} twitter finance rows (mean {r['mean_tokens']:.1f} tokens), "
             f"{r['epochs']:g} epochs, batch 32, max length 128, test = valid.csv, seeds "
             f"{', '.join(map(str, next(iter(r['train'].values()))['seeds']))} (means over them)", "",
             "| method | tool | samples/s | ratio | whole process s | ratio | test accuracy (± sd) | macro-F1 (± sd) "
             "| useful TFLOP/s | utilisation |", "|---|---|---|---|---|---|---|---|---|---|"]
    for method, t in r["train"].items():
        o, ref = t["peftbert"], t["reference"]
        for name, row in (("peftbert tune", o), ("Trainer + peft", ref)):
            mine = row is o
            lines.append(f"| {method} (lr {t['lr']:g}) | {name} | {row['samples_per_second']:.1f} | "
                         f"{o['samples_per_second'] / ref['samples_per_second'] if mine else 1:.2f}x | "
                         f"{row['wall']:.1f} | {ref['wall'] / o['wall'] if mine else 1:.2f}x | "
                         f"{row['accuracy']:.4f} ± {row['accuracy_sd']:.4f} | {row['macro_f1']:.4f} ± {row['macro_f1_sd']:.4f} | "
                         f"{row['useful_tflops']:.3f} | {100 * row['utilisation']:.1f}% |")
        cells = []
        for metric in ("accuracy", "macro_f1"):
            d = t[f"{metric}_difference"]
            ci = f" [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]" if d["low"] is not None else ""
            cells.append(f"{100 * d['mean']:+.2f} points{ci}")
        lines.append(f"| {method} | difference of means [95% interval] | | | | | {cells[0]} | {cells[1]} | | |")
    lines += ["", "Per seed (test accuracy / macro-F1, samples/s):", ""]
    for method, t in r["train"].items():
        for name, tool in (("peftbert", "peftbert"), ("Trainer", "reference")):
            lines.append(f"- {method}, {name}: " + "; ".join(
                f"s{x['seed']} {x['accuracy']:.4f} / {x['macro_f1']:.4f}, {x['samples_per_second']:.1f}"
                for x in t[tool]["runs"]))
    return lines


def adapt_markdown(a: dict) -> list[str]:
    return ["", "## Masked-LM training (adapt): the same finance-corpus slice, batch 32, 128 tokens", "",
              "| tool | real tokens/s | ratio | utilisation |", "|---|---|---|---|",
              f"| peftbert adapt (packed blocks) | {a['peftbert']['tokens_per_second']:,.0f} | "
              f"{a['peftbert']['tokens_per_second'] / a['reference']['tokens_per_second']:.2f}x | "
              f"{100 * a['peftbert']['utilisation']:.1f}% |",
              f"| run_mlm line by line (Trainer) | {a['reference']['tokens_per_second']:,.0f} | 1.00x | "
              f"{100 * a['reference']['utilisation']:.1f}% |"]


def predict_markdown(p: dict) -> list[str]:
    pr = p["rows"]
    base = pr["pipeline (default batch size)"]
    where = "on the GPU, both tools" if p.get("device") == "cuda" else "on the CPU"
    lines = ["", f"## Prediction: {p['texts']:,} texts, the tuned LoRA run, fp32, {where}", "",
              "| tool | whole process texts/s | ratio | steady texts/s | ratio | labels differing from peftbert |",
              "|---|---|---|---|---|---|"]
    for name, row in pr.items():
        if "wall" not in row:
            continue
        lines.append(f"| {name} | {row['texts_per_second']:.0f} | "
                     f"{row['texts_per_second'] / base['texts_per_second']:.2f}x | {row['steady_texts_per_second']:.0f} | "
                     f"{row['steady_texts_per_second'] / base['steady_texts_per_second']:.2f}x | "
                     f"{row.get('labels_differing', 0)} |")
    onnx = pr.get("peftbert predict, ONNX export")
    if onnx:
        lines += ["", f"The ONNX export (`peftbert export RUN --format onnx --int8`, once) took {onnx['export_seconds']:.0f} s "
                  "(whole process), not counted above, as the merge the pipeline rows load is not."]
    if not any(name in pr for name in ("peftbert predict --int8", "ONNX export --int8")):
        return lines
    lines += ["", "int8 (dynamic quantisation of the linear layers; the accuracy change on these labelled texts):", "",
              "| engine | steady texts/s | vs its fp32 | accuracy | fp32 accuracy | change | same label |",
              "|---|---|---|---|---|---|---|"]
    for name, fp32 in (("peftbert predict --int8", "peftbert predict"), ("ONNX export --int8", "peftbert predict, ONNX export")):
        q = pr.get(name)
        if q:
            lines.append(f"| {name} | {q['steady_texts_per_second']:.0f} | "
                         f"{q['steady_texts_per_second'] / pr[fp32]['steady_texts_per_second']:.2f}x | {q['accuracy']:.4f} | "
                         f"{q['fp32_accuracy']:.4f} | {q['change_points']:+.2f} points | {q['agreement_percent']:.2f}% |")
    return lines


if __name__ == "__main__":
    main()
