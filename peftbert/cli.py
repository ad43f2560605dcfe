"""The `peftbert` command: thin — parse flags, build a typed config, call the library."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# peft calls a transformers API that transformers 5 deprecates; the user can do nothing about it.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
# An unreachable Hub is reported by our own one-line error; hub clients' retry warnings would only repeat it.
# (huggingface_hub sets its logger level on import, so import it first.)
import huggingface_hub.utils.logging as _hub_logging  # noqa: E402

_hub_logging.set_verbosity_error()
logging.getLogger("datasets").setLevel(logging.ERROR)
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Parameter-efficient fine-tuning and domain-adaptive pretraining for BERT-family encoders.")


def friendly(fn):
    """User mistakes end as one line on stderr and exit code 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None
    return wrapper


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def tune_config(*, model=None, method=None, task=None, data_dir=None, train_file=None, validation_file=None,
                test_file=None, text_column=None, text_pair_column=None, label_column=None, recipe=None, output=None,
                epochs=None, max_steps=None, batch_size=None, grad_accum=None, lr=None, max_length=None,
                precision=None, seed=None, eval_every=None, metric=None, patience=None, save_every=None,
                max_train_samples=None, max_eval_samples=None, overrides=None, budget=None):
    """A validated RunConfig from command-line values; None means not given (the recipes decide)."""
    from .config import build_config, deep_merge, parse_set
    from .methods import method_configs

    cli = _given(model=model, method=method, task=task, output=output)
    cli["train"] = _given(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          precision=precision, seed=seed, eval_every=eval_every, metric=metric, patience=patience,
                          save_every=save_every)
    cli["data"] = _given(data_dir=data_dir, train_file=train_file, validation_file=validation_file,
                         test_file=test_file, text_column=text_column, text_pair_column=text_pair_column,
                         label_column=label_column, max_length=max_length, max_train_samples=max_train_samples,
                         max_eval_samples=max_eval_samples)
    cli = deep_merge(cli, parse_set(overrides))
    cfg = build_config(recipe, cli, method_configs())
    if budget is not None:
        from .methods.budget import apply_budget
        cfg = apply_budget(cfg, budget)  # lora r / adapter bottleneck / adalora target_r+init_r / prefix length
    return cfg


