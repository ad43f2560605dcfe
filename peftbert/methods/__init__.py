"""Method registry: a method is a config dataclass + `apply` (+ optional loop hook and summary).

Adding one = a module here that calls `register(...)`, an import below, a preset in
recipes/methods/, and a row in tests/test_methods.py. The loop and CLI do not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..models import Arch


@dataclass
class Context:
    """What a method may need to know about the run when it wraps the model."""
    arch: Arch
    total_steps: int
    num_labels: int
    head: tuple[str, ...] = ()  # modules to train fully and save (task head + newly initialised ones)


@dataclass
class Method:
    name: str
    config_cls: type
    apply: Callable  # (model, cfg, ctx) -> model ready to train
    on_optimizer_step: Callable | None = None  # (model, step) in the loop, after optimizer.step
    summary: Callable | None = None  # (model) -> dict of extra facts for metrics.json
    help: str = ""


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    from ..errors import UserError

    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_configs() -> dict[str, type]:
    return {name: m.config_cls for name, m in METHODS.items()}


from . import adalora, adapter, bitfit, full, ia3, lora, lora_variants, prefix  # noqa: E402,F401 (registers them)
