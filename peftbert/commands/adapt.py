"""`peftbert adapt`: continued masked-LM pretraining on a domain's text (DAPT) or a task's text (TAPT).

corpus -> held-out split by document -> packed blocks -> the shared loop (masks drawn afresh per batch)
-> a plain HF masked-LM checkpoint that `peftbert tune --model DIR` loads, and metrics.json with the
held-out loss / perplexity / masked-token accuracy before and after, on the same fixed masks.

The config (AdaptConfig, config.py) shares tune's base: TrainArgs, recipe loading and writing, the one loop,
the run writer, and the method registry's LoRA. A domain (recipes/domains/<name>.yaml) names corpus files.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..config import MLM_METRICS, RECIPES_DIR, AdaptConfig, DataArgs, load_yaml
from ..data.batching import TrainBatches
from ..errors import UserError
from ..masked_lm import (PredictedOnly, add_weights, carried_pooler, head_names, load_mlm, make_evaluator,
                         set_trainable, summary)
from ..probe import TaskProbe
from .base import Run


def load_domain(name: str) -> dict:
    p = Path(name) if name.endswith((".yaml", ".yml")) else RECIPES_DIR / "domains" / f"{name}.yaml"
    if not p.is_file():
        known = sorted(q.stem for q in (RECIPES_DIR / "domains").glob("*.yaml"))
        raise UserError(f"unknown domain {name!r}; known: {', '.join(known) or 'none'} (or pass a YAML file)")
    d = load_yaml(p)
    if not isinstance(d.get("corpus"), list) or not d["corpus"]:
        raise UserError(f"domain recipe {p} needs a non-empty 'corpus:' list of files")
    return d


def collect_sources(cfg: AdaptConfig, cpu: bool = False):
    from ..data.corpus import load_corpus, task_source
    from ..data.tasks import data_dir

    ddir = data_dir(DataArgs(data_dir=cfg.data_dir))
    specs = list(cfg.corpus)
    if cfg.domain:
        specs = [str(s) for s in load_domain(cfg.domain)["corpus"]] + specs
        if ddir is None:
            raise UserError(f"domain {cfg.domain!r} reads its corpus from the data directory: "
                            "set PEFTBERT_DATA_DIR or pass --data-dir")
    sources = load_corpus(specs, data_dir=ddir, text_column=cfg.text_column)
    if cfg.task:
        task = task_source(cfg.task, cfg.data_dir, cfg.train.seed)
        if cfg.adapt.select:
            sources = [select_near(sources, task, cfg, cpu)]
        sources.append(task)
    return sources


def select_near(sources, task, cfg: AdaptConfig, cpu: bool = False):
    """The adapt.select corpus lines nearest the task's training texts, embedded by the model being adapted, on
    this process's device and under bf16 autocast where the run trains in bf16 (else fp32): the whole corpus
    goes through it. Every process resolves the same precision (agreed_precision), so all pick the same lines."""
    from accelerate import PartialState
    from transformers import AutoModel

    from ..data.select import nearest_lines
    from ..models import load_tokenizer, resolve_model
    from ..train import agreed_precision

    path = resolve_model(cfg.model)
    device = PartialState(cpu=cpu).device
    model = AutoModel.from_pretrained(path).eval().to(device)
    texts = [line for doc in task.documents for line in doc]
    bf16 = agreed_precision(cfg.train.precision, device.type == "cpu") == "bf16"
    return nearest_lines(sources, texts, cfg.adapt.select, model, load_tokenizer(path), bf16=bf16)


def evaluator(acc, heldout: dict, batch_size: int, probe=None):
    """Held-out masked-LM scores, and with a TaskProbe the task's validation score of the encoder's embeddings."""
    mlm = make_evaluator(acc, heldout, batch_size)
    if not probe:
        return mlm
    return lambda net: {**mlm(net), **probe(acc.unwrap_model(net).mlm.base_model)}


def frozen_copy(module):
    import copy

    teacher = copy.deepcopy(module).eval()
    teacher.requires_grad_(False)
    return teacher


def decontaminate_sources(cfg: AdaptConfig, sources) -> dict:
    """Drop text repeating the validation/test text of --task and of adapt.decontaminate's tasks (in place)."""
    from ..data.decontaminate import decontaminate, held_out_texts

    tasks = list(dict.fromkeys(([cfg.task] if cfg.task else []) + list(cfg.adapt.decontaminate or [])))
    texts = set().union(*(held_out_texts(t, cfg.data_dir, cfg.train.seed) for t in tasks)) if tasks else set()
    dropped = decontaminate(sources, texts)
    empty = [s.path for s in sources if not s.documents]
    if empty:
        raise UserError(f"corpus source {empty[0]} holds only the tasks' validation/test text; drop it")
    return {"tasks": tasks, **dropped.as_dict()}


