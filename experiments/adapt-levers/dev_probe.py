"""Which adapted start serves few labels best, chosen on a development set, never on test:

    python experiments/adapt-levers/dev_probe.py OUT.jsonl MODEL [MODEL ...]

FOMC hawkish/dovish split 5768: 500 random sentences of its train file (seed 0) are the development set; for 8
and 32 rows per class (seeds 1-10, drawn from the other 1,403), `tune --method probe`'s logistic regression
(peftbert.probe.probe_head's features and C) on each model's frozen mean-pooled states, scored on the 500.
One line per (model, N, seed). The task's test file is not read.
"""

import json
import sys
import warnings

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from peftbert.config import PROBE_C, DataArgs
from peftbert.data.tasks import data_dir
from peftbert.models import load_classifier, load_tokenizer, resolve_model
from peftbert.probe import head_features

TRAIN = "finance-tasks/fomc-hawkish-dovish/train-5768.csv"
SEEDS = range(1, 11)


def main(out: str, *models: str) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    train = pd.read_csv(data_dir(DataArgs()) / TRAIN).rename(columns={"sentence": "text"})[["text", "label"]]
    dev = train.sample(n=500, random_state=0)
    pool = train.drop(dev.index).reset_index(drop=True)
    with open(out, "a") as f:
        for name in models:
            path = resolve_model(name)
            model = load_classifier(path, {0: "dovish", 1: "hawkish", 2: "neutral"}, "mean")
            tok = load_tokenizer(path)
            x_pool, x_dev = head_features(model, tok, pool, 128), head_features(model, tok, dev, 128)
            means = {}
            for n in (8, 32):
                scores = []
                for seed in SEEDS:
                    rows = pool.groupby("label", group_keys=False).sample(n=n, random_state=seed).index
                    fit = LogisticRegression(C=PROBE_C, max_iter=5000, random_state=seed)
                    fit.fit(x_pool[rows], pool["label"].to_numpy()[rows])
                    row = {"model": name, "n": n, "seed": seed,
                           "dev_f1": round(f1_score(dev["label"], fit.predict(x_dev), average="macro"), 4)}
                    f.write(json.dumps(row) + "\n")
                    scores.append(row["dev_f1"])
                means[n] = round(sum(scores) / len(scores), 4)
            print(name, "dev macro-F1 by N per class:", means, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
