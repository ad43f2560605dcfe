"""Bottleneck adapters (Houlsby et al. 2019) as a real PEFT method: get_peft_model / save / from_pretrained.

Each adapter is y + up(act(down(y))) on the output y of an output projection, i.e. before the
residual add + LayerNorm. `houlsby` puts one after the attention output and one after the FFN output
of every layer; `pfeiffer` only after the FFN output. The layer LayerNorms and the task head train too.

peft registers a method only if its name is a member of the closed `PeftType` enum, so the one
non-public step here is adding that member (`_peft_type`); everything else is peft's tuner API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Union

from peft import PeftConfig, TaskType
from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType, register_peft_method
from torch import nn
from transformers.activations import ACT2FN

from ..errors import UserError
from . import Method, register

PEFT_NAME = "bottleneck"  # the peft_type in adapter_config.json is "BOTTLENECK"


def _peft_type(name: str) -> PeftType:
    """Add `name` to peft's PeftType enum (idempotent); the enum has no public way to be extended."""
    if name not in PeftType.__members__:
        member = str.__new__(PeftType, name)
        member._name_ = member._value_ = name  # name == value: str-enum lookups by the JSON string then work
        member.__objclass__ = PeftType
        member._sort_order_ = len(PeftType._member_names_)
        PeftType._member_names_.append(name)
        PeftType._member_map_[name] = member
        PeftType._value2member_map_[name] = member
        type.__setattr__(PeftType, name, member)  # EnumType.__setattr__ refuses new members
    return PeftType[name]


BOTTLENECK = _peft_type(PEFT_NAME.upper())


@dataclass
class BottleneckConfig(PeftConfig):
    target_modules: Optional[Union[list[str], str]] = field(
        default=None, metadata={"help": "linear layers whose output gets an adapter (regex or name suffixes)"})
    exclude_modules: Optional[Union[list[str], str]] = field(default=None, metadata={"help": "modules to skip"})
    bottleneck: int = field(default=64, metadata={"help": "adapter hidden size"})
    non_linearity: str = field(default="gelu", metadata={"help": "activation between the projections"})
    init_std: float = field(default=1e-2, metadata={"help": "std of the down-projection init"})
    modules_to_save: Optional[list[str]] = field(
        default=None, metadata={"help": "modules trained fully and saved (head, LayerNorms)"})

    def __post_init__(self):
        super().__post_init__()
        self.peft_type = BOTTLENECK


class BottleneckLayer(nn.Module, BaseTunerLayer):
    """Wraps a linear layer: y = base(x); y = y + up(act(down(y))) for each active adapter."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")
    other_param_names = ("bottleneck_act",)

    def __init__(self, base_layer: nn.Linear, adapter_name: str, config: BottleneckConfig):
        super().__init__()
        self.base_layer = base_layer
        self.bottleneck_down = nn.ModuleDict()
        self.bottleneck_up = nn.ModuleDict()
        self.bottleneck_act: dict[str, str] = {}
        self._disable_adapters = False
        self.merged_adapters = []
        self._active_adapter = adapter_name
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.update_layer(adapter_name, config)

    def update_layer(self, adapter_name: str, config: BottleneckConfig, **kwargs):
        down = nn.Linear(self.out_features, config.bottleneck)
        up = nn.Linear(config.bottleneck, self.out_features)
        # Near-identity start (Houlsby et al. §2.1): small random down-projection and a zero up-projection, so
        # before the first step the adapted model computes exactly the pretrained function.
        nn.init.normal_(down.weight, std=config.init_std)
        nn.init.zeros_(down.bias)
        nn.init.zeros_(up.weight)
        nn.init.zeros_(up.bias)
        self.bottleneck_down[adapter_name] = down
        self.bottleneck_up[adapter_name] = up
        self.bottleneck_act[adapter_name] = config.non_linearity
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def forward(self, x, *args, **kwargs):
        y = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return y
        for name in self.active_adapters:
            if name in self.bottleneck_down:
                down, up = self.bottleneck_down[name], self.bottleneck_up[name]
                h = ACT2FN[self.bottleneck_act[name]](down(y.to(down.weight.dtype)))
                y = y + up(h).to(y.dtype)  # the adapter's internal skip connection
        return y

    def __repr__(self) -> str:
        return "bottleneck." + super().__repr__()


class BottleneckModel(BaseTuner):
    prefix: str = f"{PEFT_NAME}_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: dict = {}  # no per-architecture defaults: callers name the output projections

    def _prepare_adapter_config(self, peft_config, model_config):
        if peft_config.target_modules is None:
            raise ValueError("bottleneck adapters need `target_modules` (the output projections to follow)")
        return peft_config

    def _create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if isinstance(target, BottleneckLayer):
            target.update_layer(adapter_name, peft_config)
            return
        if not isinstance(target, nn.Linear):
            raise ValueError(f"bottleneck adapters follow nn.Linear layers; {current_key} is {type(target).__name__}")
        new = BottleneckLayer(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _check_merge_allowed(self):
        raise ValueError("bottleneck adapters are nonlinear: they cannot be merged into the base weights")


if BOTTLENECK not in PEFT_TYPE_TO_TUNER_MAPPING:  # a module reload must not register twice
    register_peft_method(name=PEFT_NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel)


# ---------------------------------------------------------------- the peftbert method
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
        if self.non_linearity not in ACT2FN:
            raise UserError(f"adapter.non_linearity {self.non_linearity!r} unknown (try gelu, relu, swish, tanh)")


def bottleneck_size(cfg: AdapterArgs, hidden: int) -> int:
    return cfg.bottleneck or max(1, round(hidden / cfg.reduction_factor))


def apply(model, cfg: AdapterArgs, ctx):
    from peft import get_peft_model

    points = [ctx.arch.ffn_out] if cfg.placement == "pfeiffer" else [ctx.arch.attn_out, ctx.arch.ffn_out]
    layernorms = [n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm) and LAYER.search(n)]
    config = BottleneckConfig(
        task_type=TaskType.SEQ_CLS,
        target_modules=r".*\.(?:%s)" % "|".join(points),  # Arch patterns are regexes (BERT's ffn_out has a lookbehind)
        bottleneck=bottleneck_size(cfg, model.config.hidden_size), non_linearity=cfg.non_linearity,
        init_std=cfg.init_std,
        # full names, so a LayerNorm outside the layers (embeddings) never matches by suffix
        modules_to_save=list(ctx.head or ctx.arch.head) + (layernorms if cfg.train_layernorm else []))
    return get_peft_model(model, config)


register(Method("adapter", AdapterArgs, apply, help="Houlsby bottleneck adapters (PEFT method 'bottleneck')"))
