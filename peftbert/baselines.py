"""The bars a table is read against: the majority class and TF-IDF + logistic regression.

Both fit on the rows the runs train on (the task with its validation split carved as the runs carve it) and are
scored on the split the runs are scored on. TF-IDF's C is chosen on the validation split, never on test.
"""

from __future__ import annotations

from .metrics import classification_metrics

C_GRID = (0.1, 1.0, 10.0, 100.0)


def texts(df, is_pair: bool) -> list[str]:
    return (df["text"] + " [SEP] " + df["text_pair"]).tolist() if is_pair else df["text"].tolist()


def tfidf_lr(c: float, class_weight=None):
    """Word 1-2-grams with sublinear tf, then logistic regression: the strong classical baseline for short texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=c, max_iter=2000, class_weight=class_weight))


def baseline_scores(task) -> dict[str, dict]:
    """{"majority class": metrics, "TF-IDF + LR": metrics (+ "C")} on the test split (validation if none)."""
    import numpy as np

    scored = task.test if task.test is not None and len(task.test) else task.validation
    names = task.label_names
    majority = int(task.train["label"].value_counts().idxmax())
    out = {"majority class": classification_metrics(scored["label"], np.full(len(scored), majority), names)}
    best = None
    for c in C_GRID:
        clf = tfidf_lr(c).fit(texts(task.train, task.is_pair), task.train["label"])
        val = classification_metrics(task.validation["label"], clf.predict(texts(task.validation, task.is_pair)),
                                     names)["macro_f1"]
        if best is None or val > best[0]:
            best = (val, c, clf)
    _, c, clf = best
    out["TF-IDF + LR"] = {**classification_metrics(scored["label"], clf.predict(texts(scored, task.is_pair)), names),
                          "C": c}
    return out


def write_baselines(cfg, out, log=print) -> None:
    """out/baselines.json for a bench grid: its task as the first cell loads it (the validation carve of its
    seed), scored on the split the runs are scored on; kept while the task stays the same."""
    import json

    from .artifacts import cached_json
    from .data.tasks import load_task
    from .runinfo import write_json

    import dataclasses

    task = load_task(cfg.data, cfg.train.seed)
    path = out / "baselines.json"
    key = {"data": dataclasses.asdict(cfg.data), "seed": cfg.train.seed}  # what decides the rows it fits and scores
    cached = cached_json(path)  # a damaged one is made again
    if cached and cached.get("key") == json.loads(json.dumps(key)):
        return
    split = "test" if task.test is not None and len(task.test) else "validation"
    scores = baseline_scores(task)
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, {"task": task.name, "split": split, "key": key, "scores": scores})
    log("baselines on " + split + ": " + ", ".join(f"{k} macro-F1 {v['macro_f1']:.4f}" for k, v in scores.items()))
