"""The low-label regime: `tune --train-per-class N` keeps N seeded training rows per class.

Selection must stay honest at this size, so validation is sized to match: N rows per class too, drawn from the
task's validation split when it has one, else carved from the training rows not kept (from the task's
validation pool where it has one, e.g. FOMC's sentences in no split's test set). The test split is untouched.
The same seed gives the same rows to every arm of a comparison (base vs adapted start, SetFit's reference).
"""

from __future__ import annotations

import pandas as pd

from ..errors import UserError
from .frames import TaskData


def per_class(df: pd.DataFrame, n: int, seed: int, where: str) -> pd.DataFrame:
    """n rows of every label in df, seeded; refused where a class has fewer (the comparison would be uneven)."""
    counts = df["label"].value_counts()
    short = counts[counts < n]
    if len(short):
        raise UserError(f"{where} has {int(short.min())} rows of a class, fewer than --train-per-class {n}; "
                        "lower --train-per-class")
    parts = [rows.sample(n=n, random_state=seed) for _, rows in df.groupby("label", sort=True)]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def subsample(task: TaskData, n: int, seed: int) -> TaskData:
    """The task with n training and n validation rows per class (see the module docstring)."""
    train = task.train.reset_index(drop=True)
    if task.validation is not None and len(task.validation):
        task.validation = per_class(task.validation, n, seed, "the validation split")
        task.notes.append(f"validation: {n} per class of the validation split, seed {seed}")
    else:
        eligible = train if task.validation_pool is None else train[train["text"].isin(task.validation_pool)]
        task.validation = per_class(eligible, n, seed, "the training set (carving validation)")
        train = train[~train["text"].isin(set(task.validation["text"]))]
        task.notes.append(f"validation: {n} per class carved from train, seed {seed}")
    # A different stream for the training rows than for the carve, so train is not the carve's neighbour set.
    task.train = per_class(train, n, (seed + 1_000_003) % 2**32, "the training set")
    task.notes.append(f"train: {n} per class ({len(task.train)} rows), seed {seed}")
    return task
