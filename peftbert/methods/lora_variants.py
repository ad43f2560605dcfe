"""LoRA variants that are only different defaults of the `lora` config: same apply, own name and preset."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Method, register
from .lora import SPACE, LoraArgs, apply


@dataclass
class DoraArgs(LoraArgs):
    use_dora: bool = field(default=True, metadata={"help": "weight-decomposed LoRA (DoRA, Liu et al. 2024)"})


@dataclass
class RsLoraArgs(LoraArgs):
    r: int = field(default=16, metadata={"help": "rank of the update (rsLoRA's scaling keeps higher ranks learning)"})
    use_rslora: bool = field(default=True, metadata={
        "help": "rank-stabilised scaling alpha/sqrt(r) (Kalajdzievski 2023)"})


@dataclass
class LoraAllArgs(LoraArgs):
    target_modules: str | list = field(default="all-linear", metadata={
        "help": "all-linear (every encoder linear layer), qv, or a list of module names"})


register(Method("dora", DoraArgs, apply, knob="r", help="LoRA + learned magnitude per output (peft DoRA)",
                space=SPACE))
register(Method("rslora", RsLoraArgs, apply, knob="r", help="LoRA with alpha/sqrt(r) scaling, for higher ranks",
                space={**SPACE, "r": {"choices": [8, 16, 32, 64]}}))  # the point of rsLoRA: higher ranks
register(Method("lora-all", LoraAllArgs, apply, knob="r", help="LoRA on every linear layer of the encoder",
                space={k: v for k, v in SPACE.items() if k != "target_modules"}))  # all-linear is what it is
