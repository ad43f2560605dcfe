"""`peftbert tune`: task + model + method -> the shared loop -> artefacts the HF ecosystem reads."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from .. import wise
from ..config import SELECTION_METRICS, TuneConfig, build_config, load_yaml, tune_recipe
from ..data.encode import EncodedTask
from ..data.packing import classifier_batches
from ..data.tasks import load_task
from ..errors import UserError
from ..methods import Context, get_method, method_configs
from ..metrics import classification_metrics, headline
from ..models import arch_of, count_params, head_modules, load_classifier, load_tokenizer, resolve_model
from ..train import Hooks, plan_steps
from .base import Run


def tune_config(recipe: str | None = None, values: dict | None = None, budget: str | None = None) -> TuneConfig:
    """A validated TuneConfig from the settings a user gave (flags, --set); the recipes decide the rest.

    With `budget`, the method's size knob is set so it trains about that many parameters outside the head.
    """
    return check_temperature_used(unchecked_tune_config(recipe, values, budget), values)


def check_temperature_used(cfg: TuneConfig, values: dict | None) -> TuneConfig:
    """cfg, unless the user named a contrastive temperature for a run with no contrastive loss (silently unused)."""
    if "contrastive_temperature" in ((values or {}).get("train") or {}) and not cfg.train.contrastive:
        raise UserError("--contrastive-temperature sets the contrastive loss's temperature, and this run has no "
                        "contrastive loss: add --contrastive W (0 < W <= 1), or drop --contrastive-temperature")
    return cfg


def unchecked_tune_config(recipe: str | None, values: dict | None, budget: str | None) -> TuneConfig:
    """tune_config without check_temperature_used: sized_tune_config may yet switch to a recipe with a contrastive
    loss, where a named temperature is used."""
    cfg = build_config(recipe, values or {}, method_configs())
    if budget is not None:
        from ..methods.budget import apply_budget
        cfg = apply_budget(cfg, budget)
    given = (values or {}).get("train") or {}
    return wise_for_full(head_only(cfg, given), given)


def head_only(cfg: TuneConfig, given: dict) -> TuneConfig:
    """A method that fits the head alone (probe) trains no encoder: a recipe's contrastive term and head refit are
    turned off for it (the low-label recipe's suite runs the probe beside them); asked for by name, refused."""
    if not get_method(cfg.method).fit_head or not (cfg.train.contrastive or cfg.train.head_refit):
        return cfg
    asked = [k for k in ("contrastive", "contrastive_temperature", "head_refit") if given.get(k)]
    if asked:
        raise UserError(f"--method {cfg.method} fits the head alone and trains no encoder: drop "
                        f"{' and '.join('--' + k.replace('_', '-') for k in asked)}, or use a method that trains "
                        "(full, lora, ...)")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, contrastive=0.0, head_refit=False))


def wise_for_full(cfg: TuneConfig, given: dict) -> TuneConfig:
    """train.wise mixes full fine-tuning's weights with the start's (an adapter's or a probe's are not a share of
    the model's): for another method a recipe's value is dropped (the low-label suite runs the probe and LoRA beside
    the recipe); asked for by name, refused."""
    if cfg.method == "full" or cfg.train.wise == 1:
        return cfg
    if "wise" in given:
        raise UserError(f"--wise mixes full fine-tuning's weights with the starting model's, and --method "
                        f"{cfg.method} is not full fine-tuning: drop --wise, or use --method full")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, wise=1.0))


def check_method(cfg: TuneConfig, model_path: str, num_labels: int) -> None:
    """The method's settings against this model's modules, on a weightless copy (methods/budget.dry_apply)."""
    from transformers import AutoConfig

    from ..methods.budget import dry_apply

    model_config = AutoConfig.from_pretrained(model_path, num_labels=num_labels)
    dry_apply(get_method(cfg.method), cfg.method_args, model_config, arch_of(model_config))


