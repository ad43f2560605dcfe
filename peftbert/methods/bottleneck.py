"""The bottleneck adapter as a PEFT tuner (config, layer, model), registered with peft on import.

Imported by the `adapter` method (adapter.py) when it wraps a model and by `predict` before loading a run,
so peft and torch load only when needed. Bottleneck adapters (Houlsby et al. 2019) as a real PEFT method:
get_peft_model / save / from_pretrained.

Each adapter is y + up(act(down(y))) on the output y of an output projection, i.e. before the
residual add + LayerNorm.

peft registers a method only if its name is a member of the closed `PeftType` enum, so the one
non-public step here is adding that member (`_peft_type`). It is checked right after (`_check_registration`):
if a peft or Python release changes what that relies on, or peft ships a method of the same name, importing
this module fails with a message saying so, never silently. The type is named PEFTBERT_BOTTLENECK, so plain
peft, asked to load such a run without peftbert, fails naming it (KeyError: 'PEFTBERT_BOTTLENECK').
Tested with peft >= 0.21, < 0.22 (pyproject.toml pins that range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import peft
from peft import PeftConfig
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer
from peft.utils import PeftType, register_peft_method
from torch import nn
from transformers.activations import ACT2FN

PEFT_NAME = "peftbert_bottleneck"  # peft_type "PEFTBERT_BOTTLENECK" in adapter_config.json
PREFIX = "bottleneck_"  # parameter names: ...bottleneck_down / bottleneck_up
TESTED_PEFT = ">=0.21,<0.22"


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


def _check_registration(member: PeftType, name: str) -> None:
    """peft looks the type up by name, by value and by membership; all three must find the new member."""
    found = (PeftType[name] is member, PeftType(name) is member, name in list(PeftType), member == name)
    if not all(found):
        raise ImportError(f"peftbert's bottleneck adapter could not register with peft {peft.__version__} "
                          f"(tested: peft{TESTED_PEFT}); install a tested peft, e.g. pip install 'peft{TESTED_PEFT}'")


BOTTLENECK = _peft_type(PEFT_NAME.upper())
_check_registration(BOTTLENECK, PEFT_NAME.upper())


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
    prefix: str = PREFIX
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


def _register() -> None:
    known = PEFT_TYPE_TO_TUNER_MAPPING.get(BOTTLENECK)
    if known is None:
        register_peft_method(name=PEFT_NAME, config_cls=BottleneckConfig, model_cls=BottleneckModel, prefix=PREFIX)
    elif (known.__module__, known.__qualname__) == (__name__, "BottleneckModel"):  # this module, reloaded
        PEFT_TYPE_TO_CONFIG_MAPPING[BOTTLENECK] = BottleneckConfig
        PEFT_TYPE_TO_TUNER_MAPPING[BOTTLENECK] = BottleneckModel
    else:
        raise ImportError(f"peft {peft.__version__} already has a method named {PEFT_NAME!r} "
                          f"({known.__module__}.{known.__qualname__}); peftbert's bottleneck adapter would clash with "
                          f"it: install a tested peft, e.g. pip install 'peft{TESTED_PEFT}'")


_register()
