"""THE training loop: one function, used by `tune` and `adapt`, read top to bottom.

Methods change it only through hooks (`on_train_begin` with the step plan, `on_optimizer_step`); everything
else is plain Accelerate: prepare, accumulate, clip, step, evaluate, keep the best weights, checkpoint
(ProjectConfiguration's naming and rotation), resume.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from .config import TrainArgs
from .data.batching import TrainBatches, check_resumed_batching, texts_in
from .fast_dropout import cpu_fast_dropout
from .errors import CheckpointMismatch, TrainingDiverged, UserError
from . import artifacts, hardware, trackers

CKPT_DIR = "checkpoints"  # Accelerate's automatic naming: <out>/checkpoints/checkpoint_<step>
KEEP_CHECKPOINTS = 2
TRAINER_STATE = "trainer_state.json"  # the loop's own state, written last: its presence marks a whole checkpoint
BEST_STATE = "best_state.pt"  # the best evaluation's trainable weights
# Accelerate warns on every rotation ("Deleting 1 checkpoints to make room"): expected here, so not shown
logging.getLogger("accelerate.accelerator").addFilter(lambda record: "to make room" not in record.getMessage())


@dataclass
class Hooks:
    """What a method may add to the loop; defaults do nothing."""
    on_train_begin: Callable | None = None  # (model, plan) once, after prepare, before the first step
    on_optimizer_step: Callable | None = None  # (model, step) after optimizer.step, before zero_grad
    on_evaluate: Callable | None = None  # (step, total steps, metrics) after each evaluation; may raise to stop


@dataclass(frozen=True)
class StepPlan:
    """Optimizer steps of a run, computed once from the prepared (per-process, sharded) loader."""
    batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


@dataclass
class TrainResult:
    steps: int = 0
    epochs_run: float = 0.0
    best_step: int | None = None
    best_metric: float | None = None
    best_eval: dict | None = None
    history: list = field(default_factory=list)
    train_seconds: float = 0.0  # wall time of the loop minus the time spent evaluating
    eval_seconds: float = 0.0
    samples_seen: int = 0
    stopped_early: bool = False
    plan: StepPlan | None = None


def resolve_precision(precision: str, cpu: bool) -> str:
    """`auto` = what this machine runs fastest (see hardware.py); the others as asked, where they can run."""
    if precision == "fp16" and cpu:
        raise UserError("fp16 needs a GPU; on CPU use --precision bf16 or no")
    return hardware.auto_precision(cpu)[0] if precision == "auto" else precision


def agreed_precision(asked: str, cpu: bool) -> str:
    """The main process resolves `auto` and the others take its answer: each timing bf16 on cores the others
    keep busy could otherwise choose differently."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=cpu)
    choice = [resolve_precision(asked, cpu) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(choice, from_process=0)
    return choice[0]


def checkpoint_precision(ckpt: str | None) -> str | None:
    """The precision a checkpoint was trained in: a resumed run keeps it, whatever `auto` would say today."""
    state = Path(ckpt) / TRAINER_STATE if ckpt else None
    return json.loads(state.read_text()).get("precision") if state and state.is_file() else None


def precision_note(acc, asked: str) -> str:
    """What ran, and why where `auto` chose it: for the run's log line and metrics.json."""
    return hardware.describe(asked, acc.mixed_precision, acc.device.type == "cpu")


def use_cpu(cpu: bool) -> bool:
    """With no GPU, say cpu=True: Accelerate only detects multi-process CPU runs (gloo) in CPU mode, and the
    first PartialState of a process decides it for every later Accelerator."""
    return cpu or not (torch.cuda.is_available() or torch.backends.mps.is_available())


def make_accelerator(args: TrainArgs, out_dir: Path | None, cpu: bool = False, precision: str | None = None):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

    from accelerate.state import AcceleratorState, GradientState

    # Accelerate keeps process-wide singletons; a second run in one process (bench, tests) needs a fresh
    # state to change precision or accumulation. The distributed PartialState is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    set_seed(args.seed)
    cpu = use_cpu(cpu)
    precision = precision or agreed_precision(args.precision, cpu)
    acc = Accelerator(
        mixed_precision=precision, cpu=cpu, gradient_accumulation_steps=args.grad_accum,
        # a seedable sampler makes the shuffle order a function of (seed, epoch): exact resume
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        log_with=trackers.log_with(args.report_to, out_dir),
        # save_state() names checkpoints itself and keeps the newest KEEP_CHECKPOINTS
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / "tensorboard"),
                                            automatic_checkpoint_naming=True, total_limit=KEEP_CHECKPOINTS)
        if out_dir else None,
    )
    return acc


