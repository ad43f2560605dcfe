"""Linear probing: the encoder stays as pretrained and the task head is a logistic regression fitted on its
features, in seconds and without a training loop.

With a few labelled rows per class, fine-tuning 22.7M parameters memorises them within a few dozen steps; a
strongly regularised linear model on the frozen sentence embedding (mean pooling on all-MiniLM-L6-v2, the
preset) generalises better. On a development set of 1,200 finance tweets, at 8 per class it scored 0.47 macro-F1
where full fine-tuning scored 0.40 (experiments/low-label). Saved as a complete checkpoint, like `full`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import PROBE_C
from .base import Method, register


@dataclass
class ProbeArgs:
    c: float = field(default=PROBE_C, metadata={
        "help": "inverse strength of the logistic regression's L2 penalty (smaller: stronger)"})

    def __post_init__(self):
        from ..config import check_positive
        check_positive(self, "c")


def apply(model, cfg: ProbeArgs, ctx):
    from ..probe import output_layer

    fitted = {id(p) for p in output_layer(model, ctx.num_labels).parameters()}
    for p in model.parameters():  # the output layer is what the fit sets: counted as trained
        p.requires_grad = id(p) in fitted
    return model


def fit(model, tokenizer, frame, max_length: int, seed: int, cfg: ProbeArgs) -> float:
    from ..probe import probe_head
    return probe_head(model, tokenizer, frame, max_length, seed, c=cfg.c)


register(Method("probe", ProbeArgs, apply, help="the head alone, a logistic regression on the frozen features",
                fit_head=fit, space={"c": {"low": 1e-3, "high": 10.0, "log": True}}))
