"""Tables and a plot from finished runs' metrics.json: accuracy against trainable parameters.

Scores are the test split's when every run has one, else validation's (the column names say which).
Runs that differ only in seed are one row of the summary: mean, standard deviation (n > 1) and range.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from .runinfo import write_text

RUN_COLUMNS = ["run", "model", "method", "seed", "trainable_params", "trainable_params_no_head", "kept_params",
               "trainable_percent", "split", "accuracy", "macro_f1", "best_step", "train_seconds",
               "train_samples_per_second"]


def scored_split(results: list[dict]) -> str:
    return "test" if results and all(r.get("test") for r in results) else "validation"


def run_rows(results: list[dict]) -> list[dict]:
    split = scored_split(results)
    return [{"run": r["run"], "model": r["model_label"], "method": r["method"], "seed": r["seed"],
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


def summary_markdown(summary: list[dict]) -> str:
    split = summary[0]["split"] if summary else "test"
    lines = [f"| model | method | trainable params (% of total) | seeds | {split} accuracy | {split} macro-F1 | "
             "macro-F1 range | train s (mean) |", "|---|---|---|---|---|---|---|---|"]
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
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.csv", _csv(rows, RUN_COLUMNS))
    write_text(out / "summary.csv", _csv(summary, list(summary[0])))
    write_text(out / "summary.md", summary_markdown(summary))
    plot(summary, out / "plot.png")


def plot(summary: list[dict], path: Path) -> None:
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
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel(f"{summary[0]['split']} {label} (mean ± sd over seeds)")
        ax.grid(alpha=0.3)
    axes[0].legend(title="model", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
