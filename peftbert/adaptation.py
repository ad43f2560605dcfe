"""`peftbert adapt`: continued masked-LM pretraining on a domain's text (DAPT) or a task's text (TAPT).

corpus -> held-out split by document -> packed blocks -> the shared loop (masks drawn afresh per batch)
-> a plain HF masked-LM checkpoint that `peftbert tune --model DIR` loads, and metrics.json with the
held-out loss / perplexity / masked-token accuracy before and after, on the same fixed masks.

The config (AdaptConfig, config.py) shares tune's base: TrainArgs, recipe loading and writing, the one loop,
the run writer, and the method registry's LoRA. A domain (recipes/domains/<name>.yaml) names corpus files.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from .config import MLM_METRICS, RECIPES_DIR, AdaptConfig, DataArgs, load_yaml, save_recipe
from .errors import UserError


def load_domain(name: str) -> dict:
    p = Path(name) if name.endswith((".yaml", ".yml")) else RECIPES_DIR / "domains" / f"{name}.yaml"
    if not p.is_file():
        known = sorted(q.stem for q in (RECIPES_DIR / "domains").glob("*.yaml"))
        raise UserError(f"unknown domain {name!r}; known: {', '.join(known) or 'none'} (or pass a YAML file)")
    d = load_yaml(p)
    if not isinstance(d.get("corpus"), list) or not d["corpus"]:
        raise UserError(f"domain recipe {p} needs a non-empty 'corpus:' list of files")
    return d


def collect_sources(cfg: AdaptConfig):
    from .data.corpus import load_corpus, task_source
    from .data.tasks import data_dir

    ddir = data_dir(DataArgs(data_dir=cfg.data_dir))
    specs = list(cfg.corpus)
    if cfg.domain:
        specs = [str(s) for s in load_domain(cfg.domain)["corpus"]] + specs
        if ddir is None:
            raise UserError(f"domain {cfg.domain!r} reads its corpus from the data directory: "
                            "set PEFTBERT_DATA_DIR or pass --data-dir")
    sources = load_corpus(specs, data_dir=ddir, text_column=cfg.text_column)
    if cfg.task:
        sources.append(task_source(cfg.task, cfg.data_dir, cfg.train.seed))
    return sources


# ---------------------------------------------------------------- model
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


def apply_lora(model, cfg: AdaptConfig):
    """The registry's LoRA on the bare encoder (no task head); the MLM head trains fully, in place, not as a
    peft copy: a copy would untie its decoder from the input embeddings."""
    from .methods import Context, get_method
    from .models import arch_of

    head = set(head_names(model))
    model = get_method("lora").apply(model, cfg.lora, Context(arch_of(model.config), task_type=None))
    for n, p in model.get_base_model().named_parameters():
        if n in head:
            p.requires_grad = True
    return model


def check_lora_targets(model, cfg: AdaptConfig) -> None:
    """Every LoRA target names a module of the model (as peft matches them: the name or a dotted suffix)."""
    from .methods.lora import resolve_targets
    from .models import arch_of

    names = [n for n, _ in model.named_modules()]
    targets = resolve_targets(cfg.lora.target_modules, arch_of(model.config))
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise UserError(f"lora.target_modules {', '.join(missing)}: no such module in this "
                        f"{model.config.model_type} model; use qv, all-linear or module names (--lora.target_modules)")


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

    def __init__(self, mlm, masker=None):
        super().__init__()
        self.mlm, self.masker = mlm, masker
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
        nsp_logits = None
        if self.nsp and next_sentence_label is not None:
            nsp_logits = head.seq_relationship(hidden[1])
            loss = loss + F.cross_entropy(nsp_logits.float(), next_sentence_label)
        return PretrainingOutput(loss=loss, logits=scores, nsp_logits=nsp_logits)


@dataclasses.dataclass
class PretrainingOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # scores of the predicted positions only
    nsp_logits: torch.Tensor | None = None


# ---------------------------------------------------------------- evaluation
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
    return f"loss {m['loss']:.4f}, perplexity {m['perplexity']:.2f}, accuracy {m['accuracy']:.4f}{nsp}"


# ---------------------------------------------------------------- the command
def default_output(cfg: AdaptConfig) -> Path:
    what = cfg.domain or (cfg.task and cfg.task.replace("@", "-")) or Path(cfg.corpus[0]).name.split(".")[0]
    model = Path(cfg.model).name or cfg.model
    return Path("runs") / f"adapt-{Path(what).stem}-{cfg.adapt.method}-{model}-s{cfg.train.seed}"


def load_blocks(cfg: AdaptConfig, sources, tokenizer):
    """(train blocks, held-out blocks): the sources split by document, tokenised and packed."""
    from .data.corpus import split_documents
    from .data.mlm import Blocks, tokenize_documents
    from .data.nsp import Pairs

    a = cfg.adapt
    train_docs, heldout_docs = split_documents(sources, a.heldout_fraction, cfg.train.seed)

    def pack(docs, max_tokens):
        stream = tokenize_documents(docs, tokenizer, words=a.whole_word_mask, max_tokens=max_tokens)
        if a.nsp:
            return Pairs(stream, tokenizer, a.block_size, cfg.train.seed)
        return Blocks(stream, tokenizer, a.block_size)

    train_blocks, heldout_blocks = pack(train_docs, a.max_tokens), pack(heldout_docs, a.max_heldout_tokens)
    if not len(train_blocks) or not len(heldout_blocks):
        raise UserError("the corpus has no tokens to train or evaluate on (empty text?)")
    return train_blocks, heldout_blocks


def warm_up_head(net, model, blocks, collate, cfg: AdaptConfig, acc, heldout):
    """Train only the MLM head (encoder and tied embeddings frozen) for adapt.head_warmup_steps steps."""
    from .train import train

    set_trainable(model, head_names(model))
    warm = dataclasses.replace(cfg.train, max_steps=cfg.adapt.head_warmup_steps, lr=cfg.adapt.head_warmup_lr,
                               eval_every=None, save_every=None, patience=None)
    result = train(net, blocks, collate.batch, warm, accelerator=acc, out_dir=None,
                   evaluate=make_evaluator(acc, heldout, cfg.train.eval_batch_size),
                   greater_is_better=MLM_METRICS[cfg.train.metric], describe="head warm-up")
    acc.unwrap_model(net, keep_fp32_wrapper=False)
    set_trainable(model, None)
    return result


def run_adapt(cfg: AdaptConfig, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
              log=print) -> dict:
    from .data.mlm import MLMCollator
    from .models import count_params, load_tokenizer, resolve_model
    from .runinfo import main_process_log, peak_memory, prepare_output, save_run, versions
    from .train import checkpoint_precision, find_checkpoint, make_accelerator, precision_note, train

    a, t = cfg.adapt, cfg.train
    # Everything a user can get wrong is checked before anything is written.
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    sources = collect_sources(cfg)
    torch.manual_seed(t.seed)  # a new head is drawn at load time: same seed, same head, same "before"
    model, new_head = load_mlm(model_path, nsp=a.nsp)
    limit = min(model.config.max_position_embeddings, tokenizer.model_max_length)
    if a.block_size > limit:
        raise UserError(f"adapt.block_size {a.block_size} exceeds the model's {limit} positions")
    if a.method == "lora":
        check_lora_targets(model, cfg)
    train_blocks, heldout_blocks = load_blocks(cfg, sources, tokenizer)
    out = Path(cfg.output) if cfg.output else default_output(cfg)
    prepare_output(out, overwrite, resume)
    if resume:
        resume = str(find_checkpoint(resume, out))  # fail now, not after the corpus is tokenised
    precision = checkpoint_precision(resume)  # a resumed run keeps the precision it started with

    acc = make_accelerator(t, out, cpu=cpu, precision=precision)
    log = main_process_log(acc, log)
    for s in sources:
        st = s.stats()
        log(f"source {s.name}: {st['documents']:,} documents ({st['heldout_documents']} held out), "
            f"{st['lines']:,} lines")
    unit = "segment pairs" if a.nsp else "blocks"
    log(f"train: {len(train_blocks):,} {unit} of {a.block_size} ({train_blocks.n_tokens:,} tokens); held out: "
        f"{len(heldout_blocks):,} {unit} ({heldout_blocks.n_tokens:,} tokens)")
    if new_head:
        heads = "pre-training heads (masked LM, next sentence)" if a.nsp else "masked-LM head"
        log(f"the checkpoint lacks {heads}: initialised them, the decoder tied to the input embeddings")
    collate = MLMCollator(tokenizer, a.mlm_probability, a.whole_word_mask)
    collate.shard = (acc.process_index, acc.num_processes)  # masks as one process would draw them
    heldout = collate.fixed(heldout_blocks, t.seed)
    net = PredictedOnly(model.to(acc.device), masker=collate).eval()
    before = make_evaluator(acc, heldout, t.eval_batch_size)(net)
    log(f"held-out before: {summary(before)}")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # a resume writes it once the checkpoint has accepted these settings (train checks them)
            save_recipe(cfg, out / "recipe.yaml")

    results = []
    if a.head_warmup_steps and resume:
        log("resuming: the head warm-up is already in the checkpoint, skipped")
    elif a.head_warmup_steps:
        results.append(warm_up_head(net, model, train_blocks, collate, cfg, acc, heldout))
        acc = make_accelerator(t, out, cpu=cpu, precision=acc.mixed_precision)  # fresh: the loop prepares again
    if a.method == "lora":
        model = apply_lora(model, cfg)  # LoRA layers go into the model in place; `net` runs them
    params = count_params(model)
    log(f"method {a.method}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
        f"({params['trainable_percent']:.3f}%), precision {precision_note(acc, t.precision)}")
    evaluate = make_evaluator(acc, heldout, t.eval_batch_size)
    results.append(train(net, train_blocks, collate.batch, t, accelerator=acc, evaluate=evaluate, out_dir=out,
                         resume=resume, greater_is_better=MLM_METRICS[t.metric], describe=f"adapt-{a.method}"))
    if resume and acc.is_main_process:
        save_recipe(cfg, out / "recipe.yaml")

    acc.unwrap_model(net, keep_fp32_wrapper=False)  # (the loop restored the best weights into it)
    if a.method == "lora":
        model = model.merge_and_unload()  # a plain checkpoint: nothing downstream needs peft
    model.eval()
    after = evaluate(PredictedOnly(model))
    res, seconds = results[-1], sum(r.train_seconds for r in results)
    blocks_seen = sum(r.samples_seen for r in results)
    if resume and a.head_warmup_steps:  # the warm-up ran before the checkpoint: count its blocks
        blocks_seen += a.head_warmup_steps * t.batch_size * t.grad_accum * acc.num_processes
    tokens = round(blocks_seen * train_blocks.n_tokens / len(train_blocks))
    pooler = carried_pooler(model, model_path)
    metrics = {
        "model": cfg.model, "model_path": model_path, "method": a.method, "domain": cfg.domain, "task": cfg.task,
        "sources": [s.stats() for s in sources], "head_initialised": new_head,
        "head_warmup_steps": a.head_warmup_steps, "block_size": a.block_size, "mlm_probability": a.mlm_probability,
        "whole_word_mask": a.whole_word_mask, "nsp": a.nsp, "seed": t.seed,
        "train_blocks": len(train_blocks), "train_tokens": train_blocks.n_tokens,
        "heldout_blocks": len(heldout_blocks), "heldout_tokens": heldout_blocks.n_tokens,
        "heldout_before": before, "heldout_after": after, "metric": t.metric,
        # with a new head, `before` scores a random head; after the warm-up it scores the unchanged encoder,
        # which is the fair baseline for what adapting the encoder bought
        "heldout_after_head_warmup": results[0].best_eval if len(results) > 1 else None,
        "best_step": res.best_step, "steps": res.steps, "epochs": round(res.epochs_run, 3),
        "stopped_early": res.stopped_early, "tokens_seen": tokens, "train_seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),  # training only: the loop times evals apart
        "eval_seconds": round(sum(r.eval_seconds for r in results), 2), **params,
        "precision": acc.mixed_precision, "precision_choice": precision_note(acc, t.precision),
        "num_processes": acc.num_processes, "device": str(acc.device),
        **peak_memory(), "versions": versions(), "carried_over": sorted(pooler),
    }
    save_run(acc, out, model, tokenizer, metrics, extra=lambda out: add_weights(out, pooler))
    log(f"held-out after:  {summary(after)}")
    log(f"wrote {out} (load it with `peftbert tune --model {out}`)")
    return metrics
