"""Labelled tasks from hub dataset ids (needs network; fails with one clear line offline)."""

from __future__ import annotations

import pandas as pd

from ..config import DataArgs
from ..errors import UserError
from .frames import TaskData, check_classes, infer_label_names, pick_column, to_frame


def load_hub_task(args: DataArgs):
    from ..models import check_hub

    check_hub(f"dataset {args.task!r}", "use --train-file with a local copy")
    try:
        import datasets
        ds = datasets.load_dataset(args.task)
    except Exception as e:  # ConnectionError, DatasetNotFoundError, ... all mean the same to the user
        raise UserError(f"could not load hub dataset {args.task!r} ({type(e).__name__}); check the id and "
                        "network, or use --train-file with a local copy") from None
    if "train" not in ds:
        raise UserError(f"hub dataset {args.task!r} has no 'train' split (splits: {', '.join(ds)})")
    train = ds["train"].to_pandas()
    text = pick_column(train, args.text_column, ("text", "sentence", "sentence1"), "text", args.task)
    label = pick_column(train, args.label_column, ("label", "labels"), "label", args.task)
    feat = ds["train"].features.get(label)
    names = list(args.label_names or getattr(feat, "names", None) or infer_label_names(train[label]))
    frames = {}
    for split in ("train", "validation", "test"):
        if split in ds:
            df = ds[split].to_pandas()
            if split != "train" and (pd.to_numeric(df[label], errors="coerce") < 0).all():
                continue  # GLUE-style hidden test labels (-1)
            frames[split] = to_frame(df, text, args.text_pair_column, label, names, f"{args.task}:{split}")
    check_classes(frames["train"]["label"], names, f"{args.task}:train")
    return TaskData(args.task, names, frames["train"], frames.get("validation", pd.DataFrame()),
                    frames.get("test"), f"hub:{args.task}")
