"""The `peftbert` command: thin — parse flags, build a typed config, call the library."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

try:  # newer typer carries its own copy of click
    from typer._click.exceptions import BadParameter, ClickException, MissingParameter, NoSuchOption
except ImportError:
    from click.exceptions import BadParameter, ClickException, MissingParameter, NoSuchOption

from .cli_adapt import adapt
from .cli_bench import bench
from .cli_search import search
from .cli_options import command, tune_flags
from .errors import UserError

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# peft calls a transformers API that transformers 5 deprecates; the user can do nothing about it.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
# An unreachable Hub is reported by our own one-line error; hub clients' retry warnings would only repeat it.
# (huggingface_hub sets its logger level on import, so import it first.)
import huggingface_hub.utils.logging as _hub_logging  # noqa: E402

_hub_logging.set_verbosity_error()
logging.getLogger("datasets").setLevel(logging.ERROR)


class OneLineErrors(TyperGroup):
    """Flags typer/click reject (a word for a number, an unknown option, a missing argument) end like a
    UserError: one `error:` line on stderr and exit code 2, instead of click's usage box."""

    def make_context(self, info_name, args, *rest, **kwargs):  # the group's own flags: `peftbert --bogus`
        argv = list(args)
        with usage_errors_in_one_line():
            ctx = super().make_context(info_name, args, *rest, **kwargs)
        ctx.meta["peftbert.argv"] = argv  # the command line as typed (search records it beside its results)
        return ctx

    def invoke(self, ctx):  # the command name and the command's flags
        with usage_errors_in_one_line():
            return super().invoke(ctx)


