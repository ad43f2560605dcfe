"""Packed batches: a random batch's texts laid end to end in a few rows, so almost no step is padding.

Why: finance tweets average 27 tokens, and a random batch of 32 pads them to 2.1x that. Length-grouped batches
(`batching: grouped`) remove the padding by changing which texts share a batch, and in short runs that costs
accuracy: full fine-tuning on 3,000 tweets, 3 seeds, 0.743 grouped against 0.794 with random batches
(experiments/short-regime-batching). Packing keeps the random batch (the same texts, so the same gradient up to
float rounding) and drops the padding instead:

- texts go first-fit-decreasing into rows of ROW_TOKENS tokens, or the batch's longest text where longer;
- each text attends only to itself: a block-diagonal boolean mask, 4-D, which transformers passes to SDPA as is;
- positions restart at every text;
- the encoder's output is cut down to each text's first token ([CLS]), the only one a sequence-classification
  head reads (BERT's pooler, RoBERTa's and ELECTRA's heads: `hidden[:, 0]`).

Not transformers' DataCollatorWithFlattening: its single row with restarting position_ids is read by
flash-attention's variable-length kernels (GPUs), and masking_utils detects such rows only for causal masks,
so a BERT on a CPU would attend across texts.
"""

from __future__ import annotations

import contextlib

import torch

from ..models import transformers_model
from .batching import TrainBatches

# Rows of at least this many tokens (a longer text widens its row). Attention inside a row costs its length
# squared: full fine-tuning steps on 32 tweets took the same time with rows of 32, 64 or the batch's longest
# text as grouped batches did, 15% longer with 128 and 58% with 256 (experiments/speed-cpu/results/packing-rows.md).
ROW_TOKENS = 64
# model type -> position of a text's first token: RoBERTa-style embeddings count from padding_idx + 1
POSITION_START = {"bert": lambda config: 0, "electra": lambda config: 0,
                  **{t: lambda config: config.pad_token_id + 1 for t in ("roberta", "xlm-roberta", "camembert")}}


def packing_problem(model) -> str | None:
    """Why `model` cannot train on packed rows, or None when it can."""
    if getattr(model, "peft_config", None) and getattr(model, "active_peft_config", None) is not None \
            and model.active_peft_config.is_prompt_learning:
        return "prompt methods prepend virtual tokens to every row, so rows cannot be shared"
    top = transformers_model(model)
    if getattr(getattr(top, "config", None), "peftbert_pooling", "cls") != "cls":
        return "mean pooling reads every token of a text, and packed rows keep only the first"
    model_type = getattr(getattr(top, "config", None), "model_type", None)
    if model_type not in POSITION_START:
        return f"packing knows {', '.join(sorted(POSITION_START))} models, not {model_type}"
    if top.config._attn_implementation != "sdpa":
        return f"packing needs SDPA attention, not {top.config._attn_implementation}"
    return None


class PackedCollator:
    """Features (unpadded token ids and a label) -> packed rows: input_ids, token_type_ids, position_ids and a
    (rows, 1, T, T) boolean attention mask, plus `labels` and `first_token` (each text's [CLS] index in the
    flattened rows) in one order."""

    def __init__(self, pad_token_id: int, position_start: int = 0, row_tokens: int = ROW_TOKENS):
        self.pad, self.start, self.row_tokens = pad_token_id, position_start, row_tokens

    @classmethod
    def for_model(cls, model, pad_token_id: int) -> "PackedCollator":
        return cls(pad_token_id, POSITION_START[model.config.model_type](model.config))

    def __call__(self, features: list[dict]) -> dict:
        lengths = [len(f["input_ids"]) for f in features]
        capacity = max(self.row_tokens, *lengths)
        rows: list[list[int]] = []  # indices of the features in each row
        fill: list[int] = []
        for i in sorted(range(len(features)), key=lambda i: -lengths[i]):
            r = next((r for r, used in enumerate(fill) if used + lengths[i] <= capacity), None)
            if r is None:
                rows.append([])
                fill.append(0)
                r = len(rows) - 1
            rows[r].append(i)
            fill[r] += lengths[i]
        width = max(fill)
        shape = (len(rows), width)
        input_ids = torch.full(shape, self.pad, dtype=torch.long)
        token_type_ids = torch.zeros(shape, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        # which text each slot holds; padding slots get ids of their own, so each attends to itself only (a row
        # of a mask with nothing to attend would give NaN)
        text_of = torch.arange(len(features), len(features) + len(rows) * width).view(shape)
        order, first_token = [], []
        for r, members in enumerate(rows):
            at = 0
            for i in members:
                n, f = lengths[i], features[i]
                input_ids[r, at:at + n] = torch.tensor(f["input_ids"])
                if "token_type_ids" in f:
                    token_type_ids[r, at:at + n] = torch.tensor(f["token_type_ids"])
                position_ids[r, at:at + n] = torch.arange(self.start, self.start + n)
                text_of[r, at:at + n] = i
                order.append(i)
                first_token.append(r * width + at)
                at += n
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "position_ids": position_ids,
                 "attention_mask": (text_of[:, None, :, None] == text_of[:, None, None, :]),
                 "first_token": torch.tensor(first_token)}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([features[i]["labels"] for i in order])
        return batch


def encoder_of(model):
    """The encoder stack whose output the pooler or head reads."""
    return transformers_model(model).base_model.encoder


@contextlib.contextmanager
def first_tokens_only(encoder, first_token: torch.Tensor):
    """While inside: the encoder returns, per text, only its first token's state, shaped (texts, 1, hidden), so
    the model's own head and loss run unchanged on the texts of packed rows."""
    def pick(module, args, output):
        hidden = output[0]
        picked = hidden.flatten(0, 1).index_select(0, first_token).unsqueeze(1)
        if isinstance(output, tuple):
            return (picked, *output[1:])
        output.last_hidden_state = picked
        return output

    handle = encoder.register_forward_hook(pick)
    try:
        yield
    finally:
        handle.remove()


def packed_forward(model):
    """forward(model, batch) for the training loop: the model's output on a packed batch."""
    encoder = encoder_of(model)

    def forward(model, batch):
        batch = dict(batch)
        with first_tokens_only(encoder, batch.pop("first_token")):
            return model(**batch)
    return forward


def classifier_batches(model, dataset, tokenizer, batching: str, log) -> TrainBatches:
    """A classifier's training batches: packed rows where `batching` asks for them and the model can read them;
    otherwise padded (with a note when packing was asked for: the same random batches, padded)."""
    from transformers import DataCollatorWithPadding

    if batching == "packed":
        problem = packing_problem(model)
        if not problem:
            return TrainBatches(dataset, PackedCollator.for_model(model, tokenizer.pad_token_id), packed_forward(model))
        log(f"note: random batches, padded, not packed: {problem}; --batching grouped is faster, with texts of one "
            "length per batch")
    return TrainBatches(dataset, DataCollatorWithPadding(tokenizer))