LAYER_INDEX = re.compile(r"\.layer\.(\d+)\.")  # encoder block i: BERT/RoBERTa "encoder.layer.i.", DistilBERT too
EMBEDDINGS = re.compile(r"\.embeddings(_project)?\.")  # ELECTRA's projection sits with its embeddings


def layer_depths(names: list[str]) -> dict[str, int | None]:
    """Each parameter's distance below the encoder's top for layer_lr_decay: the top block 0, block i of L
    L-1-i, the embeddings L; the rest None, at the top's lr (pooler, task head, an MLM head, prefix vectors,
    DeBERTa's relative-position table, which every block reads). `names`: all of the model's parameters, frozen
    ones too, so L is the encoder's depth whichever blocks train."""
    index = {n: int(m.group(1)) for n in names if (m := LAYER_INDEX.search(f".{n}"))}
    n_layers = max(index.values(), default=-1) + 1
    return {n: n_layers - 1 - index[n] if n in index else n_layers if EMBEDDINGS.search(f".{n}") else None
            for n in names}


def build_optimizer(model, args: TrainArgs, head: tuple[str, ...] = ()):
    """AdamW in groups: decayed or not (biases and LayerNorm weights are not: BERT's recipe); when
    head_lr_ratio != 1, encoder or task head (`head`: module names; the head learns at lr x head_lr_ratio); when
    layer_lr_decay < 1, by depth (lr x decay^depth: layer-wise decay as in Clark et al. 2020's ELECTRA, here with
    the top block at lr; it keeps the pretrained lower layers closer to where they were).
    At ratio and decay 1 the layout is the two groups checkpoints written before either existed hold, so they resume."""
    split_head = args.head_lr_ratio != 1
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    depths = layer_depths([n for n, _ in model.named_parameters()]) if args.layer_lr_decay != 1 else {}
    groups: dict[tuple[bool, bool, int], list] = {}
    for name, p in named:
        decayed = not (p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name)
        in_head = split_head and any(f".{h}." in f".{name}" for h in head)  # as models.count_params counts it
        depth = 0 if in_head else depths.get(name) or 0
        groups.setdefault((in_head, not decayed, depth), []).append(p)
    if not groups:
        raise UserError("the model has no trainable parameters: check the method's settings")
    # encoder groups first (the logged lr is group 0's: the top's), decayed before not (the old order)
    groups = [{"params": ps, "weight_decay": 0.0 if no_decay else args.weight_decay, "head": in_head,
               "lr": args.lr * (args.head_lr_ratio if in_head else args.layer_lr_decay ** depth)}
              for (in_head, no_decay, depth), ps in sorted(groups.items())]
    # fused AdamW: one kernel for all parameters; ~5x faster per step than the default on 2 CPU cores for
    # MiniLM's 22.7M parameters (benchmarks/micro.py: 13.7 vs 66.5 ms). It needs float CPU/CUDA tensors.
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=args.lr, fused=fused)


def plan_steps(n_batches: int, args: TrainArgs) -> StepPlan:
    """The plan for `n_batches` per epoch (per process); the last partial accumulation still steps."""
    per_epoch = math.ceil(n_batches / args.grad_accum)
    # min_steps: a few dozen rows give a few optimizer steps an epoch, too few to train a classifier
    total = max(args.max_steps or max(math.ceil(args.epochs * per_epoch), args.min_steps or 0), 1)
    return StepPlan(n_batches, per_epoch, total, int(args.warmup_ratio * total))


