"""TF-IDF + logistic-regression baseline on a named task's train -> test split (the bar to beat).

Run: PEFTBERT_DATA_DIR=../shared/data python benchmarks/tfidf_baseline.py [task ...]
"""

import sys

from peftbert.baselines import texts, tfidf_lr
from peftbert.config import DataArgs
from peftbert.data.tasks import _named_task, data_dir
from peftbert.metrics import classification_metrics


def fit_predict(task, weight=None) -> dict:
    # C=10 on the whole train file: the setting that reproduces the 0.830 / 0.754 on twitter (bench's
    # baseline, peftbert/baselines.py, picks C on validation instead)
    clf = tfidf_lr(10, weight).fit(texts(task.train, task.is_pair), task.train["label"])
    return classification_metrics(task.test["label"], clf.predict(texts(task.test, task.is_pair)), task.label_names)


def tfidf_scores(name: str, weight=None) -> dict:
    """Test metrics of the baseline on a named task (the full train file, no validation carved out)."""
    return fit_predict(_named_task(DataArgs(task=name)), weight)


def main(tasks):
    for name in tasks:
        for weight in (None, "balanced"):
            m = tfidf_scores(name, weight)
            print(f"{name:28s} class_weight={str(weight):8s} test accuracy {m['accuracy']:.4f}  "
                  f"macro-F1 {m['macro_f1']:.4f}  (n={m['n']})")


if __name__ == "__main__":
    if data_dir(DataArgs()) is None:
        sys.exit("set PEFTBERT_DATA_DIR to the data directory")
    main(sys.argv[1:] or ["twitter-fin-sentiment", "fomc-hawkish-dovish"])
