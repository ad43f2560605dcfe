"""LoRA (Hu et al. 2021) through peft: low-rank updates on chosen linear layers; head trains fully."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .base import Method, register


@dataclass
class LoraArgs:
    r: int = field(default=8, metadata={"help": "rank of the update"})
    alpha: float = field(default=16, metadata={"help": "scaling numerator (update scaled by alpha/r)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA input"})
    target_modules: str | list = field(default="qv", metadata={
        "help": "qv (query+value, the paper's), all-linear, or a list of module names"})
    use_dora: bool = field(default=False, metadata={"help": "weight-decomposed LoRA (DoRA)"})
    use_rslora: bool = field(default=False, metadata={"help": "rank-stabilised scaling alpha/sqrt(r)"})

    def __post_init__(self):
        if self.r <= 0 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise UserError(f"lora needs r > 0, alpha > 0, 0 <= dropout < 1 (got r={self.r}, alpha={self.alpha}, "
                            f"dropout={self.dropout})")


def resolve_targets(targets, arch) -> list[str]:
    if targets == "qv":
        return list(arch.qv)
    if targets == "all-linear":
        return list(arch.linear)
    if isinstance(targets, str):
        return [t.strip() for t in targets.split(",") if t.strip()]
    return list(targets)


def apply(model, cfg: LoraArgs, ctx):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=ctx.task_type and TaskType(ctx.task_type), r=cfg.r, lora_alpha=cfg.alpha,
                        lora_dropout=cfg.dropout, target_modules=resolve_targets(cfg.target_modules, ctx.arch),
                        modules_to_save=ctx.modules_to_save, use_dora=cfg.use_dora, use_rslora=cfg.use_rslora)
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # peft: "Target modules {...} not found in the base model"
        raise UserError(f"lora: {str(e).splitlines()[0][:200]} (set lora.target_modules)") from None


# what the literature varies on small encoders: rank and scale, dropout, and which layers (Hu et al. 2021 sec. 7)
SPACE = {"r": {"choices": [4, 8, 16, 32]}, "alpha": {"choices": [8, 16, 32, 64]},
         "dropout": {"low": 0.0, "high": 0.2}, "target_modules": {"choices": ["qv", "all-linear"]}}

register(Method("lora", LoraArgs, apply, help="low-rank updates (peft LoRA)", knob="r", space=SPACE))
