"""The masked-language model `adapt` trains: loading one (with a tied head where the checkpoint has none), the
loss on predicted positions only (PredictedOnly), held-out evaluation on fixed masks, and the pooler carried
over into the saved checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .errors import UserError


def load_mlm(path: str, nsp: bool = False):
    """(pre-training model, whether a head was newly initialised). A new MLM head's decoder is the input
    embedding matrix (tied, as in BERT), so only the small transform and the bias start from scratch.
    With `nsp`, the model also has BERT's next-sentence head (BertForPreTraining) on the pooler."""
    from transformers import AutoModelForMaskedLM, AutoModelForPreTraining
    from transformers.utils import logging as hf_logging

    from .models import hub_error

    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing-head report is expected; we say it in one line
    auto = AutoModelForPreTraining if nsp else AutoModelForMaskedLM
    try:
        model, info = auto.from_pretrained(path, output_loading_info=True, use_safetensors=True)
    except OSError as e:
        raise hub_error(path, e) from None
    except ValueError as e:  # "Unrecognized configuration class ... for AutoModelForMaskedLM"
        raise UserError(f"{path} cannot be loaded as a masked language model: {str(e).splitlines()[0][:160]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if nsp and not hasattr(getattr(model, "cls", None), "seq_relationship"):
        raise UserError(f"adapt.nsp needs a BERT-style model with a next-sentence head; {model.config.model_type} "
                        "has none (drop --nsp: masked LM alone is RoBERTa's recipe)")
    new_head = any(not k.startswith(model.base_model_prefix + ".") for k in info.get("missing_keys", []))
    out_emb = model.get_output_embeddings()
    if new_head and out_emb is not None and out_emb.weight is not model.get_input_embeddings().weight:
        model.config.tie_word_embeddings = True
        model.tie_weights()
    return model, new_head


def head_names(model) -> list[str]:
    """Parameters outside the encoder: the MLM head. A tied decoder is listed under the embeddings."""
    return [n for n, _ in model.named_parameters() if not n.startswith(model.base_model_prefix + ".")]


def set_trainable(model, names: list[str] | None):
    for n, p in model.named_parameters():
        p.requires_grad = names is None or n in names


def carried_pooler(model, source: str) -> dict:
    """The source checkpoint's pooler, which a masked-LM model does not hold.

    Sequence classifiers start from the pooler: carrying it over means `tune` on the adapted model
    differs from `tune` on the original only by what adaptation changed, not by a re-drawn pooler.
    """
    from safetensors import safe_open

    have, prefix, found = set(model.state_dict()), model.base_model_prefix, {}
    for f in sorted(Path(source).glob("*.safetensors")) if Path(source).is_dir() else []:
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                name = k if k.startswith(prefix + ".") else f"{prefix}.{k}"
                if ".pooler." in f".{k}" and name not in have:
                    found[name] = st.get_tensor(k)
    return found


def add_weights(out: Path, tensors: dict) -> None:
    """Add tensors (the carried-over pooler) to a saved model.safetensors."""
    from safetensors.torch import load_file, save_file

    weights = out / "model.safetensors"
    if tensors and weights.is_file():  # (a sharded save has no single file; the pooler is then re-drawn)
        save_file({**load_file(str(weights)), **tensors}, str(weights), metadata={"format": "pt"})


class PredictedOnly(torch.nn.Module):
    """The masked-LM loss with the vocabulary projection run only where a token is predicted.

    HF's masked-LM forward projects every position onto the vocabulary and drops 85% of it; for a
    small encoder (MiniLM: 384 wide, 30k words) that projection costs as much as the encoder itself.
    `logits` holds the scores of the predicted positions only, in row-major order. Without `labels`
    (training) it masks the batch itself, with the loop's RNG (see data.mlm.MLMCollator). Given a
    `next_sentence_label` (segment pairs, data.nsp), it adds BERT's next-sentence loss on the pooler.
    """

    def __init__(self, mlm, masker=None, teacher=None, preserve: float = 0.0):
        super().__init__()
        self.mlm, self.masker = mlm, masker
        # adapt.preserve: a frozen copy of the encoder as it was; training adds preserve x the cosine distance
        # between its mean-pooled states of the unmasked block and the trained encoder's of the masked one
        self.teacher, self.preserve = teacher, preserve
        # by name, not as a second submodule: that would save the head's weights twice
        self.head = next((n for n in ("cls", "lm_head") if hasattr(mlm, n)), None)
        self.nsp = hasattr(getattr(mlm, "cls", None), "seq_relationship")  # BertForPreTraining

    def forward(self, input_ids, attention_mask, labels=None, word_start=None, token_type_ids=None,
                next_sentence_label=None):
        from .data.mlm import IGNORE

        if labels is None:
            input_ids, labels = self.masker.mask(input_ids, attention_mask, word_start)
        sel = labels != IGNORE
        if self.head is None:  # a head we do not know: the model's own (full) forward
            scores = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits[sel]
            return PretrainingOutput(loss=F.cross_entropy(scores.float(), labels[sel]), logits=scores)
        pair = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # (DistilBERT takes none)
        hidden = self.mlm.base_model(input_ids=input_ids, attention_mask=attention_mask, **pair)
        head = getattr(self.mlm, self.head)
        scores = (head.predictions if self.nsp else head)(hidden[0][sel])
        loss = F.cross_entropy(scores.float(), labels[sel])
        if self.teacher is not None and self.training:
            loss = loss + self.preserve * self.drift(hidden[0], torch.where(sel, labels, input_ids), attention_mask,
                                                     pair)
        nsp_logits = None
        if self.nsp and next_sentence_label is not None:
            nsp_logits = head.seq_relationship(hidden[1])
            loss = loss + F.cross_entropy(nsp_logits.float(), next_sentence_label)
        return PretrainingOutput(loss=loss, logits=scores, nsp_logits=nsp_logits)

    def drift(self, hidden, original_ids, attention_mask, pair) -> torch.Tensor:
        """How far the encoder's sentence embeddings moved from the frozen original's (1 - cosine, batch mean)."""
        self.teacher.eval()  # the loop's model.train() reaches it too: no dropout in the reference
        with torch.no_grad():
            before = mean_pooled(self.teacher(input_ids=original_ids, attention_mask=attention_mask, **pair)[0],
                                 attention_mask)
        now = mean_pooled(hidden, attention_mask)
        return (1 - F.cosine_similarity(now.float(), before.float(), dim=-1)).mean()


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@dataclasses.dataclass
class PretrainingOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # scores of the predicted positions only
    nsp_logits: torch.Tensor | None = None


def make_evaluator(acc, heldout: dict, batch_size: int):
    keys = list(heldout)
    loader = acc.prepare(DataLoader(TensorDataset(*heldout.values()), batch_size=batch_size))
    return lambda model: mlm_metrics(acc, model, loader, keys)


@torch.no_grad()
def mlm_metrics(acc, net: PredictedOnly, loader, keys) -> dict:
    """Token-weighted held-out loss over the fixed masked positions, exp(loss), and top-1 accuracy;
    with segment pairs also the next-sentence accuracy."""
    from .data.mlm import IGNORE

    total = torch.zeros(5, dtype=torch.float64)  # loss sum, correct, predicted tokens, NSP correct, pairs
    for tensors in loader:
        batch = dict(zip(keys, tensors))
        with acc.autocast():  # the loop's precision, also for a model not (yet) prepared
            out = net(**batch)
        scores, labels, ids = out.logits.float(), batch["labels"], batch["input_ids"]
        sel = labels != IGNORE
        y, rows = labels[sel], sel.nonzero()[:, 0]

        def per_row(v):  # per example, so gather_for_metrics drops the padding duplicates of a last batch
            return torch.zeros(len(ids), device=v.device, dtype=torch.float64).index_add_(0, rows, v.double())

        nsp_right = torch.zeros(len(ids), device=ids.device, dtype=torch.float64)
        if out.nsp_logits is not None:
            nsp_right = (out.nsp_logits.argmax(-1) == batch["next_sentence_label"]).double()
        parts = acc.gather_for_metrics((per_row(F.cross_entropy(scores, y, reduction="none")),
                                        per_row((scores.argmax(-1) == y).float()), sel.sum(1).double(),
                                        nsp_right, torch.ones_like(nsp_right)))
        total += torch.stack([p.sum().cpu() for p in parts])
    loss = (total[0] / total[2].clamp(min=1)).item()
    m = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": (total[1] / total[2]).item(),
         "masked_tokens": int(total[2])}
    if "next_sentence_label" in keys:
        m["nsp_accuracy"] = (total[3] / total[4]).item()
    return m


def summary(m: dict) -> str:
    nsp = f", next-sentence accuracy {m['nsp_accuracy']:.4f}" if "nsp_accuracy" in m else ""
    probe = f", task probe macro-F1 {m['probe_macro_f1']:.4f}" if "probe_macro_f1" in m else ""
    return f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}, accuracy {m['accuracy']:.4f}{nsp}{probe}"