def starting_encoder(model, cfg: AdaptConfig) -> dict | None:
    """With the task probe choosing the weights kept (train.keep best), a CPU copy of the encoder as it starts:
    it competes with every evaluation, so adapting cannot hand back an encoder the task's validation split
    scores below the one it started from."""
    if not (cfg.train.metric.startswith("probe_") and cfg.train.keep == "best"):
        return None
    return {k: v.detach().to("cpu", copy=True) for k, v in model.base_model.state_dict().items()}


def keep_start_unless_beaten(model, start: dict | None, result, before: dict, metric: str, log) -> bool:
    """Put the starting encoder back when no evaluation beat its score; whether it was put back."""
    from ..train import better

    first = before[metric]
    if start is None or (result.best_metric is not None and better(result.best_metric, first, MLM_METRICS[metric])):
        return False
    model.base_model.load_state_dict(start)  # (the tied decoder too: it is the encoder's input embeddings)
    log(f"no evaluation beat the starting encoder's {metric} ({first:.4f}): the output holds the starting "
        "encoder's weights (the masked-LM head's transform as trained)")
    return True


# ---------------------------------------------------------------- model
def apply_lora(model, cfg: AdaptConfig):
    """The registry's LoRA on the bare encoder (no task head); the MLM head trains fully, in place, not as a
    peft copy: a copy would untie its decoder from the input embeddings."""
    from ..methods import Context, get_method
    from ..models import arch_of

    head = set(head_names(model))
    model = get_method("lora").apply(model, cfg.lora, Context(arch_of(model.config), task_type=None))
    for n, p in model.get_base_model().named_parameters():
        if n in head:
            p.requires_grad = True
    return model


def check_lora_targets(model, cfg: AdaptConfig) -> None:
    """Every LoRA target names a module of the model (as peft matches them: the name or a dotted suffix)."""
    from ..methods.lora import resolve_targets
    from ..models import arch_of

    names = [n for n, _ in model.named_modules()]
    targets = resolve_targets(cfg.lora.target_modules, arch_of(model.config))
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise UserError(f"lora.target_modules {', '.join(missing)}: no such module in this "
                        f"{model.config.model_type} model; use qv, all-linear or module names (--lora.target_modules)")


# ---------------------------------------------------------------- the command
def default_output(cfg: AdaptConfig) -> Path:
    what = cfg.domain or (cfg.task and cfg.task.replace("@", "-")) or Path(cfg.corpus[0]).name.split(".")[0]
    model = Path(cfg.model).name or cfg.model
    return Path("runs") / f"adapt-{Path(what).stem}-{cfg.adapt.method}-{model}-s{cfg.train.seed}"


def load_blocks(cfg: AdaptConfig, sources, tokenizer):
    """(train blocks, held-out blocks): the sources split by document, tokenised and packed."""
    from ..data.corpus import split_documents
    from ..data.mlm import Blocks, tokenize_documents
    from ..data.nsp import Pairs

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
    from ..train import train

    set_trainable(model, head_names(model))
    # a frozen encoder scores the same task probe throughout: the warm-up is chosen on the masked-LM loss then
    metric = "loss" if cfg.train.metric.startswith("probe_") else cfg.train.metric
    warm = dataclasses.replace(cfg.train, max_steps=cfg.adapt.head_warmup_steps, lr=cfg.adapt.head_warmup_lr,
                               eval_every=None, save_every=None, patience=None, metric=metric)
    result = train(net, TrainBatches(blocks, collate.batch), warm, accelerator=acc, out_dir=None,
                   evaluate=make_evaluator(acc, heldout, cfg.train.eval_batch_size),
                   greater_is_better=MLM_METRICS[metric], describe="head warm-up")
    acc.unwrap_model(net, keep_fp32_wrapper=False)
    set_trainable(model, None)
    return result


