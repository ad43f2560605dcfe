"""`peftbert tune`: task + model + method -> the shared loop -> artefacts the HF ecosystem reads."""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from .config import SELECTION_METRICS, RunConfig, build_config, save_recipe
from .data.encode import EncodedTask
from .data.packing import PackedCollator, packed_forward, packing_problem
from .data.tasks import load_task
from .methods import Context, get_method, method_configs
from .metrics import classification_metrics, headline
from .models import arch_of, count_params, head_modules, load_classifier, load_tokenizer, resolve_model
from .runinfo import main_process_log, peak_memory, prepare_output, save_run, versions
from .train import Hooks, checkpoint_precision, find_checkpoint, make_accelerator, precision_note, train


def tune_config(recipe: str | None = None, values: dict | None = None, budget: str | None = None) -> RunConfig:
    """A validated RunConfig from the settings a user gave (flags, --set); the recipes decide the rest.

    With `budget`, the method's size knob is set so it trains about that many parameters outside the head.
    """
    cfg = build_config(recipe, values or {}, method_configs())
    if budget is not None:
        from .methods.budget import apply_budget
        cfg = apply_budget(cfg, budget)
    return cfg


def check_method(cfg: RunConfig, model_path: str, num_labels: int) -> None:
    """The method's settings against this model's modules, on a weightless copy (methods/budget.dry_apply)."""
    from transformers import AutoConfig

    from .methods.budget import dry_apply

    model_config = AutoConfig.from_pretrained(model_path, num_labels=num_labels)
    dry_apply(get_method(cfg.method), cfg.method_args, model_config, arch_of(model_config))


def preflight(cfg: RunConfig):
    """Everything a user can get wrong in a run (data, model, tokenizer, the method on this model), checked
    before anything is written: (task, model path, tokenizer)."""
    task = load_task(cfg.data, cfg.train.seed)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    check_method(cfg, model_path, len(task.label_names))
    return task, model_path, tokenizer


def default_output(cfg: RunConfig, task_name: str) -> Path:
    model = Path(cfg.model).name or cfg.model
    return Path("runs") / f"{task_name.replace('@', '-')}-{cfg.method}-{model}-s{cfg.train.seed}"


def run_tune(cfg: RunConfig, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
             log=print, on_evaluate=None, score_test: bool = True, save_weights: bool = True) -> dict:
    """One tune run. `search` runs trials with `on_evaluate` (a Hooks.on_evaluate: reports, may stop the run),
    without the test set (`score_test=False`: selection sees validation only) and without weights."""
    method = get_method(cfg.method)
    task, model_path, tokenizer = preflight(cfg)  # before --overwrite removes an earlier run
    out = Path(cfg.output) if cfg.output else default_output(cfg, task.name)
    prepare_output(out, overwrite, resume)
    if resume:
        resume = str(find_checkpoint(resume, out))  # fail now, not after the model is loaded

    acc = make_accelerator(cfg.train, out, cpu=cpu, precision=checkpoint_precision(resume))
    log = main_process_log(acc, log)
    for note in task.notes:
        log(f"note: {note}")
    log(f"task {task.name}: {len(task.train)} train / {len(task.validation)} validation / "
        f"{0 if task.test is None else len(task.test)} test, labels {task.label_names}")

    model = load_classifier(model_path, task.id2label)
    arch = arch_of(model.config)
    head = head_modules(model, arch)
    model = method.apply(model, cfg.method_args, Context(arch, num_labels=len(task.label_names), head=head))
    params = count_params(model, head)
    log(f"method {cfg.method}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
        f"({params['trainable_percent']:.3f}%), precision {precision_note(acc, cfg.train.precision)}")

    collate = DataCollatorWithPadding(tokenizer)
    train_collate, forward = collate, None
    if cfg.train.batching == "packed":
        problem = packing_problem(model)
        if problem:  # the same random batches, padded
            log(f"note: random batches, padded, not packed: {problem}; --batching grouped is faster, with "
                "texts of one length per batch")
        else:
            train_collate = PackedCollator.for_model(model, tokenizer.pad_token_id)
            forward = packed_forward(model)

    def eval_loader(frame):
        return acc.prepare(DataLoader(EncodedTask(frame, tokenizer, cfg.data.max_length, by_length=True),
                                      batch_size=cfg.train.eval_batch_size, collate_fn=collate))

    def evaluate(m, loader=eval_loader(task.validation)):
        return predict_metrics(acc, m, loader, task.label_names)

    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:  # a resume writes it once the checkpoint has accepted these settings (train checks them)
            save_recipe(cfg, out / "recipe.yaml")
    hooks = Hooks(on_optimizer_step=method.on_optimizer_step, on_train_begin=method.on_train_begin and
                  functools.partial(method.on_train_begin, cfg=cfg.method_args), on_evaluate=on_evaluate)
    result = train(model, EncodedTask(task.train, tokenizer, cfg.data.max_length), train_collate, cfg.train,
                   accelerator=acc, evaluate=evaluate, out_dir=out, hooks=hooks, resume=resume,
                   greater_is_better=SELECTION_METRICS[cfg.train.metric], describe=cfg.method, head=head,
                   forward=forward)
    if resume and acc.is_main_process:
        save_recipe(cfg, out / "recipe.yaml")

    # The final scores in fp32, without the loop's autocast: the saved model is served in fp32 (predict, export,
    # pipeline), so metrics.json states what it will answer (bf16 scores can differ on a borderline row).
    model = acc.unwrap_model(model, keep_fp32_wrapper=False)
    model.eval()
    validation = evaluate(model)
    has_test = score_test and task.test is not None and len(task.test)
    test = evaluate(model, eval_loader(task.test)) if has_test else None
    metrics = {
        "method": cfg.method, "model": cfg.model, "model_path": model_path, "task": task.name,
        "task_source": task.source, "seed": cfg.train.seed, "label_names": task.label_names,
        **params, "kept_params": params["trainable_params"], "validation": validation, "test": test,
        "best_step": result.best_step, "steps": result.steps, "epochs": round(result.epochs_run, 3),
        "stopped_early": result.stopped_early, "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(result.eval_seconds, 2),
        "train_samples_per_second": round(result.samples_seen / max(result.train_seconds, 1e-9), 2),
        "precision": acc.mixed_precision, "precision_choice": precision_note(acc, cfg.train.precision),
        "num_processes": acc.num_processes, "device": str(acc.device),
        **peak_memory(), "versions": versions(),
    }
    if method.summary:
        metrics.update(method.summary(model))
    # PeftModel -> adapter_config.json + adapter_model.safetensors (head included); full -> a checkpoint
    save_run(acc, out, model, tokenizer, metrics, weights=save_weights)
    log(f"validation: {headline(validation)}")
    if test:
        log(f"test:       {headline(test)}")
    log(f"wrote {out}")
    return metrics


@torch.no_grad()
def predict_metrics(acc, model, loader, label_names) -> dict:
    preds, labels = [], []
    for batch in loader:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        p, y = acc.gather_for_metrics((logits.argmax(-1), batch["labels"]))  # once per example, across processes
        preds.append(p.cpu())
        labels.append(y.cpu())
    return classification_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy(), label_names)
