"""Tables from benchmarks/results/*.json (written by run_finance.sh): never typed by hand.

Run: python benchmarks/report.py  -> prints markdown, writes benchmarks/results.md and the README's results block
"""

import json
import re
from pathlib import Path

from peftbert.bench_report import plot, run_rows, summarise, summary_markdown

HERE = Path(__file__).resolve().parent


def load():
    return {p.stem: json.loads(p.read_text()) for p in sorted((HERE / "results").glob("*.json"))}


def tune_table(results) -> str:
    rows = ["| run | task | model | method | trainable params (% of total) | val macro-F1 | test accuracy | "
            "test macro-F1 | train s | samples/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        if not m.get("test"):
            continue
        rows.append(f"| {name} | {m['task']} | {Path(m['model']).name} | {m['method']} | "
                    f"{m['trainable_params']:,} ({m['trainable_percent']:.2f}%) | {m['validation']['macro_f1']:.4f} | "
                    f"{m['test']['accuracy']:.4f} | {m['test']['macro_f1']:.4f} | {m['train_seconds']:.0f} | "
                    f"{m['train_samples_per_second']:.1f} |")
    return "\n".join(rows)


def seeds_table(results) -> str:
    """Finance-sentiment runs grouped over seeds (peftbert bench's summary), and its plot."""
    runs = [{**m, "run": name, "model_label": Path(m["model"]).name} for name, m in results.items()
            if m.get("task") == "twitter-fin-sentiment" and m.get("test")]
    if not runs:
        return ""
    summary = summarise(run_rows(runs))
    plot(summary, HERE / "twitter-plot.png")
    return "Finance sentiment, grouped over seeds (plot: `benchmarks/twitter-plot.png`):\n\n" + summary_markdown(summary)


def adapt_table(results) -> str:
    rows = ["| run | held-out loss before → after | perplexity before → after head warm-up → after | "
            "masked-token acc before → after | tokens seen | train s | tokens/s |", "|---|---|---|---|---|---|---|"]
    for name, m in results.items():
        if "heldout_before" not in m:
            continue
        b, a, w = m["heldout_before"], m["heldout_after"], m.get("heldout_after_head_warmup")
        warm = f"{w['perplexity']:.1f}" if w else "(not recorded)"
        rows.append(f"| {name} | {b['loss']:.3f} → {a['loss']:.3f} | {b['perplexity']:.1f} → {warm} → {a['perplexity']:.1f} | "
                    f"{b['accuracy']:.3f} → {a['accuracy']:.3f} | {m['tokens_seen']:,} | {m['train_seconds']:.0f} | "
                    f"{m['tokens_per_second']:.0f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def adalora_tables(results) -> str:
    """Where AdaLoRA put its budget: final rank per layer and matrix for the first run, then per run totals."""
    runs = {name: m["adalora"] for name, m in results.items() if "adalora" in m}
    if not runs:
        return ""
    grids = {name: rank_grid(a["final_ranks"]) for name, a in runs.items()}
    name, a = next(iter(runs.items()))
    grid = grids[name]
    cols = sorted({c for row in grid.values() for c in row}, key=_matrix_order)
    rows = [f"| {name}: layer | " + " | ".join(SHORT.get(c, c) for c in cols) + " | layer total |",
            "|---" * (len(cols) + 2) + "|"]
    for layer in sorted(grid):
        rows.append(f"| {layer} | " + " | ".join(str(grid[layer].get(c, "")) for c in cols)
                    + f" | {sum(grid[layer].values())} |")
    note = (f"Every matrix starts at rank {a['init_r']} (total {a['initial_total_rank']}); the schedule prunes "
            f"to a total of {a['target_total_rank']} (target_r {a['target_r']} on average).")
    if "final_params" in a:
        note += (f" Adapter parameters outside the head: {a['initial_params']:,} trained at the start, "
                 f"{a['final_params']:,} kept at the end.")
    layers = sorted({layer for g in grids.values() for layer in g})
    across = ["| run | " + " | ".join(SHORT.get(c, c) for c in cols) + " | "
              + " | ".join(f"layer {i}" for i in layers) + " | kept params (no head) |",
              "|---" * (len(cols) + len(layers) + 2) + "|"]
    for run, g in grids.items():
        across.append(f"| {run} | " + " | ".join(str(sum(g[i].get(c, 0) for i in g)) for c in cols) + " | "
                      + " | ".join(str(sum(g.get(i, {}).values())) for i in layers)
                      + f" | {runs[run].get('final_params', 0):,} |")
    return ("\n".join(rows) + "\n\n" + note + "\n\nFinal ranks summed by matrix type and by layer, every AdaLoRA run:"
            "\n\n" + "\n".join(across))


def rank_grid(final_ranks: dict) -> dict[int, dict[str, int]]:
    """{layer: {matrix: rank}} from module names like bert.encoder.layer.3.attention.self.key."""
    grid: dict[int, dict[str, int]] = {}
    for module, r in final_ranks.items():
        found = re.search(r"layer\.(\d+)\.(.+)$", module)
        layer, matrix = (int(found.group(1)), found.group(2)) if found else (-1, module)  # -1: outside the layers
        grid.setdefault(layer, {})[matrix] = r
    return grid


# BERT's matrix names, shortened for the table header, in their order inside a layer
SHORT = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
         "attention.output.dense": "attn out", "intermediate.dense": "FFN in", "output.dense": "FFN out"}


def _matrix_order(matrix: str) -> int:
    return list(SHORT).index(matrix) if matrix in SHORT else len(SHORT)


def update_readme(text: str) -> None:
    """Replace the block between the results markers in the top-level README."""
    readme = HERE.parent / "README.md"
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    s = readme.read_text()
    if start in s and end in s:
        head, rest = s.split(start, 1)
        readme.write_text(head + start + "\n" + text + rest[rest.index(end):])


if __name__ == "__main__":
    res = load()
    text = "\n\n".join(t for t in (tune_table(res), seeds_table(res), adapt_table(res), adalora_tables(res)) if t) + "\n"
    (HERE / "results.md").write_text(text)
    update_readme(text)
    print(text)
