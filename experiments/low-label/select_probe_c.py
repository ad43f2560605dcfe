"""The probe's L2 penalty, chosen on the development set (dev_split.py), never on test:

    python experiments/low-label/select_probe_c.py DEV_DIR OUT.jsonl

For 8 and 32 rows per class (seeds 1-3, drawn from DEV_DIR/pool.csv as tune --train-per-class draws them), a
logistic regression at each C on the frozen MiniLM's mean-pooled states, as `tune --method probe` fits it
(peftbert.probe.probe_head), scored on DEV_DIR/dev.csv. One line per (N, seed, C); scikit-learn's
LogisticRegressionCV on the training rows alone is a line too (C "cv"): with 8 rows per class it chose poorly.
"""

import json
import sys
import warnings

import pandas as pd
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import f1_score

from peftbert.config import DataArgs
from peftbert.data.tasks import load_task
from peftbert.models import load_classifier, load_tokenizer, resolve_model
from peftbert.probe import head_features

C_GRID = [0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 100]


def main(dev_dir: str, out: str) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    path = resolve_model("minilm")
    tok = load_tokenizer(path)
    dev = pd.read_csv(f"{dev_dir}/dev.csv")
    with open(out, "w") as f:
        for n in (8, 32):
            for seed in (1, 2, 3):
                task = load_task(DataArgs(train_file=f"{dev_dir}/pool.csv", train_per_class=n), seed)
                model = load_classifier(path, task.id2label, "mean")
                x = head_features(model, tok, task.train, 128)
                x_dev = head_features(model, tok, dev.assign(label=dev["label"].astype(str).map(
                    {v: k for k, v in task.id2label.items()})), 128)
                y = task.train["label"].to_numpy()
                y_dev = dev["label"].astype(str).map({v: k for k, v in task.id2label.items()}).to_numpy()
                fits = {c: LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(x, y) for c in C_GRID}
                fits["cv"] = LogisticRegressionCV(Cs=C_GRID, cv=min(5, n), max_iter=5000).fit(x, y)
                for c, fit in fits.items():
                    row = {"n": n, "seed": seed, "c": c, "dev_f1": f1_score(y_dev, fit.predict(x_dev), average="macro")}
                    if c == "cv":
                        row["cv_chose"] = float(fit.C_[0])
                    f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