@app.command()
@friendly
def tune(
    model: Optional[str] = typer.Option(None, help="model: 'minilm' (embedded default), a local directory, or a hub id"),
    method: Optional[str] = typer.Option(None, help="full|lora|adapter|adalora|bitfit|ia3|prefix|dora|rslora|lora-all"),
    budget: Optional[str] = typer.Option(None, help="size the method to N trainable params outside the head, e.g. 0.3M"),
    task: Optional[str] = typer.Option(None, help="named task (see `peftbert tasks`) or hub dataset id"),
    data_dir: Optional[str] = typer.Option(None, help="directory of named tasks [env PEFTBERT_DATA_DIR]"),
    train_file: Optional[str] = typer.Option(None, help="training file: CSV/TSV/JSONL/Parquet"),
    validation_file: Optional[str] = typer.Option(None, help="validation file (default: stratified split of train)"),
    test_file: Optional[str] = typer.Option(None, help="test file, scored once with the best checkpoint"),
    text_column: Optional[str] = typer.Option(None, help="text column (default: text or sentence)"),
    text_pair_column: Optional[str] = typer.Option(None, help="second text column, for sentence-pair tasks"),
    label_column: Optional[str] = typer.Option(None, help="label column (default: label)"),
    recipe: Optional[str] = typer.Option(None, help="YAML recipe (default recipes/tune/default.yaml)"),
    output: Optional[str] = typer.Option(None, help="run directory (default runs/<task>-<method>-<model>-s<seed>)"),
    epochs: Optional[float] = typer.Option(None, help="passes over the training set"),
    max_steps: Optional[int] = typer.Option(None, help="stop after this many optimizer steps"),
    batch_size: Optional[int] = typer.Option(None, help="examples per device per step"),
    grad_accum: Optional[int] = typer.Option(None, help="batches accumulated per optimizer step"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (default: the method preset's)"),
    max_length: Optional[int] = typer.Option(None, help="truncate inputs to this many tokens"),
    precision: Optional[str] = typer.Option(None, help="auto|no|bf16|fp16 (auto: bf16 where the hardware has it)"),
    seed: Optional[int] = typer.Option(None, help="random seed (init, split, shuffling, dropout)"),
    eval_every: Optional[int] = typer.Option(None, help="evaluate every N steps (default: each epoch)"),
    metric: Optional[str] = typer.Option(None, help="validation metric that picks the best checkpoint"),
    patience: Optional[int] = typer.Option(None, help="early stop after N evaluations without improvement"),
    save_every: Optional[int] = typer.Option(None, help="write a resumable checkpoint every N steps"),
    resume: Optional[str] = typer.Option(None, help="continue from 'latest' or a checkpoint directory"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    max_train_samples: Optional[int] = typer.Option(None, help="use only the first N training examples"),
    max_eval_samples: Optional[int] = typer.Option(None, help="use only the first N validation/test examples"),
    cpu: bool = typer.Option(False, help="train on the CPU even when a GPU is present"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any recipe key, e.g. --set lora.r=16"),
):
    """Fine-tune a model on a labelled classification task."""
    from .tune import run_tune

    cfg = tune_config(model=model, method=method, task=task, data_dir=data_dir, train_file=train_file,
                      validation_file=validation_file, test_file=test_file, text_column=text_column,
                      text_pair_column=text_pair_column, label_column=label_column, recipe=recipe, output=output,
                      epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                      max_length=max_length, precision=precision, seed=seed, eval_every=eval_every, metric=metric,
                      patience=patience, save_every=save_every, max_train_samples=max_train_samples,
                      max_eval_samples=max_eval_samples, overrides=set_, budget=budget)
    run_tune(cfg, overwrite=overwrite, resume=resume, cpu=cpu)


@app.command()
@friendly
def predict(
    run_dir: Path = typer.Argument(..., help="a finished `peftbert tune` run directory"),
    text: Optional[List[str]] = typer.Option(None, help="text to classify (repeatable)"),
    file: Optional[str] = typer.Option(None, help="CSV/TSV/JSONL/Parquet file to classify (scored if it has labels)"),
    text_column: Optional[str] = typer.Option(None, help="text column of --file (default: text or sentence)"),
    text_pair_column: Optional[str] = typer.Option(None, help="second text column of --file, for pair tasks"),
    label_column: Optional[str] = typer.Option(None, help="label column of --file (default: label, if present)"),
    output: Optional[str] = typer.Option(None, help="write predictions here (.jsonl or .csv) instead of stdout"),
    batch_size: int = typer.Option(64, help="examples per forward pass"),
):
    """Classify texts with a tuned run; prints label and probabilities."""
    from .predict import run_predict

    run_predict(run_dir, texts=text, file=file, text_column=text_column, text_pair_column=text_pair_column,
                label_column=label_column, output=output, batch_size=batch_size)


from .cli_adapt import adapt  # noqa: E402  (its own module: adapt has many options)

app.command()(friendly(adapt))

from .cli_bench import bench  # noqa: E402

app.command()(friendly(bench))


@app.command()
def tasks():
    """List the named tasks (read from the data directory)."""
    from .data.tasks import NAMED_TASKS, data_dir
    from .config import DataArgs

    d = data_dir(DataArgs())
    for name, spec in NAMED_TASKS.items():
        here = d is not None and (d / spec.subdir).is_dir()
        typer.echo(f"{name:24s} {spec.subdir:48s} {'found' if here else 'missing'}")
    typer.echo(f"{'finance-sample':24s} {'(shipped with peftbert)':48s} found")
    if d is None:
        typer.echo("data directory not set: export PEFTBERT_DATA_DIR=/path/to/data or pass --data-dir")


@app.command()
def methods():
    """List the fine-tuning methods and their settings."""
    from dataclasses import fields

    from .methods import METHODS

    for name, m in METHODS.items():
        typer.echo(f"{name}: {m.help}")
        for f in fields(m.config_cls):
            typer.echo(f"    {name}.{f.name} = {f.default!r}  # {f.metadata.get('help', '')}")


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
