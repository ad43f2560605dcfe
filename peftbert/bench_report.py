"""Tables and a plot from finished runs' metrics.json: accuracy against trainable parameters.

Scores are the test split's when every run has one, else validation's (the column names say which).
Runs that differ only in seed are one row of the summary: mean, standard deviation (n > 1) and range.
The baselines (baselines.json, written by bench: majority class, TF-IDF + LR) sit in the table and the plot.
Paired differences compare runs that share a seed (so the same validation carve and data order): each method
against full fine-tuning of the same model, and each model against the first one with the same method; the
interval is the mean difference's 95% Student-t interval over the shared seeds.
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from pathlib import Path

from .artifacts import cached_json
from .runinfo import write_text

RUN_COLUMNS = ["run", "task", "model", "method", "seed", "trainable_params", "trainable_params_no_head", "kept_params",
               "trainable_percent", "split", "accuracy", "macro_f1", "best_step", "train_seconds",
               "train_samples_per_second"]


def scored_split(results: list[dict]) -> str:
    return "test" if results and all(r.get("test") for r in results) else "validation"


def run_rows(results: list[dict]) -> list[dict]:
    split = scored_split(results)
    return [{"run": r["run"], "task": r["task"], "model": r["model_label"], "method": r["method"], "seed": r["seed"],
             "trainable_params": r["trainable_params"], "trainable_params_no_head": r["trainable_params_no_head"],
             "kept_params": kept_params(r), "trainable_percent": round(r["trainable_percent"], 4), "split": split,
             "accuracy": round(r[split]["accuracy"], 6), "macro_f1": round(r[split]["macro_f1"], 6),
             "best_step": r["best_step"], "train_seconds": r["train_seconds"],
             "train_samples_per_second": r["train_samples_per_second"]} for r in results]


def kept_params(m: dict) -> int:
    """Trainable parameters the saved model holds: `kept_params` in metrics.json (a method's summary sets it
    when it keeps fewer than it trains, as AdaLoRA does). Runs written before that field derive it here."""
    if "kept_params" in m:
        return m["kept_params"]
    a = m.get("adalora")
    if a and "final_params" in a:
        return m["trainable_params"] - a["initial_params"] + a["final_params"]
    return m["trainable_params"]


def summarise(rows: list[dict]) -> list[dict]:
    """One row per (model, method, size): the runs that differ only in seed."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["method"], r["trainable_params"]), []).append(r)
    out = []
    for (model, method, params), runs in groups.items():
        acc, f1 = [r["accuracy"] for r in runs], [r["macro_f1"] for r in runs]
        out.append({"model": model, "method": method, "trainable_params": params,
                    "kept_params": runs[0]["kept_params"],
                    "trainable_percent": runs[0]["trainable_percent"], "split": runs[0]["split"],
                    "seeds": " ".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"])),
                    "n": len(runs), "accuracy_mean": _mean(acc), "accuracy_sd": _sd(acc),
                    "macro_f1_mean": _mean(f1), "macro_f1_sd": _sd(f1), "macro_f1_min": min(f1),
                    "macro_f1_max": max(f1), "train_seconds_mean": round(_mean([r["train_seconds"] for r in runs]), 1)})
    return sorted(out, key=lambda s: (s["model"], s["trainable_params"]))


def _mean(xs):
    return round(statistics.mean(xs), 4)


def _sd(xs):
    return round(statistics.stdev(xs), 4) if len(xs) > 1 else None


def mean_interval(diffs: list[float]) -> tuple[float, float | None]:
    """The mean of paired differences and the half-width of its 95% t-interval (None from a single pair)."""
    from scipy import stats

    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return mean, None
    return mean, stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))


def paired(rows: list[dict], references: tuple[str, ...] = ("full",)) -> list[dict]:
    """Differences (points) between runs of the same task and seed: method - reference per model (full, or each
    of `references`), model - first model per method; mean and 95% t-interval of each metric over the shared
    (task, seed) units."""
    runs: dict[tuple, dict] = {}
    for r in rows:
        runs.setdefault((r["model"], r["method"]), {})[(r.get("task", ""), r["seed"])] = r
    models = list(dict.fromkeys(r["model"] for r in rows))
    pairs = [((model, m), (model, ref)) for i, ref in enumerate(references) for model in models
             for (mm, m) in runs if mm == model and m != ref and m not in references[:i] and (model, ref) in runs]
    pairs += [((model, m), (models[0], m)) for model in models[1:] for (mm, m) in runs if mm == model
              and (models[0], m) in runs]
    out = []
    for a, b in pairs:
        seeds = sorted(set(runs[a]) & set(runs[b]))
        if not seeds:
            continue
        one_task = len({task for task, _ in seeds}) == 1
        shown = " ".join(str(s) for _, s in seeds) if one_task else f"{len(seeds)} task x seed pairs"
        row = {"comparison": f"{a[0]}/{a[1]} - {b[0]}/{b[1]}", "n": len(seeds), "seeds": shown}
        for metric in ("accuracy", "macro_f1"):
            mean, half = mean_interval([100 * (runs[a][s][metric] - runs[b][s][metric]) for s in seeds])
            row[f"{metric}_diff"] = round(mean, 2)
            row[f"{metric}_ci_low"] = None if half is None else round(mean - half, 2)
            row[f"{metric}_ci_high"] = None if half is None else round(mean + half, 2)
        out.append(row)
    return out


