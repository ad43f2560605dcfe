"""SetFit, the low-label reference, on exactly the rows a `tune --train-per-class N` run trains on.

    pip install setfit==1.2.0
    python benchmarks/setfit_reference.py --task twitter-fin-sentiment --per-class 8 --seeds 1,2,3,4,5 --output OUT

Same model (all-MiniLM-L6-v2, the embedded copy: SetFit's own paper reports this checkpoint), same subsample
(peftbert's load_task with train_per_class and the run's seed), same test set, SetFit 1.2's defaults (contrastive
body training on oversampled pairs, then a logistic-regression head). Each run is written as
OUT/runs/minilm-setfit-s<seed>/metrics.json in the fields of a `tune` run, so bench's tables and paired
comparisons take it as one more method. The test set is scored once per run, after training; validation
(N per class, as tune's) is scored too but chooses nothing (SetFit's defaults select nothing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from peftbert.config import DataArgs
from peftbert.data.tasks import load_task
from peftbert.metrics import classification_metrics
from peftbert.models import resolve_model
from peftbert.runinfo import versions, write_json


def run_one(task_name: str, per_class: int, seed: int, out: Path) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    task = load_task(DataArgs(task=task_name, train_per_class=per_class), seed)
    model_path = resolve_model("minilm")
    model = SetFitModel.from_pretrained(model_path)
    train = Dataset.from_dict({"text": task.train["text"].tolist(), "label": task.train["label"].tolist()})
    with tempfile.TemporaryDirectory() as scratch:  # SetFit's checkpoints (default: ./checkpoints), not kept
        args = TrainingArguments(seed=seed, report_to="none", output_dir=scratch)
        trainer = Trainer(model=model, args=args, train_dataset=train)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0

    def score(frame):
        preds = model.predict(frame["text"].tolist(), as_numpy=True)
        return classification_metrics(frame["label"].to_numpy(), preds, task.label_names)

    body = sum(p.numel() for p in model.model_body.parameters())
    head = model.model_head.coef_.size + model.model_head.intercept_.size
    metrics = {"method": "setfit", "model": "minilm", "model_path": model_path, "task": task.name,
               "task_source": task.source, "seed": seed, "label_names": task.label_names,
               "train_per_class": per_class, "notes": task.notes,
               "trainable_params": body + head, "trainable_params_no_head": body, "total_params": body + head,
               "trainable_percent": 100.0, "kept_params": body + head,
               "validation": score(task.validation), "test": score(task.test),
               "best_step": None, "train_seconds": round(seconds, 2),
               "train_samples_per_second": round(len(task.train) / seconds, 2),
               "setfit_args": "SetFit 1.2 TrainingArguments() defaults, seed set", "versions": versions()}
    run_dir = out / "runs" / f"minilm-setfit-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "metrics.json", metrics)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="a named task, e.g. twitter-fin-sentiment")
    ap.add_argument("--per-class", type=int, required=True, help="labelled rows per class (tune --train-per-class)")
    ap.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (each its own subsample)")
    ap.add_argument("--output", required=True, help="a bench grid directory: runs go to OUTPUT/runs/")
    args = ap.parse_args()
    for seed in [int(s) for s in args.seeds.split(",")]:
        if (Path(args.output) / "runs" / f"minilm-setfit-s{seed}" / "metrics.json").exists():
            continue  # finished: an interrupted grid continues
        m = run_one(args.task, args.per_class, seed, Path(args.output))
        print(json.dumps({"seed": seed, "test_macro_f1": round(m["test"]["macro_f1"], 4),
                          "train_seconds": m["train_seconds"]}), flush=True)


if __name__ == "__main__":
    main()
