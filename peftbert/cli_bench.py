"""The `peftbert bench` command: the grid's own options here; every tune setting is a generated flag."""

from typing import List, Optional

from typer import Option

from .cli_options import command, tune_flags

# set per cell by the grid (--models, --methods, --output, --seeds), so not flags of their own
BENCH_GRID = ("model", "method", "output", "seed")


def run(
    values: dict,
    models: str = Option("minilm", help="comma-separated models: minilm, local directories, hub ids"),
    methods: str = Option("lora,adapter,adalora", help="comma-separated methods (see `peftbert methods`)"),
    seeds: str = Option("1,2,3", help="comma-separated seeds; runs differing only in seed are averaged"),
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

    cells = plan(split_list(models, "models"), split_list(methods, "methods"), split_list(seeds, "seeds", int),
                 recipe=recipe, values=values, overrides=set_, budget=budget, out=Path(output))
    run_bench(cells, Path(output), cpu=cpu, shard=shard)


bench = command(run, tune_flags(skip=BENCH_GRID))
