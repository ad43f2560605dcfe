"""A development set for choosing the low-label recipe without reading test, and without the bias of scoring an
arm on the validation rows that picked its checkpoint:

    python experiments/low-label/dev_split.py OUT_DIR [ROWS] [TASK]

writes OUT_DIR/pool.csv (the task's training file less ROWS random rows, default 1200) and OUT_DIR/dev.csv (those
rows). TASK is twitter (the default: train.csv) or fomc (split 5768's train file; its test file is never read).
Arms train and validate on --train-per-class rows of pool.csv and are scored on dev.csv (select_recipe.py). The
files stay outside the repository (the data's licence); the seed makes them the same on every machine.
"""

import os
import sys
from pathlib import Path

import pandas as pd

TRAIN_FILES = {"twitter": "twitter-financial-news-sentiment/train.csv",
               "fomc": "fomc-hawkish-dovish/train-5768.csv"}


def main(out: str, rows: str = "1200", task: str = "twitter") -> None:
    if task not in TRAIN_FILES:
        sys.exit(f"error: unknown TASK {task!r}; use one of {', '.join(TRAIN_FILES)}")
    root = Path(os.environ.get("PEFTBERT_DATA_DIR", "../shared/data"))
    train = pd.read_csv(root / "finance-tasks" / TRAIN_FILES[task])
    train = train.rename(columns={"sentence": "text"})[["text", "label"]]  # FOMC's text column is `sentence`
    dev = train.sample(n=int(rows), random_state=0)
    Path(out).mkdir(parents=True, exist_ok=True)
    train.drop(dev.index).to_csv(Path(out) / "pool.csv", index=False)
    dev.to_csv(Path(out) / "dev.csv", index=False)
    print(f"{out}: pool {len(train) - len(dev)} rows, dev {len(dev)} rows")


if __name__ == "__main__":
    main(*sys.argv[1:])
