"""Houlsby bottleneck adapters as a peftbert method: y + up(act(down(y))) after chosen output projections.

`houlsby` puts one after the attention output and one after the FFN output of every layer; `pfeiffer` only
after the FFN output. The layer LayerNorms and the task head train too. The PEFT tuner itself (saved as
peft_type PEFTBERT_BOTTLENECK, loadable with peft.PeftModel once peftbert is imported) is in bottleneck.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UserError
from .base import Method, register

PLACEMENTS = ("houlsby", "pfeiffer")
LAYER = re.compile(r"\.layer\.\d+\.")  # inside a transformer layer (not the embeddings' LayerNorm)


@dataclass
class AdapterArgs:
    bottleneck: int | None = field(default=None, metadata={
        "help": "adapter hidden size m (set: overrides reduction_factor)"})
    reduction_factor: float = field(default=16, metadata={"help": "m = hidden size / reduction_factor"})
    placement: str = field(default="houlsby", metadata={
        "help": "houlsby (after attention and FFN outputs) | pfeiffer (after the FFN output only)"})
    non_linearity: str = field(default="gelu", metadata={"help": "activation: gelu, relu, swish, tanh, ..."})
    train_layernorm: bool = field(default=True, metadata={"help": "also train each layer's LayerNorms (Houlsby)"})
    init_std: float = field(default=1e-2, metadata={
        "help": "std of the down-projection init (the up-projection starts at zero: near-identity)"})

    def __post_init__(self):
        if self.bottleneck is not None and self.bottleneck <= 0:
            raise UserError(f"adapter.bottleneck must be > 0 or unset, got {self.bottleneck}")
        if self.reduction_factor <= 0 or self.init_std < 0:
            raise UserError("adapter.reduction_factor must be > 0 and adapter.init_std >= 0")
        if self.placement not in PLACEMENTS:
            raise UserError(f"adapter.placement must be one of {'|'.join(PLACEMENTS)}, got {self.placement!r}")
        from transformers.activations import ACT2FN  # here, not at import: it loads torch

        if self.non_linearity not in ACT2FN:
            raise UserError(f"adapter.non_linearity {self.non_linearity!r} unknown (try gelu, relu, swish, tanh)")


def bottleneck_size(cfg: AdapterArgs, hidden: int) -> int:
    return cfg.bottleneck or max(1, round(hidden / cfg.reduction_factor))


def apply(model, cfg: AdapterArgs, ctx):
    from peft import TaskType, get_peft_model
    from torch import nn

    from .bottleneck import BottleneckConfig

    points = [ctx.arch.ffn_out] if cfg.placement == "pfeiffer" else [ctx.arch.attn_out, ctx.arch.ffn_out]
    layernorms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) and LAYER.search(n)]
    config = BottleneckConfig(
        task_type=ctx.task_type and TaskType(ctx.task_type),
        target_modules=r".*\.(?:%s)" % "|".join(points),  # Arch patterns are regexes (BERT's ffn_out has a lookbehind)
        bottleneck=bottleneck_size(cfg, model.config.hidden_size), non_linearity=cfg.non_linearity,
        init_std=cfg.init_std,
        # full names, so a LayerNorm outside the layers (embeddings) never matches by suffix
        modules_to_save=ctx.modules_to_save + (layernorms if cfg.train_layernorm else []))
    return get_peft_model(model, config)


register(Method("adapter", AdapterArgs, apply, help="Houlsby bottleneck adapters (PEFT type PEFTBERT_BOTTLENECK)",
                knob="bottleneck",
                # size and placement (Houlsby et al. 2019 vs Pfeiffer et al. 2021), LayerNorms trained or not
                space={"reduction_factor": {"choices": [4, 8, 16, 32]}, "placement": {"choices": list(PLACEMENTS)},
                       "train_layernorm": {"choices": [True, False]}}))
