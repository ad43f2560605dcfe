"""Read tabular files (CSV/TSV/JSONL/Parquet, optionally .gz) into DataFrames with clear errors; a task's tables
in one call (read_tables)."""

from __future__ import annotations

import csv
import gzip
import itertools
from pathlib import Path

import pandas as pd

from ..errors import UserError
from .frames import TaskSpec, Tables

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_tables(spec: TaskSpec) -> Tables:
    """Every split of a resolved task, as read: its files, or its hub dataset (data/hub.py)."""
    if spec.hub:
        from .hub import read_hub

        splits, class_names = read_hub(spec.hub)
        return Tables(splits, class_names)
    splits = {split: read_table(path, **spec.read_options) for split, (path, _) in spec.files.items()}
    pool = None
    if spec.pool_files:
        texts = {part: [set(read_table(p, **spec.read_options)[spec.text]) for p in paths]
                 for part, paths in spec.pool_files.items()}
        pool = set.intersection(*texts["train"]) - set.union(*texts["test"])
    return Tables(splits, validation_pool=pool)


def read_table(path: str | Path, *, glue_tsv: bool = False, header: bool = True, names=None) -> pd.DataFrame:
    p = Path(path).expanduser()
    check_file(p, "--train-file/--validation-file/--test-file", SUFFIXES)
    kind = next(s for s in SUFFIXES if p.name.lower().removesuffix(".gz").endswith(s))
    try:
        if kind == ".parquet":
            df = pd.read_parquet(p)
        elif kind in (".jsonl", ".json"):
            df = pd.read_json(p, lines=kind == ".jsonl")
        else:
            sep = "\t" if kind == ".tsv" else ","
            # GLUE TSVs contain stray quotes: read them with quoting disabled, as GLUE's own loaders do.
            quoting = csv.QUOTE_NONE if glue_tsv else csv.QUOTE_MINIMAL
            if header:
                check_header(p, sep, quoting)
            df = pd.read_csv(p, sep=sep, quoting=quoting, encoding="utf-8-sig", keep_default_na=False,
                             header=0 if header else None, names=names, dtype=str if glue_tsv else None,
                             on_bad_lines="error")
    except UserError:  # check_header's, already one line
        raise
    except UnicodeDecodeError:
        raise not_utf8(p) from None
    except Exception as e:  # pandas raises many types; the user needs only the first line
        raise UserError(f"cannot parse {p}: {str(e).splitlines()[0][:200]}") from None
    if len(df) == 0:
        raise UserError(f"{p} has no rows")
    return df


def check_header(p: Path, sep: str, quoting: int = csv.QUOTE_MINIMAL) -> None:
    """What pandas takes silently or reports obscurely, named from a CSV/TSV's first lines: the other delimiter
    (a TSV named .csv: pandas reports a missing column or "Expected 1 fields"), a column name given twice
    (pandas renames the second 'x.1' and the first is used), a header with no rows (nothing to load a model for).
    There is no delimiter option: the file's suffix says which it is."""
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    try:
        with opener(p, "rt", encoding="utf-8-sig", newline="") as f:
            records = [r for r in itertools.islice(csv.reader(f, delimiter=sep, quoting=quoting), 64) if r][:2]
    except UnicodeDecodeError:  # in its first lines: said now (predict: before the model loads)
        raise not_utf8(p) from None
    except (csv.Error, OSError, EOFError):
        return  # pandas reads it next and reports these in its own line
    if not records:
        return
    header = records[0]
    other, name, suffix = (("\t", "tab", ".tsv") if sep == "," else (",", "comma", ".csv"))
    if len(header) == 1 and other in header[0]:
        raise UserError(f"{p} looks {name}-separated (its header is {header[0][:60]!r}): rename it to "
                        f"{p.stem}{suffix}, since the suffix decides how a file is read")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise UserError(f"{p}: column {twice[0]!r} appears twice in the header; rename one (pandas would rename "
                        f"the second {twice[0]}.1 and silently use the first)")
    if len(records) < 2:
        raise UserError(f"{p} has no rows (a header only)")


def check_file(p: Path, flag: str, suffixes: tuple[str, ...] = ()) -> None:
    """An existing, readable, non-empty file (of one of `suffixes`), or one line that says what it is not."""
    if p.is_dir():
        raise UserError(f"{p} is a directory; pass a file to {flag}")
    if not p.is_file():
        raise UserError(f"file not found: {p} (check the path given to {flag})")
    if suffixes and not p.name.lower().removesuffix(".gz").endswith(suffixes):
        raise UserError(f"cannot read {p}: expected one of {', '.join(suffixes)} (optionally .gz)")
    try:
        with open(p, "rb") as f:
            empty = not f.read(1)
    except PermissionError:
        raise UserError(f"cannot read {p}: permission denied (make it readable, e.g. chmod u+r {p})") from None
    if empty:
        raise UserError(f"{p} is empty (0 bytes); pass the file that holds the examples")


def not_utf8(p: Path) -> UserError:
    """Which line of a text file is not UTF-8: pandas reports a byte offset into its own buffer."""
    opener = gzip.open if p.name.lower().endswith(".gz") else open
    with opener(p, "rb") as f:
        data = f.read()
    try:
        data.decode("utf-8")
        where = "a byte"
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        where = f"line {line} has byte 0x{data[e.start]:02x}, which"
    return UserError(f"{p} is not UTF-8: {where} is not valid UTF-8; re-save it as UTF-8 "
                     f"(e.g. iconv -f latin1 -t utf-8 {p.name} > utf8-{p.name})")