def preflight(cfg: TuneConfig):
    """Everything a user can get wrong in a run (data, model, tokenizer, the method on this model), checked
    before anything is written: (task, model path, tokenizer)."""
    task = load_task(cfg.data, cfg.train.seed)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    check_method(cfg, model_path, len(task.label_names))
    return task, model_path, tokenizer


LOW_LABEL = "low-label"  # recipes/tune/low-label.yaml
PROBE_PER_CLASS = 8  # at most this many rows per class, plain `tune` runs the probe: above the recipe on the mean of
# two development sets at 8 per class, below it at 16 and 32 (experiments/low-label, tenth and eleventh sessions)
PROBE_USES = {"seed", "metric", "precision", "eval_batch_size", "report_to", "log_every"}  # of train.*: any other
# named setting (lr, patience, contrastive, ...) is one only training reads, so the switch keeps the recipe
FEW_STEPS = 100  # below this many optimizer steps, low-label runs at the presets collapsed (experiments/low-label)


def planned_steps(cfg: TuneConfig, rows: int) -> int:
    """The optimizer steps `rows` training rows give at the config's epochs (the loop's plan_steps, before
    min_steps or max_steps)."""
    epochs_only = dataclasses.replace(cfg.train, max_steps=None, min_steps=None)
    return plan_steps(math.ceil(rows / cfg.train.batch_size), epochs_only).total_steps


def few_steps(cfg: TuneConfig, rows: int) -> str | None:
    """A note when the settings give a classifier too few optimizer steps to learn (a small training set)."""
    t = cfg.train
    steps = planned_steps(cfg, rows)
    if t.max_steps or t.min_steps or steps >= FEW_STEPS:
        return None
    return (f"{rows} training rows give about {steps} optimizer steps, too few to train a classifier: "
            "`--recipe low-label` for tens of rows per class, `--method probe` for a handful, or --min-steps")


def sized_tune_config(recipe: str | None, values: dict, budget: str | None = None) -> tuple[TuneConfig, str | None]:
    """What `tune` runs when the user names no recipe, method, budget, training length or learning rate: the default
    recipe; the low-label one where the training set gives the default fewer optimizer steps than the low-label
    recipe's own floor (its train.min_steps, 200); and `--method probe` where there are also at most PROBE_PER_CLASS
    rows per class on average and no setting only training reads is named. At 128 rows per class (the default's 120
    steps) the low-label recipe scored above the default on both development sets; below 100 steps the default
    collapsed; at 8 per class the probe scored above the recipe (experiments/low-label). With a note saying so
    (run_tune's `notes`: logged once the inputs have passed their checks). The task is read here to count its rows,
    and again by the run."""
    given = set(values.get("train") or {})
    if recipe or budget or given & {"epochs", "max_steps", "min_steps", "lr"} or any(  # sized for a method
            k == "method" or k in method_configs() for k in values):
        return tune_config(recipe, values, budget), None
    cfg = unchecked_tune_config(recipe, values, budget)
    task = load_task(cfg.data, cfg.train.seed)
    rows = len(task.train)
    per_class = rows / len(task.label_names)
    steps, floor = planned_steps(cfg, rows), load_yaml(tune_recipe(LOW_LABEL))["train"]["min_steps"]
    if steps >= floor or not bert_style(cfg.model):  # the recipe and the probe read the mean (use_pooling)
        return check_temperature_used(cfg, values), None
    if per_class <= PROBE_PER_CLASS and given <= PROBE_USES:
        return tune_config(None, {**values, "method": "probe"}), (
            f"{rows} training rows, {round(per_class, 1):g} per class: running --method probe (a logistic regression "
            f"on the frozen embedding), which scored above the low-label recipe at {PROBE_PER_CLASS} per class on two "
            "development sets; --recipe low-label or --recipe default trains the encoder")
    return tune_config(LOW_LABEL, values), (
        f"{rows} training rows give the default recipe {steps} optimizer steps, under the low-label recipe's "
        f"{floor}: running the low-label recipe (recipes/tune/low-label.yaml); --recipe default keeps the default")


