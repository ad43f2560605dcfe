"""The `peftbert bench` command; cli.py registers it like `adapt`."""

from pathlib import Path
from typing import List, Optional

from typer import Option

Str, Int, Float = Optional[str], Optional[int], Optional[float]  # unset = None: the recipes decide


def bench(
    task: Str = Option(None, help="named task (see `peftbert tasks`) or hub dataset id; default: the recipe's"),
    models: str = Option("minilm", help="comma-separated models: minilm, local directories, hub ids"),
    methods: str = Option("lora,adapter,adalora", help="comma-separated methods (see `peftbert methods`)"),
    seeds: str = Option("1,2,3", help="comma-separated seeds; runs differing only in seed are averaged"),
    budget: Str = Option(None, help="size every sizable method to N trainable params outside the head, e.g. 75k"),
    output: str = Option("runs/bench", help="directory for runs/, results.csv, summary.md/.csv and plot.png"),
    data_dir: Str = Option(None, help="directory of named tasks [env PEFTBERT_DATA_DIR]"),
    train_file: Str = Option(None, help="training file: CSV/TSV/JSONL/Parquet (instead of --task)"),
    validation_file: Str = Option(None, help="validation file (default: stratified split of train)"),
    test_file: Str = Option(None, help="test file, scored once per run with its best checkpoint"),
    text_column: Str = Option(None, help="text column (default: text or sentence)"),
    label_column: Str = Option(None, help="label column (default: label)"),
    recipe: Str = Option(None, help="YAML recipe every run starts from (default recipes/tune/default.yaml)"),
    epochs: Float = Option(None, help="passes over the training set (default: each method's preset)"),
    max_steps: Int = Option(None, help="stop every run after this many optimizer steps"),
    max_train_samples: Int = Option(None, help="use only the first N training examples"),
    max_eval_samples: Int = Option(None, help="use only the first N validation/test examples"),
    cpu: bool = Option(False, help="train on the CPU even when a GPU is present"),
    set_: Optional[List[str]] = Option(None, "--set", help="override a recipe key in every run, e.g. --set lora.r=16"),
):
    """Run models x methods x seeds on one task; write tables and a plot of accuracy vs trainable parameters."""
    from .bench import check_overrides, plan, run_bench, split_list
    from .cli import tune_config
    from .config import parse_set

    check_overrides(parse_set(set_))

    def build(*, model, method, seed, budget):
        return tune_config(model=model, method=method, task=task, data_dir=data_dir, train_file=train_file,
                           validation_file=validation_file, test_file=test_file, text_column=text_column,
                           label_column=label_column, recipe=recipe, epochs=epochs, max_steps=max_steps, seed=seed,
                           max_train_samples=max_train_samples, max_eval_samples=max_eval_samples, overrides=set_,
                           budget=budget)

    cells = plan(split_list(models, "models"), split_list(methods, "methods"), split_list(seeds, "seeds", int),
                 build, budget, Path(output))
    run_bench(cells, Path(output), cpu=cpu)
