"""What a method is, and the registry every part of peftbert asks about methods.

A method is one module under peftbert/methods/ that owns all of itself: its config dataclass (names, types,
defaults, help: the flags `--<method>.<field>` are generated from it), `apply`, its size knob and how a size
becomes settings (for `--budget`), the loop hooks it needs, and its summary for metrics.json. Its preset
(train hyper-parameters, chosen values) is recipes/methods/<name>.yaml. Nothing outside its module branches
on a method's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from ..models import Arch


@dataclass
class Context:
    """What a method may need to know about the run when it wraps the model.

    `total_steps` is an estimate at `apply` time (or None); the loop's real step plan arrives through the
    method's `on_train_begin(model, plan)` hook before the first step.
    """
    arch: Arch
    total_steps: int | None = None
    num_labels: int = 2
    head: tuple[str, ...] = ()  # modules to train fully and save (task head + newly initialised ones)
    task_type: str | None = "SEQ_CLS"  # None: a bare encoder (adapt's masked-LM), its head handled by the caller

    @property
    def modules_to_save(self) -> list[str] | None:
        return list(self.head or self.arch.head) if self.task_type else None


@dataclass
class Method:
    name: str
    config_cls: type
    apply: Callable  # (model, cfg, ctx) -> model ready to train
    help: str = ""
    knob: str | None = None  # the config field that sets its size (a --budget sizes it); None: no size
    resize: Callable | None = None  # (size) -> config overrides at that size (default {knob: size})
    measure: Callable | None = None  # (size) -> overrides whose trainable count defines a budget (default resize)
    on_train_begin: Callable | None = None  # (model, plan) once, after prepare, with the loop's real StepPlan
    on_optimizer_step: Callable | None = None  # (model, step) in the loop, after optimizer.step
    summary: Callable | None = None  # (model) -> dict of extra facts for metrics.json
    # (model, tokenizer, train frame, max_length, seed, cfg) -> training accuracy: the method fits the head
    # itself and the loop does not run (probe)
    fit_head: Callable | None = None
    # `peftbert search`'s default space over this method's own settings: {field: spec}, a spec being
    # {"choices": [...]} or {"low": a, "high": b, "log": bool} (integers when a and b are), see search.py
    space: dict = field(default_factory=dict)

    def at_size(self, size: int) -> dict:
        return self.resize(size) if self.resize else {self.knob: size}

    def measured_at(self, size: int) -> dict:
        return self.measure(size) if self.measure else self.at_size(size)


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_configs() -> dict[str, type]:
    return {name: m.config_cls for name, m in METHODS.items()}


def sizable() -> dict[str, str]:
    """method -> its size knob, for the methods a budget can size."""
    return {name: m.knob for name, m in METHODS.items() if m.knob}
