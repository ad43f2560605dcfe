"""BitFit (Ben Zaken et al. 2022): train only the bias terms (and the task head); every weight stays frozen.

No PEFT wrapper: the model is returned as is with `requires_grad` set, so it saves and reloads like
`full` (a complete checkpoint; only the biases and the head differ from the base model).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Method, register


@dataclass
class BitFitArgs:
    layernorm: bool = field(default=True, metadata={
        "help": "also train the LayerNorm biases (the paper counts them as bias terms)"})


def apply(model, cfg: BitFitArgs, ctx):
    from torch import nn

    head = ctx.head or ctx.arch.head
    layernorm_biases = {f"{n}.bias" for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    frozen_ln = set() if cfg.layernorm else layernorm_biases
    for name, p in model.named_parameters():
        in_head = any(f".{h}." in f".{name}" for h in head)
        p.requires_grad = in_head or (name.endswith(".bias") and name not in frozen_ln)
    return model


register(Method("bitfit", BitFitArgs, apply, help="bias terms only (BitFit)",
                space={"layernorm": {"choices": [True, False]}}))
