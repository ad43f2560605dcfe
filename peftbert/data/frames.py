"""A task's three states: resolved (TaskSpec: which files, columns and labels), read (Tables), and checked
(TaskData), with the checks between the last two (build_task).

Every labelled source (named task, user files, hub dataset) ends as a `TaskData`: train/validation/test
frames with columns `text`, optional `text_pair`, and integer `label`, plus label names in id order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError

SPLITS = ("train", "validation", "test")
TEXT_COLUMNS = ("text", "sentence", "sentence1", "content")  # tried in order where no text column is named
LABEL_COLUMNS = ("label", "labels", "target", "class")


@dataclass
class TaskSpec:
    """A task resolved from the data arguments, before anything is read (tasks.resolve_task)."""
    name: str
    source: str  # where it comes from, for metrics.json
    files: dict[str, tuple[Path, str]] = field(default_factory=dict)  # split -> (file, its name in messages)
    hub: str | None = None  # a hub dataset id, read with `datasets` instead of files
    read_options: dict = field(default_factory=dict)  # readers.read_table's glue_tsv, header, names
    text: str | None = None  # None: the first of TEXT_COLUMNS in the training file
    pair: str | None = None
    label: str | None = None  # None: the first of LABEL_COLUMNS
    label_names: list[str] | None = None  # in id order; None: the hub dataset's, else inferred from training labels
    # where a carved validation split may only hold texts of every `train` file and of no `test` file (FOMC)
    pool_files: dict[str, list[Path]] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Tables:
    """A task's tables as read, before any check (readers.read_tables)."""
    splits: dict[str, pd.DataFrame]  # train, and validation/test where the task has them
    class_names: dict[str, list[str]] = field(default_factory=dict)  # column -> names (a hub dataset's features)
    validation_pool: set[str] | None = None  # texts a carved validation split may be drawn from (pool_files)


@dataclass
class TaskData:
    name: str
    label_names: list[str]
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    source: str
    notes: list[str] = field(default_factory=list)
    # texts a carved validation split may be drawn from (None: any training row); see TaskSpec.pool_files
    validation_pool: set[str] | None = None

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.train.columns


def build_task(spec: TaskSpec, tables: Tables) -> TaskData:
    """The checks, in one place: text and label columns picked and present, no blank text, every label known
    (names or ids, mapped to ids in name order), at least two classes to train on."""
    train, where = tables.splits["train"], {split: name for split, (_, name) in spec.files.items()}
    where = {split: where.get(split, f"{spec.name}:{split}") for split in tables.splits}
    text = pick_column(train, spec.text, TEXT_COLUMNS, "text", where["train"])
    label = pick_column(train, spec.label, LABEL_COLUMNS, "label", where["train"])
    check_columns(train, text, spec.pair, label, where["train"])
    names = list(spec.label_names or tables.class_names.get(label) or infer_label_names(train[label]))
    frames = {"train": to_frame(train, text, spec.pair, label, names, where["train"])}
    check_classes(frames["train"]["label"], names, where["train"])  # before other splits' labels are looked up
    for split, df in tables.splits.items():
        if split == "train" or spec.hub and (pd.to_numeric(df[label], errors="coerce") < 0).all():
            continue  # (a hub dataset's GLUE-style hidden test labels: -1)
        frames[split] = to_frame(df, text, spec.pair, label, names, where[split])
    return TaskData(spec.name, names, frames["train"], frames.get("validation"), frames.get("test"), spec.source,
                    notes=list(spec.notes), validation_pool=tables.validation_pool)


def pick_column(df, given, candidates, what, where):
    if given:
        return given
    for c in candidates:
        if c in df.columns:
            return c
    raise UserError(f"no {what} column found in {where} (columns: {', '.join(map(str, df.columns))}); "
                    f"pass --{what}-column")


def infer_label_names(values: pd.Series) -> list[str]:
    """Label names in id order: integer labels keep their order, strings are sorted."""
    uniq = pd.unique(values.astype(str).str.strip())
    if all(u.lstrip("-").isdigit() for u in uniq):
        return [str(v) for v in sorted(int(u) for u in uniq)]
    return sorted(uniq)


