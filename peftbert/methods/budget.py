"""Size a method to a trainable-parameter budget, to compare methods at equal cost (AdaLoRA paper, Table 7).

Each sizable method has one size knob, and its trainable parameters outside the head (every method
trains the same head) are affine in it: count(size) = fixed + slope x size. Rather than keep a formula
per method and architecture in sync with the code, we count two sizes with the method's own `apply` on
a weightless (meta-device) copy of the architecture and solve for the size closest to the budget, so the
result agrees with `trainable_params_no_head` in metrics.json.

AdaLoRA is sized by its final budget, as in the paper: target_r triplets per matrix (each in+out+1
numbers); during training it holds init_r = ceil(1.5 x target_r), which is what `trainable_params` counts.
Which matrices keep the triplets is learned, and a feed-forward triplet costs more than an attention one, so
the kept count (`adalora.final_params` in metrics.json) can land above the budget.
"""

from __future__ import annotations

import dataclasses
import re

from ..errors import UserError
from .base import Context, get_method, sizable


# method -> size knob, as each method module declares it (importing this module ran the package's
# __init__ first, so the registry is complete)
KNOBS = sizable()
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9}


def parse_budget(text: str | int | float) -> int:
    """'0.3M' -> 300000; also '150k', '1.2e6', '1_000_000', 300000."""
    m = re.fullmatch(r"\s*(\d[\d_,]*(?:\.\d*)?(?:e[+-]?\d+)?)\s*([kmb]?)\s*", str(text), re.IGNORECASE)
    if not m:
        raise UserError(f"budget {text!r} is not a parameter count: write e.g. 0.3M, 150k or 300000")
    value = round(float(m.group(1).replace("_", "").replace(",", "")) * _UNITS[m.group(2).lower()])
    if value < 1:
        raise UserError(f"budget must be at least 1 parameter, got {text!r}")
    return value


def size_for_budget(method: str, budget_params: int, model_config, arch, args=None) -> dict:
    """Overrides for the method's config block (e.g. {"r": 4}) meeting `budget_params` as closely as possible.

    `args` is the run's method config (target modules, placement, ... stay as the user set them);
    default: the method's defaults.
    """
    if method not in KNOBS:
        raise UserError(f"a budget sizes {', '.join(KNOBS)}; {method!r} has no size to set")
    m = get_method(method)
    args = args if args is not None else m.config_cls()

    def count(size: int) -> int:
        return _trainable_no_head(m, dataclasses.replace(args, **m.measured_at(size)), model_config, arch)

    c2, c3 = count(2), count(3)  # 2 and 3: the smallest sizes every method accepts (AdaLoRA: init_r > target_r)
    slope, fixed = c3 - c2, c2 - 2 * (c3 - c2)
    size = round((budget_params - fixed) / slope)
    if size < 1:
        raise UserError(f"a budget of {budget_params:,} is below the smallest {method} "
                        f"({fixed + slope:,} trainable parameters at {KNOBS[method]}=1, head excluded)")
    return m.at_size(size)


def apply_budget(cfg, budget: str | int):
    """Resize a built TuneConfig's method to `budget` (e.g. "0.3M") trainable parameters outside the head."""
    from transformers import AutoConfig

    from ..models import arch_of, hub_error, resolve_model

    path = resolve_model(cfg.model)
    try:
        model_config = AutoConfig.from_pretrained(path)
    except OSError as e:
        raise hub_error(path, e) from None
    over = size_for_budget(cfg.method, parse_budget(budget), model_config, arch_of(model_config), cfg.method_args)
    cfg.method_args = dataclasses.replace(cfg.method_args, **over)  # re-validated by its __post_init__
    return cfg


def _trainable_no_head(method, args, model_config, arch) -> int:
    from ..models import count_params

    return count_params(dry_apply(method, args, model_config, arch), arch.head)["trainable_params_no_head"]


def dry_apply(method, args, model_config, arch):
    """`method.apply` on a weightless (meta-device) copy of the architecture: its shapes, and its errors (a
    target module that does not exist, an encoder a method cannot wrap) before anything real is loaded."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):  # shapes only: no memory, no init cost, any model size
        model = AutoModelForSequenceClassification.from_config(model_config)
    return method.apply(model, args, Context(arch=arch, num_labels=model_config.num_labels, head=arch.head))
