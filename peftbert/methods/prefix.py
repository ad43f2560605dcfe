"""Prefix tuning (Li & Liang 2021; P-tuning v2, Liu et al. 2022) through peft: trained key/value vectors
prepended to every layer's attention; the encoder stays frozen, the head trains.

It rides on the model's `past_key_values`, so it needs an encoder that accepts them (BERT, RoBERTa,
ELECTRA); DistilBERT and DeBERTa-v2 do not. The prefix also shifts position ids by its length:
max_length + num_virtual_tokens must fit in the model's max_position_embeddings.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from ..errors import UserError
from .base import Method, register


@dataclass
class PrefixArgs:
    num_virtual_tokens: int = field(default=20, metadata={"help": "prefix length (key/value pairs per layer)"})
    prefix_projection: bool = field(default=False, metadata={
        "help": "reparametrise the prefix through a 2-layer MLP (Li & Liang); off = P-tuning v2 (direct)"})
    encoder_hidden_size: int | None = field(default=None, metadata={
        "help": "hidden size of that MLP (default: the model's hidden size)"})

    def __post_init__(self):
        if self.num_virtual_tokens <= 0:
            raise UserError(f"prefix.num_virtual_tokens must be > 0, got {self.num_virtual_tokens}")
        if self.encoder_hidden_size is not None and self.encoder_hidden_size <= 0:
            raise UserError(f"prefix.encoder_hidden_size must be > 0 or unset, got {self.encoder_hidden_size}")


def apply(model, cfg: PrefixArgs, ctx):
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    backbone = getattr(model, model.base_model_prefix, model)
    if "past_key_values" not in inspect.signature(backbone.forward).parameters:
        raise UserError(f"prefix tuning needs an encoder that accepts past key/values (BERT, RoBERTa, ELECTRA); "
                        f"{model.config.model_type} does not: use lora, adapter or ia3")
    config = PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=cfg.num_virtual_tokens,
                                prefix_projection=cfg.prefix_projection, encoder_hidden_size=cfg.encoder_hidden_size,
                                modules_to_save=ctx.modules_to_save)
    return get_peft_model(model, config)


register(Method("prefix", PrefixArgs, apply, help="trained key/value prefixes in every layer (peft prefix tuning)",
                knob="num_virtual_tokens",
                space={"num_virtual_tokens": {"choices": [5, 10, 20, 40]},
                       "prefix_projection": {"choices": [False, True]}}))
