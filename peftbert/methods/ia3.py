"""(IA)^3 (Liu et al. 2022) through peft: learned vectors rescale keys, values and the FFN's inner activations.

The smallest of the methods here: per layer 2 x hidden + intermediate numbers (plus the head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UserError
from .base import Method, register


@dataclass
class IA3Args:
    target_modules: str | list = field(default="kv+ffn", metadata={
        "help": "kv+ffn (keys, values and the FFN inner activation: the paper's), kv, or module names"})
    feedforward_modules: list | None = field(default=None, metadata={
        "help": "with a list of targets: those whose input (not output) is scaled, like the FFN output layer"})

    def __post_init__(self):
        if self.feedforward_modules is not None and self.target_modules in ("kv+ffn", "kv"):
            raise UserError("ia3.feedforward_modules applies only with a list of target_modules "
                            "(kv+ffn already scales the FFN output layer's input)")


def targets(cfg: IA3Args, arch) -> tuple[str | list, str | list]:
    """(target_modules, feedforward_modules) for peft. Arch patterns are regexes (BERT's FFN output needs a
    lookbehind to skip attention.output.dense), so the presets become one regex each."""
    if cfg.target_modules in ("kv+ffn", "kv"):
        key, value = arch.linear[1], arch.qv[1]  # Arch.linear lists the attention projections q, k, v first
        ffn = [arch.ffn_out] if cfg.target_modules == "kv+ffn" else []
        return _any_of([key, value, *ffn]), (_any_of(ffn) if ffn else [])
    names = [t.strip() for t in cfg.target_modules.split(",")] if isinstance(cfg.target_modules, str) \
        else list(cfg.target_modules)
    return names, list(cfg.feedforward_modules or [])


def _any_of(patterns) -> str:
    return r".*\.(?:%s)" % "|".join(patterns)


def apply(model, cfg: IA3Args, ctx):
    from peft import IA3Config, TaskType, get_peft_model

    target, feedforward = targets(cfg, ctx.arch)
    try:
        config = IA3Config(task_type=TaskType.SEQ_CLS, target_modules=target, feedforward_modules=feedforward,
                           modules_to_save=ctx.modules_to_save)
        return get_peft_model(model, config)
    except ValueError as e:  # peft: targets not found, or feedforward not a subset of targets
        raise UserError(f"ia3: {str(e).splitlines()[0][:200]} (set ia3.target_modules)") from None


register(Method("ia3", IA3Args, apply, help="learned rescaling of keys, values, FFN activations (peft IA3)"))
