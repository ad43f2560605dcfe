"""The Python API: the same typed configs and runs as the CLI, for people who script.

    import peftbert
    metrics = peftbert.tune(task="finance-sample", method="lora", train={"epochs": 1}, output="runs/api")
    clf = peftbert.load("runs/api")
    clf.classify(["Shares jump after earnings beat"])   # [{'label': ..., 'probabilities': {...}}]
"""

from __future__ import annotations

from pathlib import Path


class Classifier:
    """A finished `tune` run, ready to classify; `.model` and `.tokenizer` are the Hugging Face objects
    (LoRA-family adapters merged into the weights)."""

    def __init__(self, run_dir: str | Path, merge: bool = True):
        from .predict import load_run

        self.model, self.tokenizer, self.info = load_run(Path(run_dir), merge=merge)
        self.labels: list[str] = list(self.info["label_names"])
        self.max_length = int(self.info.get("max_length") or 512)

    def classify(self, texts: list[str] | str, pairs: list[str] | None = None, batch_size: int = 64) -> list[dict]:
        from .predict import predict_proba

        texts = [texts] if isinstance(texts, str) else list(texts)
        probs = predict_proba(self.model, self.tokenizer, texts, pairs, batch_size, self.max_length)
        return [{"label": self.labels[int(p.argmax())], "probabilities": dict(zip(self.labels, map(float, p)))}
                for p in probs]

    __call__ = classify


def load(run_dir: str | Path) -> Classifier:
    """A classifier from a `peftbert tune` run directory."""
    return Classifier(run_dir)


def tune(config=None, *, recipe: str | None = None, budget: str | None = None, resume: str | None = None,
         overwrite: bool = False, **values) -> dict:
    """Run `tune`: with a TuneConfig, or with the settings the CLI takes as a nested mapping
    (`method="lora", task="sst2", train={"lr": 1e-3}, lora={"r": 16}`). Returns its metrics. As on the CLI, settings
    that name no recipe, method, budget, length or lr are sized to the training set (sized_tune_config)."""
    from .commands.tune import run_tune, sized_tune_config

    if config is not None:
        return run_tune(config, overwrite=overwrite, resume=resume)
    cfg, note = sized_tune_config(recipe, _nest(values), budget)
    return run_tune(cfg, overwrite=overwrite, resume=resume, notes=(note,) if note else ())


def adapt(config=None, *, recipe: str | None = None, resume: str | None = None, overwrite: bool = False,
          **values) -> dict:
    """Run `adapt` (continued masked-LM pretraining): with an AdaptConfig or the CLI's settings as a mapping."""
    from .commands.adapt import run_adapt
    from .config import build_adapt_config

    cfg = config if config is not None else build_adapt_config(recipe, values)  # adapt's keys are top-level
    return run_adapt(cfg, overwrite=overwrite, resume=resume)


def _nest(values: dict) -> dict:
    """Top-level keyword arguments as the config tree: data fields go under `data` (task already does)."""
    from dataclasses import fields

    from .config import DataArgs

    data = {f.name for f in fields(DataArgs)} - {"task"}
    out = {k: v for k, v in values.items() if k not in data}
    moved = {k: v for k, v in values.items() if k in data}
    if moved:
        out["data"] = {**out.get("data", {}), **moved}
    return out
