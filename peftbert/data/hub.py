"""Labelled tasks from hub dataset ids (needs network; fails with one clear line offline)."""

from __future__ import annotations

import pandas as pd

from ..errors import UserError


def read_hub(dataset: str) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """(split -> table, column -> the class names its feature states): needs the network."""
    from ..models import check_hub

    check_hub(f"dataset {dataset!r}", "use --train-file with a local copy")
    try:
        import datasets
        ds = datasets.load_dataset(dataset)
    except Exception as e:  # ConnectionError, DatasetNotFoundError, ... all mean the same to the user
        raise UserError(f"could not load hub dataset {dataset!r} ({type(e).__name__}); check the id and "
                        "network, or use --train-file with a local copy") from None
    if "train" not in ds:
        raise UserError(f"hub dataset {dataset!r} has no 'train' split (splits: {', '.join(ds)})")
    names = {c: f.names for c, f in ds["train"].features.items() if getattr(f, "names", None)}
    return {split: ds[split].to_pandas() for split in ("train", "validation", "test") if split in ds}, names