def bert_style(model: str) -> bool:
    """Whether the model is a BERT classifier, whose head can read the mean of the token states (pooling mean)."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model(model)).model_type == "bert"
    except (OSError, ValueError):  # unreadable or unknown: the run's own checks say why, in one line
        return False


def default_output(cfg: TuneConfig, task_name: str) -> Path:
    model = Path(cfg.model).name or cfg.model
    return Path("runs") / f"{task_name.replace('@', '-')}-{cfg.method}-{model}-s{cfg.train.seed}"


def run_tune(cfg: TuneConfig, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
             log=print, on_evaluate=None, score_test: bool = True, save_weights: bool = True,
             notes: tuple[str, ...] = ()) -> dict:
    """One tune run. `search` runs trials with `on_evaluate` (a Hooks.on_evaluate: reports, may stop the run),
    without the test set (`score_test=False`: selection sees validation only) and without weights. `notes`: lines
    to log once the inputs have passed their checks (sized_tune_config's)."""
    method = get_method(cfg.method)
    wise_for_full(cfg, {"wise": cfg.train.wise})  # a TuneConfig built without tune_config (api.tune) is checked too
    task, model_path, tokenizer = preflight(cfg)  # before --overwrite removes an earlier run
    out = Path(cfg.output) if cfg.output else default_output(cfg, task.name)
    run = Run(cfg, out, overwrite=overwrite, resume=resume, cpu=cpu, log=log)
    for note in (*notes, *task.notes):
        run.log(f"note: {note}")
    run.log(f"task {task.name}: {len(task.train)} train / {len(task.validation)} validation / "
            f"{0 if task.test is None else len(task.test)} test, labels {task.label_names}")
    few = None if method.fit_head else few_steps(cfg, len(task.train))
    if few:
        run.log(f"note: {few}")

    # the model: a classifier for the task's labels, then the method
    model = load_classifier(model_path, task.id2label, cfg.pooling)
    if cfg.train.head_init == "probe":
        from ..probe import probe_head
        fit = probe_head(model, tokenizer, task.train, cfg.data.max_length, cfg.train.seed)
        run.log(f"head: a logistic regression on the frozen features ({fit:.3f} of the training rows right)")
    arch = arch_of(model.config)
    head = head_modules(model, arch)
    model = method.apply(model, cfg.method_args, Context(arch, num_labels=len(task.label_names), head=head))
    params = count_params(model, head)
    start = wise.snapshot(model) if cfg.train.wise < 1 else None  # before a resumed run loads its checkpoint
    run.log(f"method {cfg.method}: {params['trainable_params']:,} trainable of {params['total_params']:,} "
            f"({params['trainable_percent']:.3f}%), precision {run.precision}")

    # train, scoring validation on the way
    score = Scorer(run.acc, tokenizer, task.label_names, cfg.data.max_length, cfg.train.eval_batch_size)
    validation = score.loader(task.validation)
    run.write_recipe()
    if method.fit_head:  # the method fits the head itself (probe): no loop
        result = run.fit_head(lambda: method.fit_head(model, tokenizer, task.train, cfg.data.max_length,
                                                      cfg.train.seed, cfg.method_args), len(task.train))
        model = run.acc.prepare(model)  # onto the device the scores are computed on
    else:
        batches = classifier_batches(model, EncodedTask(task.train, tokenizer, cfg.data.max_length), tokenizer,
                                     cfg.train.batching, run.log)
        if cfg.train.contrastive:
            from ..contrastive import with_contrastive
            batches.forward = with_contrastive(batches.forward, model, len(task.label_names), cfg.train.contrastive,
                                               cfg.train.contrastive_temperature)
        hooks = Hooks(on_optimizer_step=method.on_optimizer_step, on_train_begin=method.on_train_begin and
                      functools.partial(method.on_train_begin, cfg=cfg.method_args), on_evaluate=on_evaluate)
        result = run.train(model, batches, evaluate=lambda m: score(m, validation), hooks=hooks, head=head,
                           greater_is_better=SELECTION_METRICS[cfg.train.metric], describe=cfg.method)

    # The final scores in fp32, without the loop's autocast: the saved model is served in fp32 (predict, export,
    # pipeline), so metrics.json states what it will answer (bf16 scores can differ on a borderline row).
    model = run.acc.unwrap_model(model, keep_fp32_wrapper=False)
    model.eval()
    if start is not None:
        wise.mix(model, start, cfg.train.wise)
        run.log(f"wise: the weights set to {cfg.train.wise:g} x trained + {1 - cfg.train.wise:g} x the start "
                "(WiSE-FT; the validation scores logged while training were those of the unmixed weights)")
    refit = {} if method.fit_head or not cfg.train.head_refit else refit_head(run, model, tokenizer, task.train, cfg)
    scores = {"validation": score(model, validation), "test": None}
    if score_test and task.test is not None and len(task.test):
        scores["test"] = score(model, score.loader(task.test))
    metrics = {
        "method": cfg.method, "model": cfg.model, "model_path": model_path, "task": task.name,
        "task_source": task.source, "pooling": cfg.pooling, "seed": cfg.train.seed, "label_names": task.label_names,
        **params, "kept_params": params["trainable_params"], **scores, **run.loop_metrics([result]),
        "train_samples_per_second": round(result.samples_seen / max(result.train_seconds, 1e-9), 2),
        **run.machine_metrics(),
    }
    metrics.update(refit)
    if method.summary:
        metrics.update(method.summary(model))
    # PeftModel -> adapter_config.json + adapter_model.safetensors (head included); full -> a checkpoint
    run.save(model, tokenizer, metrics, weights=save_weights)
    run.log(f"validation: {headline(scores['validation'])}")
    if scores["test"]:
        run.log(f"test:       {headline(scores['test'])}")
    run.log(f"wrote {run.out}")
    return metrics


def refit_head(run, model, tokenizer, train, cfg: TuneConfig) -> dict:
    """train.head_refit: the head fitted again as a logistic regression on the trained features (probe.probe_head).
    Every process fits it; the main process's weights are given to all, so the scores describe the saved head."""
    from accelerate.utils import broadcast

    from ..probe import output_layer, probe_head

    fit = probe_head(model, tokenizer, train, cfg.data.max_length, cfg.train.seed)
    if run.acc.num_processes > 1:
        layer = output_layer(model, model.config.num_labels)
        with torch.no_grad():
            layer.weight.copy_(broadcast(layer.weight.detach().clone()))
            layer.bias.copy_(broadcast(layer.bias.detach().clone()))
    run.log(f"head: refitted on the trained features ({fit:.3f} of the training rows right; the validation scores "
            "logged while training were the previous head's)")
    return {"head_refit_train_accuracy": round(fit, 4)}


class Scorer:
    """Classification metrics of a model on a frame of the task, gathered over all processes."""

    def __init__(self, acc, tokenizer, label_names: list[str], max_length: int, batch_size: int):
        self.acc, self.tokenizer, self.label_names = acc, tokenizer, label_names
        self.max_length, self.batch_size = max_length, batch_size
        self.collate = DataCollatorWithPadding(tokenizer)

    def loader(self, frame):
        return self.acc.prepare(DataLoader(EncodedTask(frame, self.tokenizer, self.max_length, by_length=True),
                                           batch_size=self.batch_size, collate_fn=self.collate))

    def __call__(self, model, loader) -> dict:
        return predict_metrics(self.acc, model, loader, self.label_names)


@torch.no_grad()
def predict_metrics(acc, model, loader, label_names) -> dict:
    preds, labels = [], []
    for batch in loader:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        p, y = acc.gather_for_metrics((logits.argmax(-1), batch["labels"]))  # once per example, across processes
        preds.append(p.cpu())
        labels.append(y.cpu())
    return classification_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy(), label_names)