def train(model, batches: TrainBatches, args: TrainArgs, *, accelerator, evaluate: Callable[[object], dict],
          out_dir: Path | None, hooks: Hooks | None = None, resume: str | None = None,
          greater_is_better: bool = True, describe: str = "train", head: tuple[str, ...] = ()) -> TrainResult:
    """Train on `batches` as `args` say, scoring `evaluate(model)` (validation metrics) on the way; the model ends
    with the best weights found. `head`: the task head's modules (they may learn at their own rate)."""
    from accelerate.utils import set_seed

    acc, hooks = accelerator, hooks or Hooks()
    # -- setup: optimizer, loader and schedule. Steps are counted once, per process, on the prepared (sharded)
    # loader; the scheduler is stepped by us, once per optimizer step, so its length is exact. Methods get the plan.
    optimizer = build_optimizer(model, args, head)
    model, optimizer, loader = acc.prepare(model, optimizer, batches.loader(args, acc.num_processes))
    if len(loader) == 0:
        raise UserError("no training examples: the training set is empty (check the file and --max-train-samples)")
    plan = plan_steps(len(loader), args)
    scheduler = build_scheduler(optimizer, args, plan)
    acc.register_for_checkpointing(scheduler)  # not prepared, so save_state must be told about it
    if hooks.on_train_begin:
        hooks.on_train_begin(acc.unwrap_model(model), plan)
    start_trackers(acc, args, out_dir)

    # -- state: where in the data the loop stands, and the evaluations so far; fresh, or from a checkpoint
    at = Progress()
    evals = EvalTracker(acc, evaluate, args, greater_is_better, out_dir, describe, hooks.on_evaluate, plan.total_steps)
    if resume:
        at = restore(acc, optimizer, find_checkpoint(resume, out_dir), args, evals)

    # -- the loop. CPU dropout at a third of torch's cost, swapped in for the loop only and out again on any exit;
    # the bar and the trackers are closed on errors too (an open MLflow/W&B run would block the next one)
    bar = tqdm(total=plan.total_steps, initial=at.steps, desc=describe, disable=not acc.is_local_main_process,
               dynamic_ncols=True)
    with cpu_fast_dropout(acc.unwrap_model(model), enabled=acc.device.type == "cpu"), bar, trackers.finished(acc):
        model.train()
        t0, losses, stop = time.perf_counter(), RunningLoss(), False
        while at.steps < plan.total_steps and not stop:
            for batch in epoch_batches(acc, loader, at):
                at.batches_in_epoch += 1
                losses.add(step(acc, model, batches.run, batch, optimizer, scheduler, args, hooks, at.steps))
                at.samples_seen += texts_in(batch) * acc.num_processes
                if not acc.sync_gradients:  # inside an accumulation window
                    continue
                at.steps += 1
                bar.update(1)
                logging, evaluating, saving = at.due(args, len(loader), out_dir is not None)
                last = at.steps >= plan.total_steps
                if logging or evaluating or saving or last:  # a non-finite loss stops the run before any of them
                    mean_loss = check_finite(losses.mean(acc), at.steps, args, acc)
                if logging:
                    acc.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, step=at.steps)
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    losses.reset()
                stop = evaluating and evals(model, at.steps, at.epoch + at.batches_in_epoch / len(loader))
                if saving:
                    save_checkpoint(acc, out_dir, at, evals, args)
                if stop or last:
                    break
            at.next_epoch()
        bar.close()
        if not stop and not evals.scored(at.steps):  # the run ended between evaluations: score where it stopped
            evals(model, at.steps, at.steps / plan.steps_per_epoch)
    seconds = time.perf_counter() - t0 - evals.seconds
    evals.restore_best(acc.unwrap_model(model))  # end with the best weights, not the last ones
    set_seed(args.seed)
    return TrainResult(at.steps, at.steps / plan.steps_per_epoch, evals.best_step, evals.best_metric, evals.best_eval,
                       evals.history, seconds, evals.seconds, at.samples_seen, stop, plan)


@dataclass
class Progress:
    """Where the loop stands in the data: what a checkpoint saves beside the weights, and a resume starts from."""
    steps: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # of `epoch`, trained on: resuming skips them (a finished epoch still gets evaluated)
    samples_seen: int = 0  # texts, over all processes

    def due(self, args: TrainArgs, batches_per_epoch: int, can_save: bool) -> tuple[bool, bool, bool]:
        """After an optimizer step: whether to log the loss, evaluate, save a checkpoint."""
        epoch_end = self.batches_in_epoch == batches_per_epoch
        evaluating = self.steps % args.eval_every == 0 if args.eval_every else epoch_end
        saving = bool(args.save_every) and self.steps % args.save_every == 0 and can_save
        return self.steps % args.log_every == 0, evaluating, saving

    def next_epoch(self) -> None:
        self.epoch, self.batches_in_epoch = self.epoch + 1, 0


def better(value: float, than: float, greater_is_better: bool) -> bool:
    """Whether a validation score beats another (ties do not)."""
    return value > than if greater_is_better else value < than


