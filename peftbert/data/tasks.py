"""Labelled classification tasks: named tasks in the data directory, user files, hub datasets.

Loading is one pass (load_task): resolve the arguments to a TaskSpec (here), read its tables (readers.py),
check them into a TaskData (frames.py: train/validation/test frames with columns `text`, optional
`text_pair`, and integer `label`, plus label names in id order), split (here).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import DataArgs
from ..errors import UserError
from .frames import TaskData, TaskSpec, build_task
from .readers import read_tables

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
DEFAULT_TASK = "twitter-fin-sentiment"  # the finance domain's default task


@dataclass(frozen=True)
class NamedTask:
    """A task staged in the data directory (see ../shared/data/README.md)."""
    subdir: str
    train: str
    test: str | None
    text: str
    label: str
    labels: tuple[str, ...]
    pair: str | None = None
    glue: bool = False
    header: bool = True
    columns: tuple[str, ...] | None = None
    validation: str | None = None


NAMED_TASKS = {
    "twitter-fin-sentiment": NamedTask("finance-tasks/twitter-financial-news-sentiment", "train.csv", "valid.csv",
                                       "text", "label", ("bearish", "bullish", "neutral")),
    "fomc-hawkish-dovish": NamedTask("finance-tasks/fomc-hawkish-dovish", "train-{split}.csv", "test-{split}.csv",
                                     "sentence", "label", ("dovish", "hawkish", "neutral")),
    # GLUE test labels are private: dev is the test set and validation is carved from train.
    "sst2": NamedTask("glue/SST-2", "train.tsv", "dev.tsv", "sentence", "label", ("negative", "positive"), glue=True),
    "cola": NamedTask("glue/CoLA", "train.tsv", "dev.tsv", "sentence", "label", ("unacceptable", "acceptable"),
                      glue=True, header=False, columns=("source", "label", "mark", "sentence")),
    "rte": NamedTask("glue/RTE", "train.tsv", "dev.tsv", "sentence1", "label", ("entailment", "not_entailment"),
                     pair="sentence2", glue=True),
    "mrpc": NamedTask("glue/MRPC", "train.tsv", "dev.tsv", "#1 String", "Quality", ("not_equivalent", "equivalent"),
                      pair="#2 String", glue=True),
}
ALIASES = {"twitter-financial-news-sentiment": "twitter-fin-sentiment", "fomc": "fomc-hawkish-dovish",
           "sst-2": "sst2", "glue-sst2": "sst2"}
FOMC_SPLITS = ("5768", "78516", "944601")


def data_dir(args: DataArgs) -> Path | None:
    d = args.data_dir or os.environ.get("PEFTBERT_DATA_DIR")
    return Path(d).expanduser() if d else None


def load_task(args: DataArgs, seed: int) -> TaskData:
    """The data arguments as a TaskData, in one pass: resolve (which files, columns, labels), read, check,
    split (a seeded validation split where none is given; the low-label subsample; the caps)."""
    spec = resolve_task(args)
    tables = read_tables(spec)
    task = build_task(spec, tables)
    return split_task(task, args, seed)


def resolve_task(args: DataArgs) -> TaskSpec:
    """What to read for these data arguments; no file is opened (only the data directory looked into)."""
    if args.train_file:
        return _file_spec(args)
    if args.task is None:
        return _default_spec(args)
    if args.task == "finance-sample":
        return _sample_spec()
    if _canonical(args.task).split("@")[0] in NAMED_TASKS:
        return _named_spec(args)
    if "/" in args.task and not Path(args.task).exists():
        return TaskSpec(args.task, f"hub:{args.task}", hub=args.task, text=args.text_column,
                        pair=args.text_pair_column, label=args.label_column, label_names=args.label_names)
    raise UserError(f"unknown task {args.task!r}; use one of {', '.join(list_tasks())}, a hub dataset id, "
                    "or --train-file")


def split_task(task: TaskData, args: DataArgs, seed: int) -> TaskData:
    """Validation carved from train where the task has none (or the low-label subsample), then the caps."""
    if args.train_per_class:
        from .fewshot import subsample
        task = subsample(task, args.train_per_class, seed)
    elif task.validation is None or len(task.validation) == 0:
        task.train, task.validation = stratified_split(task.train, args.validation_fraction, seed,
                                                       pool=task.validation_pool)
        task.notes.append(f"validation: {args.validation_fraction:.0%} of train, stratified, seed {seed}"
                          + (" (from sentences in every split's train set)" if task.validation_pool else ""))
    task.train = _head(task.train, args.max_train_samples)
    task.validation = _head(task.validation, args.max_eval_samples)
    task.test = _head(task.test, args.max_eval_samples)
    return task


def list_tasks() -> list[str]:
    return [*NAMED_TASKS, "finance-sample"]


def _canonical(name: str) -> str:
    base, _, split = name.lower().partition("@")
    base = ALIASES.get(base, base)
    return f"{base}@{split}" if split else base


def _head(df, n, seed=0):
    """A seeded random subset: files are often sorted by label, so the first N rows would mislead."""
    if df is None or n is None or n >= len(df):
        return df
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


def _default_spec(args: DataArgs) -> TaskSpec:
    d = data_dir(args)
    named = NAMED_TASKS[DEFAULT_TASK]
    if d is not None and (d / named.subdir / named.train).is_file():
        return _named_spec(DataArgs(**{**args.__dict__, "task": DEFAULT_TASK}))
    spec = _sample_spec()
    spec.notes.append("no data directory found (set PEFTBERT_DATA_DIR or --data-dir): "
                      "using the small finance-sentiment sample shipped with peftbert")
    return spec


def _sample_spec() -> TaskSpec:
    files = {"train": (SAMPLE_DIR / "finance_sentiment_train.csv", "sample train"),
             "test": (SAMPLE_DIR / "finance_sentiment_test.csv", "sample test")}
    return TaskSpec("finance-sample", str(SAMPLE_DIR), files, text="text", label="label",
                    label_names=["bearish", "bullish", "neutral"])


def _named_spec(args: DataArgs) -> TaskSpec:
    name = _canonical(args.task)
    base, _, split = name.partition("@")
    named = NAMED_TASKS[base]
    d = data_dir(args)
    if d is None:
        raise UserError(f"task {base!r} reads the data directory: set PEFTBERT_DATA_DIR or pass --data-dir")
    if base == "fomc-hawkish-dovish":
        split = split or FOMC_SPLITS[0]
        if split not in FOMC_SPLITS:
            raise UserError(f"FOMC split {split!r} does not exist; use one of {', '.join(FOMC_SPLITS)}")
        name = f"{base}@{split}"
    elif split:
        raise UserError(f"task {base!r} has no '@split' variants")
    root = d / named.subdir
    files = {part: (root / f.format(split=split), f)
             for part, f in zip(("train", "validation", "test"), (named.train, named.validation, named.test)) if f}
    pool = None
    if base == "fomc-hawkish-dovish":
        # The three published splits share one pool of sentences, so one split's training rows are another's
        # test rows. Validation comes only from sentences in every split's train set: choosing anything on
        # validation (a checkpoint, a recipe across splits) then never sees a test sentence of any split.
        pool = {part: [root / f.format(split=s) for s in FOMC_SPLITS]
                for part, f in (("train", named.train), ("test", named.test))}
    options = {"glue_tsv": named.glue, "header": named.header, "names": list(named.columns) if named.columns else None}
    return TaskSpec(name, str(root), files, read_options=options, text=named.text, pair=named.pair,
                    label=named.label, label_names=list(named.labels), pool_files=pool)


def _file_spec(args: DataArgs) -> TaskSpec:
    given = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    return TaskSpec(Path(args.train_file).stem, str(Path(args.train_file).resolve()),
                    {part: (Path(f), f) for part, f in given.items() if f}, text=args.text_column,
                    pair=args.text_pair_column, label=args.label_column,
                    label_names=list(args.label_names) if args.label_names else None)


def stratified_split(df: pd.DataFrame, fraction: float, seed: int, pool: set[str] | None = None):
    """(train, validation): `fraction` of df's rows carved out, label shares kept; with `pool`, the validation
    rows are drawn only from rows whose text is in it (as many as without)."""
    from sklearn.model_selection import train_test_split

    if len(df) < 4:
        raise UserError(f"training set has {len(df)} rows; need at least 4 to carve a validation split "
                        "(or pass --validation-file)")
    if pool is None:  # any row may be validation (kept apart: the same split, row order included, as before pools)
        tr, va = train_test_split(df, test_size=fraction, random_state=seed, stratify=_stratify(df, len(df) * fraction))
        return tr.reset_index(drop=True), va.reset_index(drop=True)
    df = df.reset_index(drop=True)
    n_val = math.ceil(len(df) * fraction)  # as many rows as train_test_split carves for a fraction
    eligible = df[df["text"].isin(pool)]
    if len(eligible) - n_val < eligible["label"].nunique():  # too few left to carve from, one row a class
        raise UserError(f"--validation-fraction {fraction} asks for {n_val} validation rows, but only "
                        f"{len(eligible)} training rows may be validation here (sentences in every published "
                        "split's train set); lower --validation-fraction")
    _, va = train_test_split(eligible, test_size=n_val, random_state=seed, stratify=_stratify(eligible, n_val))
    tr = df.drop(index=va.index)
    return tr.reset_index(drop=True), va.reset_index(drop=True)


def _stratify(df: pd.DataFrame, n_val: float):
    """The labels to stratify by, where every class has 2 rows and the validation split can hold one of each."""
    counts = df["label"].value_counts()
    return df["label"] if counts.min() >= 2 and n_val >= len(counts) else None
