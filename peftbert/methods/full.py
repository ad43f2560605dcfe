"""Full fine-tuning: every weight trains (the reference every PEFT method is compared with)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Method, register


@dataclass
class FullArgs:
    freeze_embeddings: bool = field(default=False, metadata={"help": "keep the embedding layer frozen"})


def apply(model, cfg: FullArgs, ctx):
    for name, p in model.named_parameters():
        p.requires_grad = not (cfg.freeze_embeddings and ".embeddings." in f".{name}")
    return model


register(Method("full", FullArgs, apply, help="update every weight",
                space={"freeze_embeddings": {"choices": [False, True]}}))
