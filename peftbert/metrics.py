"""Classification metrics from scikit-learn (evaluate's metrics live on the hub and fail offline)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, matthews_corrcoef, precision_recall_fscore_support


def classification_metrics(labels, preds, label_names: list[str]) -> dict:
    labels, preds = np.asarray(labels), np.asarray(preds)
    ids = list(range(len(label_names)))
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=ids, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(labels, preds)) if len(labels) > 1 else 0.0,
        "n": int(len(labels)),
        "per_class": {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, name in enumerate(label_names)},
        "confusion_matrix": confusion_matrix(labels, preds, labels=ids).tolist(),
    }


def headline(m: dict) -> str:
    return f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}"