def paired_markdown(pairs: list[dict], split: str) -> str:
    if not pairs:
        return ""
    lines = ["", f"Paired differences on {split} (points; same task and seed; 95% t-interval over them):", "",
             "| comparison | seeds | accuracy | macro-F1 |", "|---|---|---|---|"]
    for p in pairs:
        cells = [f"{p[f'{m}_diff']:+.2f}" + ("" if p[f"{m}_ci_low"] is None else
                                             f" [{p[f'{m}_ci_low']:+.2f}, {p[f'{m}_ci_high']:+.2f}]")
                 for m in ("accuracy", "macro_f1")]
        lines.append(f"| {p['comparison']} | {p['seeds']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def summary_markdown(summary: list[dict], baselines: dict | None = None) -> str:
    split = summary[0]["split"] if summary else "test"
    lines = [f"| model | method | trainable params (% of total) | seeds | {split} accuracy | {split} macro-F1 | "
             "macro-F1 range | train s (mean) |", "|---|---|---|---|---|---|---|---|"]
    for name, m in (baselines or {}).items():
        lines.append(f"| (baseline) | {name} | – | – | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | – | – |")
    for s in summary:
        kept = f" → {s['kept_params']:,} kept" if s["kept_params"] != s["trainable_params"] else ""
        lines.append(f"| {s['model']} | {s['method']} | "
                     f"{s['trainable_params']:,} ({s['trainable_percent']:.2f}%){kept} | "
                     f"{s['seeds']} | {_pm(s['accuracy_mean'], s['accuracy_sd'])} | "
                     f"{_pm(s['macro_f1_mean'], s['macro_f1_sd'])} | {s['macro_f1_min']:.4f} – "
                     f"{s['macro_f1_max']:.4f} | {s['train_seconds_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def _pm(mean, sd) -> str:
    return f"{mean:.4f}" if sd is None else f"{mean:.4f} ± {sd:.4f}"


def write_reports(out: Path, results: list[dict]) -> None:
    rows = run_rows(results)
    summary = summarise(rows)
    split = rows[0]["split"]
    bfile = out / "baselines.json"
    baselines = cached_json(bfile)  # (write_baselines has just made it again if it was damaged)
    if baselines and baselines.get("split") != split:  # the baselines are scored where the runs are
        baselines = None
    baselines = baselines and baselines["scores"]
    pairs = paired(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", to_csv(rows, RUN_COLUMNS))
    write_text(out / "summary.csv", to_csv(summary, list(summary[0])))
    if pairs:
        write_text(out / "paired.csv", to_csv(pairs, list(pairs[0])))
    write_text(out / "summary.md", summary_markdown(summary, baselines) + paired_markdown(pairs, split))
    plot(summary, out / "plot.png", baselines)


def plot(summary: list[dict], path: Path, baselines: dict | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    models = sorted({s["model"] for s in summary})
    for ax, metric, label in zip(axes, ("accuracy", "macro_f1"), ("accuracy", "macro-F1")):
        for i, model in enumerate(models):
            pts = [s for s in summary if s["model"] == model]
            ax.errorbar([s["trainable_params"] for s in pts], [s[f"{metric}_mean"] for s in pts],
                        yerr=[s[f"{metric}_sd"] or 0 for s in pts], fmt="o", capsize=3, color=f"C{i}", label=model)
            for s in pts:
                ax.annotate(s["method"], (s["trainable_params"], s[f"{metric}_mean"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
        for j, (name, m) in enumerate((baselines or {}).items()):
            ax.axhline(m[metric], color="grey", linestyle=("--", ":")[j % 2], linewidth=1, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(f"{summary[0]['split']} {label} (mean ± sd over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="model / baseline", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.png")  # per process: bench shards may write the same plot
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def to_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
