"""The `peftbert bench` command: the grid's own options here; every tune setting is a generated flag."""

from typing import List, Optional

from typer import Option

from .cli_options import command, tune_flags

# set per cell by the grid (--models, --methods, --output, --seeds), so not flags of their own
BENCH_GRID = ("model", "method", "output", "seed")
# the grid without --suite; with one, the lists given replace the suite's
GRID_DEFAULTS = {"models": "minilm", "methods": "lora,adapter,adalora", "seeds": "1,2,3"}


def run(
    values: dict,
    models: Optional[str] = Option(None, help="comma-separated models: minilm, local directories, hub ids "
                                              f"[default: {GRID_DEFAULTS['models']}]"),
    methods: Optional[str] = Option(None, help="comma-separated methods (see `peftbert methods`) "
                                               f"[default: {GRID_DEFAULTS['methods']}]"),
    seeds: Optional[str] = Option(None, help="comma-separated seeds; runs differing only in seed are averaged "
                                             f"[default: {GRID_DEFAULTS['seeds']}]"),
    suite: Optional[str] = Option(None, help="a suite recipe (recipes/bench/NAME.yaml or a file): tasks x models x "
                                             "methods x seeds, one grid per task, joined in suite.md"),
    budget: Optional[str] = Option(None, help="size every sizable method to N trainable params outside the head"),
    output: str = Option("runs/bench", help="directory for runs/, results.csv, summary.md/.csv and plot.png"),
    recipe: Optional[str] = Option(None, help="YAML recipe every run starts from (default recipes/tune/default.yaml)"),
    cpu: bool = Option(False, help="train on the CPU even when a GPU is present"),
    shard: Optional[str] = Option(None, help="K/N: run every N-th cell from the K-th (split a grid over processes "
                                              "or machines sharing --output; the tables merge all finished cells)"),
    set_: Optional[List[str]] = Option(None, "--set", help="override a recipe key in every run, e.g. --set lora.r=16"),
):
    """Run models x methods x seeds on one task; write tables and a plot of accuracy vs trainable parameters."""
    from pathlib import Path

    from .bench import parse_shard, plan, run_bench, split_list

    parse_shard(shard)  # before any planning
    if suite is not None:
        from .suite import load_suite, run_suite

        s = load_suite(suite)
        # lists given on the command line replace the suite's (--seeds 1 for a quick pass)
        s.models = split_list(models, "models") if models is not None else s.models
        s.methods = split_list(methods, "methods") if methods is not None else s.methods
        s.seeds = split_list(seeds, "seeds", int) if seeds is not None else s.seeds
        s.budget = budget or s.budget
        run_suite(s, recipe=recipe, values=values, overrides=set_, out=Path(output), cpu=cpu, shard=shard)
        return
    given = {k: GRID_DEFAULTS[k] if v is None else v for k, v in (("models", models), ("methods", methods), ("seeds", seeds))}
    cells = plan(split_list(given["models"], "models"), split_list(given["methods"], "methods"),
                 split_list(given["seeds"], "seeds", int), recipe=recipe, values=values, overrides=set_,
                 budget=budget, out=Path(output))
    run_bench(cells, Path(output), cpu=cpu, shard=shard)


bench = command(run, tune_flags(skip=BENCH_GRID))
