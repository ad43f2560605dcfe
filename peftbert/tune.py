"""`peftbert tune`: task + model + method -> the shared loop -> artefacts the HF ecosystem reads."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .config import RunConfig, save_recipe
from .data.encode import EncodedTask, make_collate
from .data.tasks import load_task
from .methods import Context, get_method
from .metrics import classification_metrics, headline
from .models import arch_of, count_params, head_modules, load_classifier, load_tokenizer, resolve_model
from .runinfo import peak_memory, prepare_output, versions, write_json
from .train import Hooks, find_checkpoint, make_accelerator, plan_steps, train


def default_output(cfg: RunConfig, task_name: str) -> Path:
    model = Path(cfg.model).name or cfg.model
    return Path("runs") / f"{task_name.replace('@', '-')}-{cfg.method}-{model}-s{cfg.train.seed}"


def run_tune(cfg: RunConfig, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
             log=print) -> dict:
    method = get_method(cfg.method)
    # Everything a user can get wrong is checked before anything is written.
    task = load_task(cfg.data, cfg.train.seed)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    out = Path(cfg.output) if cfg.output else default_output(cfg, task.name)
    prepare_output(out, overwrite, resume)
    if resume:
        resume = str(find_checkpoint(resume, out))  # fail now, not after the model is loaded

    acc = make_accelerator(cfg.train, out, cpu=cpu)
    log = log if acc.is_main_process else (lambda *a, **k: None)
    for note in task.notes:
        log(f"note: {note}")
    log(f"task {task.name}: {len(task.train)} train / {len(task.validation)} validation / "
        f"{0 if task.test is None else len(task.test)} test, labels {task.label_names}")

    model = load_classifier(model_path, task.id2label)
    arch = arch_of(model.config)
    head = head_modules(model, arch)
    train_ds = EncodedTask(task.train, tokenizer, cfg.data.max_length)
    per_process_batches = max(1, -(-len(train_ds) // cfg.train.batch_size) // acc.num_processes)
    steps = plan_steps(per_process_batches, cfg.train)[1]  # the loop's own count, for schedules like AdaLoRA's
    ctx = Context(arch=arch, total_steps=steps, num_labels=len(task.label_names), head=head)
    model = method.apply(model, cfg.method_args, ctx)
    params = count_params(model, head)
    log(f"method {cfg.method}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
        f"({params['trainable_percent']:.3f}%), precision {acc.mixed_precision}")

    collate = make_collate(tokenizer)
    val_loader = acc.prepare(DataLoader(EncodedTask(task.validation, tokenizer, cfg.data.max_length),
                                        batch_size=cfg.train.eval_batch_size, collate_fn=collate))

    def evaluate(m, loader=val_loader):
        return predict_metrics(acc, m, loader, task.label_names)

    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(cfg, out / "recipe.yaml")
    result = train(model, train_ds, collate, cfg.train, accelerator=acc, evaluate=evaluate, out_dir=out,
                   hooks=Hooks(on_optimizer_step=method.on_optimizer_step), resume=resume, describe=cfg.method)

    model = acc.unwrap_model(model) if hasattr(acc, "unwrap_model") else model
    model.eval()
    validation = evaluate(model)
    test = None
    if task.test is not None and len(task.test):
        test_loader = acc.prepare(DataLoader(EncodedTask(task.test, tokenizer, cfg.data.max_length),
                                             batch_size=cfg.train.eval_batch_size, collate_fn=collate))
        test = evaluate(model, test_loader)

    metrics = {
        "method": cfg.method, "model": cfg.model, "model_path": model_path, "task": task.name,
        "task_source": task.source, "seed": cfg.train.seed, "label_names": task.label_names,
        **params, "validation": validation, "test": test,
        "best_step": result.best_step, "steps": result.steps, "epochs": round(result.epochs_run, 3),
        "stopped_early": result.stopped_early, "train_seconds": round(result.train_seconds, 2),
        "eval_seconds": round(result.eval_seconds, 2),
        "train_samples_per_second": round(result.samples_seen / max(result.train_seconds, 1e-9), 2),
        "precision": acc.mixed_precision, "num_processes": acc.num_processes, "device": str(acc.device),
        **peak_memory(), "versions": versions(),
    }
    if method.summary:
        metrics.update(method.summary(model))
    acc.wait_for_everyone()
    if acc.is_main_process:
        model.save_pretrained(out)  # PeftModel -> adapter_config.json + adapter_model.safetensors (incl. head)
        tokenizer.save_pretrained(out)
        write_json(out / "metrics.json", metrics)  # written last: its presence marks a finished run
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
