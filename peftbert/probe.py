"""`train.head_init: probe`: start the task head from a linear probe, then fine-tune (LP-FT, Kumar et al. 2022);
`--method probe` (methods/probe.py) keeps the probe and trains nothing else; `train.head_refit` fits it again on
the trained features at the end, as SetFit fits its head after its contrastive stage.

A fresh head is random, and with a few dozen labelled rows its first gradients pull the encoder's features
towards whatever the random head needs ("feature distortion"). Fitting the head first, as a logistic regression
on the frozen model's features, starts fine-tuning from a head that already separates the classes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .config import PROBE_C
from .data.encode import EncodedTask


def label_layers(model, num_labels: int) -> list[torch.nn.Linear]:
    """The head's linear layers with one output per label (inside `classifier`, as every supported architecture
    names its head; a LoRA matrix of rank num_labels is not one): the output layer, and a PEFT model's frozen copy
    of it beside the trained one (only the trained one runs, and comes last)."""
    layers = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
              and m.out_features == num_labels and "classifier" in name.split(".")]
    if not layers:
        raise RuntimeError("no linear layer with one output per label: cannot find the head's output layer")
    return layers


def output_layer(model, num_labels: int) -> torch.nn.Linear:
    """The head's last linear layer: BERT's `classifier`, RoBERTa's and ELECTRA's `classifier.out_proj`."""
    return label_layers(model, num_labels)[-1]


@torch.no_grad()
def head_features(model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int = 64) -> np.ndarray:
    """What the output layer reads for each row of `frame`, in eval mode (no dropout)."""
    from transformers import DataCollatorWithPadding

    layer = output_layer(model, model.config.num_labels)
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0].float()))
    collate = DataCollatorWithPadding(tokenizer)
    data = EncodedTask(frame, tokenizer, max_length)
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    try:
        for i in range(0, len(data), batch_size):
            batch = collate([data[j] for j in range(i, min(i + batch_size, len(data)))])
            model(**{k: v.to(device) for k, v in batch.items() if k != "labels"})
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(seen).cpu().numpy()


def probe_head(model, tokenizer, frame: pd.DataFrame, max_length: int, seed: int, c: float = PROBE_C) -> float:
    """Set the output layer to a logistic regression (L2 penalty 1/c) fitted on the frozen features; its
    training accuracy."""
    from sklearn.linear_model import LogisticRegression

    x, y = head_features(model, tokenizer, frame, max_length), frame["label"].to_numpy()
    fit = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(x, y)
    layer = output_layer(model, model.config.num_labels)
    weight, bias = np.zeros((model.config.num_labels, x.shape[1])), np.zeros(model.config.num_labels)
    if len(fit.classes_) == 2:  # sklearn's binary fit has one row, the logit of its second class over the first
        weight[fit.classes_[1]], bias[fit.classes_[1]] = fit.coef_[0], fit.intercept_[0]
    else:
        weight[fit.classes_], bias[fit.classes_] = fit.coef_, fit.intercept_
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=layer.weight.dtype))
        layer.bias.copy_(torch.as_tensor(bias, dtype=layer.bias.dtype))
    return float(fit.score(x, y))


class TaskProbe:
    """`adapt --probe-task T`: how well the adapting encoder's mean-pooled embeddings serve task T, scored at every
    held-out evaluation, so a run shows task scores beside perplexity (perplexity can fall while the task
    suffers) and `train.metric probe_macro_f1` keeps the checkpoint the task likes best.

    The score: a logistic regression fitted on up to `rows` of T's training rows, macro-F1 on T's validation
    split (carved as a tune run with the same seed carves it). T's test split is never read.
    """

    def __init__(self, task: str, data_dir: str | None, seed: int, rows: int, tokenizer, max_length: int = 128):
        from .config import DataArgs
        from .data.tasks import load_task

        t = load_task(DataArgs(task=task, data_dir=data_dir), seed)
        train = t.train.sample(n=min(rows, len(t.train)), random_state=seed)
        self.name, self.label_names, self.seed = t.name, t.label_names, seed
        self.tokenizer, self.max_length = tokenizer, max_length
        self.texts = {"train": train["text"].tolist(), "validation": t.validation["text"].tolist()}
        self.labels = {"train": train["label"].to_numpy(), "validation": t.validation["label"].to_numpy()}

    def embed(self, encoder, part: str) -> np.ndarray:
        from .data.select import embed  # the embeddings kNN selection ranks by

        return embed(self.texts[part], encoder, self.tokenizer, max_length=self.max_length).numpy()

    def __call__(self, encoder) -> dict:
        from sklearn.linear_model import LogisticRegression

        from .metrics import classification_metrics

        was_training = encoder.training
        encoder.eval()
        try:
            x_train, x_val = self.embed(encoder, "train"), self.embed(encoder, "validation")
        finally:
            encoder.train(was_training)
        fit = LogisticRegression(max_iter=2000, random_state=self.seed).fit(x_train, self.labels["train"])
        m = classification_metrics(self.labels["validation"], fit.predict(x_val), self.label_names)
        return {"probe_macro_f1": m["macro_f1"], "probe_accuracy": m["accuracy"]}