def to_frame(df, text, pair, label, names, where) -> pd.DataFrame:
    """Select and normalise columns; map labels (names or ids) to ids, rejecting unknown ones."""
    check_columns(df, text, pair, label, where)
    for col in (text, pair) if pair is not None else (text,):
        check_text(df[col], col, where)
    check_letters(df[text], text, where)  # the first text only: a pair's second text may be a figure
    check_discrete(df[label], label, where)
    out = pd.DataFrame({"text": df[text].astype(str)})
    if pair is not None:
        out["text_pair"] = df[pair].astype(str)
    out["label"] = map_labels(df[label], names, where)
    return out


def check_columns(df, text, pair, label, where):
    for col, flag in ((text, "--text-column"), (pair, "--text-pair-column"), (label, "--label-column")):
        if col is not None and col not in df.columns:
            raise UserError(f"column {col!r} not found in {where} (columns: {', '.join(map(str, df.columns))}); "
                            f"pass {flag}")


def check_text(values: pd.Series, col, where) -> None:
    """No empty or missing texts: a blank row would be trained on (or scored) as if it said something."""
    blank = (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()
    if blank.any():
        rows = blank.nonzero()[0]
        more = f" and {len(rows) - 1} more row(s)" if len(rows) > 1 else ""
        raise UserError(f"text is blank in {where} row {rows[0] + 1}{more} (column {col!r}); fill in or remove "
                        "those rows")


def check_letters(values: pd.Series, col, where) -> None:
    """A text column with no letter in any row (any script) is refused: it is an id, a score or a date column
    picked by mistake, and a model would train on it without a word. Some rows of numbers among texts are
    legitimate ("+3.5%" as a headline), so a column with letters somewhere passes, unwarned."""
    if len(values) and not values.astype(str).str.contains(r"[^\W\d_]", regex=True).any():
        raise UserError(f"text column {col!r} of {where} has no letters in any row (e.g. "
                        f"{str(values.iloc[0])[:30]!r}): it looks like an id or a number column; pass --text-column "
                        "with the column of texts")


MAX_NUMERIC_CLASSES = 10  # more distinct non-integer numbers than this are scores, not class names


def check_discrete(values: pd.Series, col, where) -> None:
    """A classifier's labels are names or a few numbers: many distinct non-integers (0.00-0.99) are scores,
    which would train a classifier of as many classes, score ~0 and exit 0."""
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any():
        return
    distinct = numbers.unique()
    if len(distinct) > MAX_NUMERIC_CLASSES and (distinct != distinct.round()).any():
        examples = ", ".join(f"{v:g}" for v in distinct[:3])
        raise UserError(f"label column {col!r} of {where} holds {len(distinct)} distinct numbers ({examples}, ...): "
                        "scores, not classes; peftbert trains a classifier: bin the scores into classes (e.g. "
                        "negative/neutral/positive) or name the labels")


def check_classes(labels, names: list[str], where) -> None:
    """A classifier learns nothing from a training set of one class."""
    present = sorted(set(labels))
    if len(present) < 2:
        found = f"only one label ({names[present[0]]!r})" if present else "no labels"
        raise UserError(f"{where} has {found}; a classifier needs at least 2 classes in its training set")


def map_labels(values: pd.Series, names: list[str], where) -> list[int]:
    lookup = {n: i for i, n in enumerate(names)}
    numeric = all(n.lstrip("-").isdigit() for n in names)
    ids = []
    for row, v in enumerate(values.astype(str).str.strip()):
        if v in lookup:  # a label name (or an integer label that is also its own name)
            ids.append(lookup[v])
        elif not numeric and v.isdigit() and int(v) < len(names):  # an id into the named labels
            ids.append(int(v))
        else:
            raise UserError(f"unknown label {v!r} in {where} (row {row + 1}); known labels: {', '.join(names)}")
    return ids