def run_adapt(cfg: AdaptConfig, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
              log=print) -> dict:
    from ..data.mlm import MLMCollator
    from ..models import count_params, load_tokenizer, resolve_model

    a, t = cfg.adapt, cfg.train
    # Everything a user can get wrong is checked before anything is written.
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    sources = collect_sources(cfg, cpu)
    cleaned = decontaminate_sources(cfg, sources)
    probe = a.probed and TaskProbe(a.probed, cfg.data_dir, t.seed, a.probe_rows, tokenizer, a.block_size)
    torch.manual_seed(t.seed)  # a new head is drawn at load time: same seed, same head, same "before"
    model, new_head = load_mlm(model_path, nsp=a.nsp)
    limit = min(model.config.max_position_embeddings, tokenizer.model_max_length)
    if a.block_size > limit:
        raise UserError(f"adapt.block_size {a.block_size} exceeds the model's {limit} positions")
    if a.method == "lora":
        check_lora_targets(model, cfg)
    train_blocks, heldout_blocks = load_blocks(cfg, sources, tokenizer)
    out = Path(cfg.output) if cfg.output else default_output(cfg)
    run = Run(cfg, out, overwrite=overwrite, resume=resume, cpu=cpu, log=log)  # the checkpoint found before tokenising
    for s in sources:
        st = s.stats()
        run.log(f"source {s.name}: {st['documents']:,} documents ({st['heldout_documents']} held out), "
                f"{st['lines']:,} lines")
    if cleaned["tasks"]:
        run.log(f"decontaminated against {', '.join(cleaned['tasks'])}' validation/test text: dropped "
                f"{cleaned['dropped_lines']} lines and {cleaned['dropped_sentences']} sentences")
    unit = "segment pairs" if a.nsp else "blocks"
    run.log(f"train: {len(train_blocks):,} {unit} of {a.block_size} ({train_blocks.n_tokens:,} tokens); held out: "
            f"{len(heldout_blocks):,} {unit} ({heldout_blocks.n_tokens:,} tokens)")
    if new_head:
        heads = "pre-training heads (masked LM, next sentence)" if a.nsp else "masked-LM head"
        run.log(f"the checkpoint lacks {heads}: initialised them, the decoder tied to the input embeddings")

    # the held-out score before, on masks fixed once
    collate = MLMCollator(tokenizer, a.mlm_probability, a.whole_word_mask)
    collate.shard = (run.acc.process_index, run.acc.num_processes)  # masks as one process would draw them
    heldout = collate.fixed(heldout_blocks, t.seed)
    net = PredictedOnly(model.to(run.acc.device), masker=collate).eval()
    before = evaluator(run.acc, heldout, t.eval_batch_size, probe)(net)
    run.log(f"held-out before: {summary(before)}")
    run.write_recipe()

    # train: the head alone first where asked, then the encoder (fully or through LoRA)
    results = []
    if a.head_warmup_steps and run.resume:
        run.log("resuming: the head warm-up is already in the checkpoint, skipped")
    elif a.head_warmup_steps:
        run.log(f"first {a.head_warmup_steps} head warm-up steps (encoder frozen, lr {a.head_warmup_lr}), "
                "then the encoder's own steps")
        results.append(warm_up_head(net, model, train_blocks, collate, cfg, run.acc, heldout))
        run.fresh_accelerator()
    start = starting_encoder(model, cfg)
    if a.preserve:  # the encoder as it was, frozen: what the preservation term measures drift from
        net.teacher, net.preserve = frozen_copy(model.base_model), a.preserve
    if a.method == "lora":
        model = apply_lora(model, cfg)  # LoRA layers go into the model in place; `net` runs them
    params = count_params(model)
    run.log(f"method {a.method}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
            f"({params['trainable_percent']:.3f}%), precision {run.precision}")
    evaluate = evaluator(run.acc, heldout, t.eval_batch_size, probe)
    results.append(run.train(net, TrainBatches(train_blocks, collate.batch), evaluate=evaluate,
                             greater_is_better=MLM_METRICS[t.metric], describe=f"adapt-{a.method}"))

    # the held-out score after, and the checkpoint `tune --model` loads
    run.acc.unwrap_model(net, keep_fp32_wrapper=False)  # (the loop restored the best weights into it)
    if a.method == "lora":
        model = model.merge_and_unload()  # a plain checkpoint: nothing downstream needs peft
    kept_start = keep_start_unless_beaten(model, start, results[-1], before, t.metric, run.log)
    model.eval()
    after = evaluate(PredictedOnly(model))
    blocks_seen = sum(r.samples_seen for r in results)
    if run.resume and a.head_warmup_steps:  # the warm-up ran before the checkpoint: count its blocks
        blocks_seen += a.head_warmup_steps * t.batch_size * t.grad_accum * run.acc.num_processes
    tokens = round(blocks_seen * train_blocks.n_tokens / len(train_blocks))
    seconds = sum(r.train_seconds for r in results)
    pooler = carried_pooler(model, model_path)
    metrics = {
        "model": cfg.model, "model_path": model_path, "method": a.method, "domain": cfg.domain, "task": cfg.task,
        "sources": [s.stats() for s in sources], "decontaminated": cleaned, "head_initialised": new_head,
        "head_warmup_steps": a.head_warmup_steps, "block_size": a.block_size, "mlm_probability": a.mlm_probability,
        "whole_word_mask": a.whole_word_mask, "nsp": a.nsp, "preserve": a.preserve, "seed": t.seed,
        "train_blocks": len(train_blocks), "train_tokens": train_blocks.n_tokens,
        "heldout_blocks": len(heldout_blocks), "heldout_tokens": heldout_blocks.n_tokens,
        "heldout_before": before, "heldout_after": after, "metric": t.metric, "kept_start": kept_start,
        # with a new head, `before` scores a random head; after the warm-up it scores the unchanged encoder,
        # which is the fair baseline for what adapting the encoder bought
        "heldout_after_head_warmup": results[0].best_eval if len(results) > 1 else None,
        **run.loop_metrics(results), **({"best_step": None} if kept_start else {}), "tokens_seen": tokens,
        "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),  # training only: the loop times evals apart
        **params, **run.machine_metrics(), "carried_over": sorted(pooler),
    }
    run.save(model, tokenizer, metrics, extra=lambda out: add_weights(out, pooler))
    run.log(f"held-out after:  {summary(after)}")
    run.log(f"wrote {run.out} (load it with `peftbert tune --model {run.out}`)")
    return metrics