@contextlib.contextmanager
def usage_errors_in_one_line():
    try:
        yield
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `peftbert`: the help, as before (click >= 8.2)
            raise
        typer.secho(f"error: {usage_message(e)}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def usage_message(e: ClickException) -> str:
    ctx = getattr(e, "ctx", None)
    see = f" (see '{ctx.command_path if ctx is not None else 'peftbert'} --help')"
    if isinstance(e, NoSuchOption):  # click's candidates come closest first
        close = f"; did you mean {e.possibilities[0]}?" if e.possibilities else ""
        return f"no such option: {e.option_name}{close}{see}"
    if isinstance(e, BadParameter) and e.param is not None and not isinstance(e, MissingParameter):
        flag = "/".join(e.param.opts) or e.param.name
        # newer typer validates with pydantic, whose error holds the value given: "Input should be a valid number, ..."
        errors = e.__cause__.errors() if type(e.__cause__).__name__ == "ValidationError" else []
        if errors and str(errors[0].get("msg")).startswith("Input should be "):
            what = errors[0]["msg"].split(",")[0].removeprefix("Input should be ")
            return f"{flag}: {errors[0].get('input')!r} is not {what}{see}"
        return f"{flag}: {e.message.rstrip('.')}{see}"  # click: "'abc' is not a valid float."
    if isinstance(e, MissingParameter) and e.param is not None and e.param.param_type_name == "argument":
        return f"missing argument {e.param.name.upper()}{see}"
    message = e.format_message().strip().rstrip(".").replace(". Did you mean", "; did you mean")
    return f"{message[:1].lower()}{message[1:]}{see}"


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
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


def tune(
    values: dict,
    budget: Optional[str] = typer.Option(None, help="size the method to N trainable params outside the head, e.g. 0.3M"),
    recipe: Optional[str] = typer.Option(None, help="YAML recipe, or a name in recipes/tune (default, low-label); "
                                                     "unset: chosen by training-set size (docs/data.md)"),
    resume: Optional[str] = typer.Option(None, help="continue from 'latest' or a checkpoint directory"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    cpu: bool = typer.Option(False, help="train on the CPU even when a GPU is present"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any recipe key, e.g. --set lora.r=16"),
):
    """Fine-tune a model on a labelled classification task."""
    from .config import deep_merge, parse_set
    from .commands.tune import run_tune, sized_tune_config

    cfg, note = sized_tune_config(recipe, deep_merge(values, parse_set(set_)), budget)
    run_tune(cfg, overwrite=overwrite, resume=resume, cpu=cpu, notes=(note,) if note else ())


app.command("tune")(friendly(command(tune, tune_flags())))


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
    batch_size: int = typer.Option(64, help="examples per forward pass (batched by length)"),
    int8: bool = typer.Option(False, help="int8 linear layers (faster on CPU); a labelled file reports the change"),
    engine: str = typer.Option("auto", help="onnx: ONNX Runtime from an export cached in the run; torch; auto: onnx "
                                            "if onnxruntime is installed"),
):
    """Classify texts with a tuned run; prints label and probabilities."""
    from .predict import run_predict

    run_predict(run_dir, texts=text, file=file, text_column=text_column, text_pair_column=text_pair_column,
                label_column=label_column, output=output, batch_size=batch_size, int8=int8, engine=engine)


@app.command()
@friendly
def export(
    run_dir: Path = typer.Argument(..., help="a finished `peftbert tune` run directory"),
    output: str = typer.Option(..., help="directory for the exported checkpoint"),
    fmt: str = typer.Option("hf", "--format", help="hf: transformers checkpoint (LoRA merged); onnx: ONNX graph"),
    overwrite: bool = typer.Option(False, help="replace an earlier export in --output"),
    int8: bool = typer.Option(False, help="onnx: also write model_quantized.onnx (dynamic int8, ONNX Runtime)"),
    eval_file: Optional[str] = typer.Option(None, help="onnx: labelled file to compare accuracy and speed on"),
):
    """Export a run for serving without peftbert: a transformers checkpoint or an ONNX graph."""
    from .export import run_export

    run_export(run_dir, output, fmt, overwrite, int8=int8, eval_file=eval_file)


@app.command()
@friendly
def serve(
    run_dir: Optional[Path] = typer.Argument(None, help="a run to serve at POST /predict (as the run 'default')"),
    run: Optional[List[str]] = typer.Option(None, help="NAME=DIR: another run, at POST /predict/NAME (repeatable)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, help="TCP port to listen on"),
    engine: str = typer.Option("auto", help="onnx, torch, or auto (onnx if onnxruntime is installed), as predict"),
    int8: bool = typer.Option(False, help="int8 linear layers (faster on CPU)"),
    max_batch: int = typer.Option(64, help="most texts scored in one forward pass across waiting requests"),
    max_wait_ms: float = typer.Option(0.0, help="how long a request waits for others to share its forward pass "
                                                "(0: requests queued during the last pass share the next)"),
):
    """Serve runs over HTTP: POST /predict, GET /health, GET /metadata, with micro-batching."""
    from .serve import run_serve

    run_serve(run_dir, run, host=host, port=port, engine=engine, int8=int8, max_batch=max_batch,
              max_wait_ms=max_wait_ms)


@app.command()
@friendly
def monitor(
    feed: str = typer.Argument(..., help="dated texts: CSV/TSV/JSONL/Parquet with a date and a text column"),
    run: List[str] = typer.Option(..., help="a run to score with, DIR or NAME=DIR (repeatable)"),
    output: str = typer.Option(..., help="directory for index.csv, scores.csv, plot.png, report.html and the cache"),
    date_column: str = typer.Option("date", help="the feed's date column (ISO dates or datetimes)"),
    text_column: Optional[str] = typer.Option(None, help="the feed's text column (default: text or sentence)"),
    period: str = typer.Option("day", help="day, week, month, or meeting (each distinct date)"),
    positive: Optional[List[str]] = typer.Option(None, help="label counted +1 in the index (default: positive, "
                                                            "bullish or hawkish; repeatable)"),
    negative: Optional[List[str]] = typer.Option(None, help="label counted -1 in the index (default: negative, "
                                                            "bearish or dovish; repeatable)"),
    bootstrap: int = typer.Option(1000, help="bootstrap resamples for each period's 95% band (0: none)"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    top: int = typer.Option(3, help="most positive and most negative texts shown per period in the report"),
    engine: str = typer.Option("auto", help="onnx, torch, or auto (onnx if onnxruntime is installed), as predict"),
    int8: bool = typer.Option(False, help="int8 linear layers (faster on CPU)"),
    batch_size: int = typer.Option(64, help="examples per forward pass"),
):
    """Score a dated feed with runs; write a net index per period, a plot and an HTML report."""
    from .monitor import MonitorArgs, run_monitor

    run_monitor(MonitorArgs(feed, run, output, date_column, text_column, period, positive, negative, bootstrap,
                            seed, top, engine, int8, batch_size))


app.command("adapt")(friendly(adapt))
app.command("bench")(friendly(bench))
app.command("search")(friendly(search))


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
    """List the fine-tuning methods and their settings, as `tune --method NAME` resolves them."""
    from dataclasses import fields

    from .config import build_config
    from .methods import METHODS, method_configs

    for name, m in METHODS.items():
        cfg = build_config(None, {"method": name}, method_configs())  # code defaults < preset < default recipe
        size = f" (size: {name}.{m.knob})" if m.knob else ""
        schedule = "no training loop" if m.fit_head else f"lr {cfg.train.lr:g}, {cfg.train.epochs:g} epochs"
        typer.echo(f"{name}: {m.help}{size}; {schedule}")
        for f in fields(m.config_cls):
            typer.echo(f"    {name}.{f.name} = {getattr(cfg.method_args, f.name)!r}  # {f.metadata.get('help', '')}")


def close_process_group() -> None:
    """Under `accelerate launch`, tear the process group down before the interpreter does: left to exit, gloo's
    threads can abort a finished process ("terminate called without an active exception": one two-process
    adapt run in four here)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main():
    atexit.register(close_process_group)
    app()


if __name__ == "__main__":
    sys.exit(main())