class EvalTracker:
    """The evaluations of a run and the best of them: scores the model, logs each score (trackers, eval_log.jsonl,
    the console), keeps the best weights in memory and counts evaluations in a row that did not beat them.
    With train.keep last the "best" is the latest evaluation: the run ends on its last weights."""

    def __init__(self, acc, evaluate, args: TrainArgs, greater_is_better: bool, out_dir: Path | None, describe: str,
                 on_evaluate: Callable | None, total_steps: int):
        self.acc, self.evaluate, self.args, self.greater_is_better = acc, evaluate, args, greater_is_better
        self.out_dir, self.describe, self.on_evaluate, self.total_steps = out_dir, describe, on_evaluate, total_steps
        self.history: list[dict] = []
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.best_eval: dict | None = None
        self.best_state: dict | None = None  # the trainable weights (all that training can change), on the CPU
        self.bad_evals = 0  # evaluations since the best: patience counts them
        self.seconds = 0.0

    def __call__(self, model, step: int, epoch: float) -> bool:
        """Score `model` at `step`; True when patience has run out."""
        t_eval = time.perf_counter()
        model.eval()
        metrics = self.evaluate(model)
        model.train()
        value = metrics.get(self.args.metric)
        if value is None:
            raise UserError(f"validation metric {self.args.metric!r} not computed (have: {', '.join(metrics)})")
        record = {"step": step, "epoch": round(epoch, 4), **{k: v for k, v in metrics.items()
                                                              if isinstance(v, (int, float))}}
        self.history.append(record)
        improved = self.best_metric is None or better(value, self.best_metric, self.greater_is_better)
        # keep last: every evaluation is the one kept. A few dozen validation rows make the best score mostly
        # noise: at 8 tweets per class the best step was 1-18 of 200 in 4 of 5 runs (experiments/low-label)
        improved = improved or self.args.keep == "last"
        if improved:
            self.best_metric, self.best_step, self.best_eval, self.bad_evals = value, step, metrics, 0
            self.best_state = {n: p.detach().to("cpu", copy=True)
                               for n, p in self.acc.unwrap_model(model).named_parameters() if p.requires_grad}
        else:
            self.bad_evals += 1
        self.log(record, f"step {step} epoch {epoch:.2f}: {self.args.metric} {value:.4f}"
                 + (" (best)" if improved else ""))
        self.seconds += time.perf_counter() - t_eval
        if self.on_evaluate:
            self.on_evaluate(step, self.total_steps, metrics)
        return self.args.patience is not None and self.bad_evals >= self.args.patience

    def log(self, record: dict, line: str) -> None:
        acc = self.acc
        acc.log({f"eval/{k}": v for k, v in record.items() if k not in ("step", "epoch")}, step=record["step"])
        if acc.is_main_process and self.out_dir is not None:
            with open(self.out_dir / "eval_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if acc.is_main_process:
            tqdm.write(f"[{self.describe}] {line}")

    def scored(self, step: int) -> bool:
        return bool(self.history) and self.history[-1]["step"] == step

    def restore_best(self, model) -> None:
        if self.best_state is not None:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in self.best_state:
                        p.copy_(self.best_state[n].to(p.device))

    def state(self) -> dict:
        """What a checkpoint keeps of the evaluations (the best weights go beside it: save_best)."""
        return {"history": self.history, "metric": self.args.metric, "best_metric": self.best_metric,
                "best_step": self.best_step, "best_eval": self.best_eval, "bad_evals": self.bad_evals}

    def save_best(self, ckpt: Path) -> None:
        if self.best_state is not None:
            torch.save(self.best_state, ckpt / BEST_STATE)

    def load(self, state: dict, ckpt: Path) -> None:
        chosen_by = state.get("metric", self.args.metric)  # (checkpoints before this field: not checked)
        if chosen_by != self.args.metric:  # its best score would be compared with another metric's
            raise CheckpointMismatch(f"{ckpt} kept its best weights by {chosen_by}, this run chooses by "
                                     f"{self.args.metric}; resume with --metric {chosen_by}, or start again with "
                                     "--overwrite")
        self.history, self.best_metric, self.best_step = state["history"], state["best_metric"], state["best_step"]
        self.best_eval, self.bad_evals = state["best_eval"], state["bad_evals"]
        if (ckpt / BEST_STATE).is_file():
            self.best_state = torch.load(ckpt / BEST_STATE, map_location="cpu")


class RunningLoss:
    """The training loss, summed on the device between logs: .item() only when read (no sync per step)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.total, self.n = 0.0, 0

    def add(self, loss: torch.Tensor) -> None:
        self.total += loss.detach().float()
        self.n += 1

    def mean(self, acc) -> float:
        """The mean over all processes, so every rank decides alike."""
        return acc.reduce(self.total.detach().clone(), "mean").item() / self.n


def step(acc, model, run: Callable, batch, optimizer, scheduler, args: TrainArgs, hooks: Hooks, steps_done: int):
    """One forward and backward pass (`run(model, batch)`: the model's output); at the end of an accumulation
    window also the clipped optimizer step, the scheduler's step and the method's hook. Returns the loss."""
    with acc.accumulate(model):
        loss = run(model, batch).loss
        acc.backward(loss)
        if acc.sync_gradients and args.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()  # a no-op inside an accumulation window (Accelerate skips it)
        if acc.sync_gradients:
            scheduler.step()
            if hooks.on_optimizer_step:
                hooks.on_optimizer_step(acc.unwrap_model(model), steps_done + 1)
        optimizer.zero_grad()
    return loss


def build_scheduler(optimizer, args: TrainArgs, plan: StepPlan):
    from transformers import get_scheduler

    return get_scheduler("constant_with_warmup" if args.scheduler == "constant" else args.scheduler, optimizer,
                         num_warmup_steps=plan.warmup_steps, num_training_steps=plan.total_steps)


def start_trackers(acc, args: TrainArgs, out_dir: Path | None) -> None:
    if trackers.log_with(args.report_to, out_dir):
        config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        acc.init_trackers("peftbert", config=config, init_kwargs=trackers.init_kwargs(args.report_to, out_dir))


def restore(acc, optimizer, ckpt: Path, args: TrainArgs, evals: EvalTracker) -> Progress:
    """Resume from `ckpt`: model, optimizer, scheduler and RNGs (Accelerate's load_state), then the loop's own
    state. A checkpoint trained with other settings is refused: its own would silently win."""
    wanted = [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups]
    mismatch = (f"{ckpt} was saved with other optimizer settings (train.lr, train.weight_decay, "
                "train.head_lr_ratio, train.layer_lr_decay) or by another peftbert version; resume with the run's "
                "own recipe.yaml, or start again with --overwrite")
    try:
        acc.load_state(str(ckpt))
    except ValueError:  # torch: "loaded state dict has a different number of parameter groups", ...
        raise CheckpointMismatch(mismatch) from None
    if [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups] != wanted:
        raise CheckpointMismatch(mismatch)
    state = json.loads((ckpt / TRAINER_STATE).read_text())
    check_resumed_batching(state.get("batching"), args.batching, ckpt)
    if "contrastive" in state:  # (checkpoints from before it hold no record of their loss: not checked)
        check_resumed_loss(state["contrastive"], state["contrastive_temperature"], args, ckpt)
    evals.load(state, ckpt)
    acc.print(f"resumed from {ckpt} at step {state['step']}")
    return Progress(state["step"], state["epoch"], state["batches_in_epoch"], state["samples_seen"])


def check_resumed_loss(weight: float, temperature: float, args: TrainArgs, ckpt: Path) -> None:
    """The loss a checkpoint was trained on (train.contrastive and its temperature): resumed with another, the run
    would change its objective halfway without a word."""
    def loss(w: float, t: float) -> str:
        return f"train.contrastive {w:g}" + (f" at temperature {t:g}" if w else "")

    ran, asked = loss(weight, temperature), loss(args.contrastive, args.contrastive_temperature)
    if ran != asked:
        raise CheckpointMismatch(f"{ckpt} was trained with {ran}, this run asks for {asked}; resume with the run's "
                                 "own recipe.yaml (--recipe) or its --contrastive and --contrastive-temperature")


def check_finite(mean_loss: float, step: int, args: TrainArgs, acc) -> float:
    if math.isfinite(mean_loss):
        return mean_loss
    why = f"the learning rate ({args.lr:g}) is likely too high"
    if acc.mixed_precision != "no":
        why += f", or {acc.mixed_precision} overflowed (try --precision no)"
    # (resuming would replay the same steps, with the checkpoint's learning rate and precision, into the same NaN)
    raise TrainingDiverged(f"the training loss became {mean_loss} by step {step}: {why}; stopped without saving "
                    "(earlier checkpoints are intact); start again with --overwrite")


def epoch_batches(acc, loader, at: Progress):
    """The batches of epoch `at.epoch` the run has not trained on yet."""
    loader.set_epoch(at.epoch)
    return resumed_batches(acc, loader, at.batches_in_epoch) if at.batches_in_epoch else loader


def resumed_batches(acc, loader, skip: int):
    """The rest of an epoch after `skip` batches, leaving the global RNG as the checkpoint restored it.

    Starting a DataLoader iterator draws its base seed from the global RNG. The uninterrupted run drew it
    at the start of the epoch, before the checkpoint saved the RNG state; the resumed run draws it again
    here. Undoing that draw keeps dropout and dynamic masks on the uninterrupted run's sequence.
    This assumes making batches draws nothing from the global RNG (Accelerate fetches ahead, before the
    state is put back): our datasets and collators are deterministic, and masking happens in forward.
    """
    state = torch.get_rng_state()
    it = iter(acc.skip_first_batches(loader, skip))
    first = next(it, None)  # the iterator (and its draw) starts at the first batch
    torch.set_rng_state(state)
    if first is not None:
        yield first
        yield from it


def save_checkpoint(acc, out_dir: Path, at: Progress, evals: EvalTracker, args: TrainArgs):
    """Accelerate's save_state (model, optimizer, scheduler, RNGs), then the loop's own state, written last
    and atomically: a checkpoint without trainer_state.json is incomplete and never resumed from. A failed
    write (a full disk) removes the partial checkpoint and stops the run; the previous one stays as it was."""
    from .runinfo import WRITE_ERRORS, io_reason, write_text

    acc.project_configuration.iteration = at.steps  # the checkpoint is named after its step
    ckpt = out_dir / CKPT_DIR / f"checkpoint_{at.steps}"
    if acc.is_main_process and ckpt.exists():  # left half-written by a crash before a resume: redo it
        shutil.rmtree(ckpt)
    acc.wait_for_everyone()
    error = None
    try:
        acc.save_state()
        if acc.is_main_process:
            state = {"step": at.steps, "epoch": at.epoch, "batches_in_epoch": at.batches_in_epoch,
                     "samples_seen": at.samples_seen, **evals.state(), "precision": acc.mixed_precision,
                     "batching": args.batching, "contrastive": args.contrastive,
                     "contrastive_temperature": args.contrastive_temperature}
            evals.save_best(ckpt)
            write_text(ckpt / TRAINER_STATE, json.dumps(state))
    except WRITE_ERRORS as e:
        error = io_reason(e)
    # every process learns whether any write failed, so all stop together instead of waiting at a barrier
    failed = acc.reduce(torch.tensor(float(error is not None), device=acc.device), "sum").item()
    if failed:
        if acc.is_main_process:
            shutil.rmtree(ckpt, ignore_errors=True)
        acc.wait_for_everyone()
        done = complete_checkpoints(out_dir)
        kept = f"; {done[-1].name} is intact (--resume latest)" if done else ""
        raise UserError(f"could not write checkpoint {ckpt}: {error or 'failed on another process'}; free disk "
                        f"space or save less often (--save-every){kept}")
    acc.wait_for_everyone()


def complete_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints with their trainer_state.json (written last), oldest first."""
    found = [p for p in (out_dir / CKPT_DIR).glob("checkpoint_*") if (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def find_checkpoint(resume: str, out_dir: Path | None) -> Path:
    """`--resume` = a checkpoint directory, or `latest` (the newest under OUTPUT/checkpoints)."""
    if resume != "latest":
        p = Path(resume)
        if not (p / TRAINER_STATE).is_file():
            raise UserError(f"{p} is not a peftbert checkpoint (no trainer_state.json); pass --resume latest "
                            "or a directory under OUTPUT/checkpoints")
        artifacts.checkpoint(p)  # every file whole, or one line naming the damaged one
        return p
    found = complete_checkpoints(out_dir) if out_dir else []
    if not found:
        raise UserError(f"no checkpoint to resume under {out_dir}/{CKPT_DIR}; run with --save-every N first")
    artifacts.checkpoint(found[-1], earlier=found[-2] if len(found) > 1 else None)
    return found[-1]
