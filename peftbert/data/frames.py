"""Task frames: the columns every source is normalised to, label names and ids, column checks.

Every labelled source (named task, user files, hub dataset) ends as a `TaskData`: train/validation/test
frames with columns `text`, optional `text_pair`, and integer `label`, plus label names in id order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..errors import UserError


@dataclass
class TaskData:
    name: str
    label_names: list[str]
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    source: str
    notes: list[str] = field(default_factory=list)
    # texts a carved validation split may be drawn from (None: any training row); see tasks._named_task
    validation_pool: set[str] | None = None

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def is_pair(self) -> bool:
        return "text_pair" in self.train.columns


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
