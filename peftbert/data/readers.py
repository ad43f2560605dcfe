"""Read tabular files (CSV/TSV/JSONL/Parquet, optionally .gz) into DataFrames with clear errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..errors import UserError

SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_table(path: str | Path, *, glue_tsv: bool = False, header: bool = True, names=None) -> pd.DataFrame:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"file not found: {p} (check the path given to --train-file/--validation-file/--test-file)")
    name = p.name.lower().removesuffix(".gz")
    kind = next((s for s in SUFFIXES if name.endswith(s)), None)
    if kind is None:
        raise UserError(f"cannot read {p}: expected one of {', '.join(SUFFIXES)} (optionally .gz)")
    try:
        if kind == ".parquet":
            df = pd.read_parquet(p)
        elif kind in (".jsonl", ".json"):
            df = pd.read_json(p, lines=kind == ".jsonl")
        else:
            sep = "\t" if kind == ".tsv" else ","
            # GLUE TSVs contain stray quotes: read them with quoting disabled, as GLUE's own loaders do.
            quoting = csv.QUOTE_NONE if glue_tsv else csv.QUOTE_MINIMAL
            df = pd.read_csv(p, sep=sep, quoting=quoting, encoding="utf-8-sig", keep_default_na=False,
                             header=0 if header else None, names=names, dtype=str if glue_tsv else None,
                             on_bad_lines="error")
    except UserError:
        raise
    except Exception as e:  # pandas raises many types; the user needs only the first line
        raise UserError(f"cannot parse {p}: {str(e).splitlines()[0][:200]}") from None
    if len(df) == 0:
        raise UserError(f"{p} has no rows")
    return df
