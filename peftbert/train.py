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
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .config import TrainArgs
from .data.batching import LengthGroupedEpochSampler
from .fast_dropout import cpu_fast_dropout
from .errors import CheckpointMismatch, TrainingDiverged, UserError
from . import hardware, trackers

CKPT_DIR = "checkpoints"  # Accelerate's automatic naming: <out>/checkpoints/checkpoint_<step>
KEEP_CHECKPOINTS = 2
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
    state = Path(ckpt) / "trainer_state.json" if ckpt else None
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
    total = max(args.max_steps or math.ceil(args.epochs * per_epoch), 1)
    return StepPlan(n_batches, per_epoch, total, int(args.warmup_ratio * total))


def train(model, train_ds, collate, args: TrainArgs, *, accelerator, evaluate: Callable[[object], dict],
          out_dir: Path | None, hooks: Hooks | None = None, resume: str | None = None,
          greater_is_better: bool = True, describe: str = "train", head: tuple[str, ...] = (),
          forward: Callable | None = None) -> TrainResult:
    """`forward(model, batch)` -> the model's output, where a batch needs more than `model(**batch)` (packed
    rows: data/packing.py)."""
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    hooks = hooks or Hooks()
    acc = accelerator
    # packed and random batches hold the same texts (a random draw); packing, done by the caller's collate, only
    # lays them out without padding. grouped changes the draw: texts of about one length share a batch.
    if args.batching == "grouped" and getattr(train_ds, "lengths", None) is not None:
        # grouped by the global batch: N processes then train on the batches one process would (each its share)
        sampler = LengthGroupedEpochSampler(train_ds.lengths, args.batch_size * acc.num_processes, args.seed,
                                            args.group_size)
        loader = DataLoader(train_ds, batch_size=args.batch_size, sampler=sampler, collate_fn=collate)
    else:  # Accelerate swaps the shuffle for its seedable sampler
        loader = DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
    optimizer = build_optimizer(model, args, head)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    if len(loader) == 0:
        raise UserError("no training examples: the training set is empty (check the file and --max-train-samples)")
    # Steps are counted per process after sharding; the scheduler is stepped by us, once per optimizer step,
    # so its length is exact under any number of processes and accumulation. Methods get the same plan.
    plan = plan_steps(len(loader), args)
    steps_per_epoch, total_steps = plan.steps_per_epoch, plan.total_steps
    scheduler = get_scheduler("constant_with_warmup" if args.scheduler == "constant" else args.scheduler, optimizer,
                              num_warmup_steps=plan.warmup_steps, num_training_steps=total_steps)
    acc.register_for_checkpointing(scheduler)  # not prepared, so save_state must be told about it
    if hooks.on_train_begin:
        hooks.on_train_begin(acc.unwrap_model(model), plan)
    if trackers.log_with(args.report_to, out_dir):
        config = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool))}
        acc.init_trackers("peftbert", config=config, init_kwargs=trackers.init_kwargs(args.report_to, out_dir))

    res = TrainResult(plan=plan)
    best_state, bad_evals, start_epoch, skip_batches = None, 0, 0, 0
    if resume:
        ckpt = find_checkpoint(resume, out_dir)
        wanted = [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups]
        mismatch = (f"{ckpt} was saved with other optimizer settings (train.lr, train.weight_decay, "
                    "train.head_lr_ratio, train.layer_lr_decay) or by another peftbert version; resume with the run's "
                    "own recipe.yaml, or start again with --overwrite")
        try:
            acc.load_state(str(ckpt))
        except ValueError:  # torch: "loaded state dict has a different number of parameter groups", ...
            raise CheckpointMismatch(mismatch) from None
        # the checkpoint's learning rates and decay would silently win over the ones asked for now
        if [(g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups] != wanted:
            raise CheckpointMismatch(mismatch)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        # the skipped batches of a half-done epoch are counted in the checkpoint's batch order
        # (checkpoints from before packing existed hold no batching: theirs was grouped or random)
        ran = state.get("batching")
        if ran != args.batching and not (ran is None and args.batching != "packed"):
            raise CheckpointMismatch(f"{ckpt} was trained with {ran or 'grouped or random'} batches, not "
                                     f"{args.batching}; resume with the run's own recipe.yaml (--recipe) or the "
                                     "matching --batching")
        res.steps, res.history, res.samples_seen = state["step"], state["history"], state["samples_seen"]
        res.best_metric, res.best_step, res.best_eval = state["best_metric"], state["best_step"], state["best_eval"]
        bad_evals, start_epoch, skip_batches = state["bad_evals"], state["epoch"], state["batches_in_epoch"]
        if (ckpt / "best_state.pt").is_file():
            best_state = torch.load(ckpt / "best_state.pt", map_location="cpu")
        acc.print(f"resumed from {ckpt} at step {res.steps}")

    def do_eval(epoch_float):
        nonlocal best_state, bad_evals
        t_eval = time.perf_counter()
        model.eval()
        metrics = evaluate(model)
        model.train()
        value = metrics.get(args.metric)
        if value is None:
            raise UserError(f"validation metric {args.metric!r} not computed (have: {', '.join(metrics)})")
        record = {"step": res.steps, "epoch": round(epoch_float, 4), **{k: v for k, v in metrics.items()
                                                                       if isinstance(v, (int, float))}}
        res.history.append(record)
        improved = res.best_metric is None or (value > res.best_metric if greater_is_better else value < res.best_metric)
        if improved:
            res.best_metric, res.best_step, res.best_eval, bad_evals = value, res.steps, metrics, 0
            # keep the best weights in memory (trainable ones: all that training can change)
            best_state = {n: p.detach().to("cpu", copy=True) for n, p in acc.unwrap_model(model).named_parameters()
                          if p.requires_grad}
        else:
            bad_evals += 1
        acc.log({f"eval/{k}": v for k, v in record.items() if k not in ("step", "epoch")}, step=res.steps)
        if acc.is_main_process and out_dir is not None:
            with open(out_dir / "eval_log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if acc.is_main_process:
            tqdm.write(f"[{describe}] step {res.steps} epoch {epoch_float:.2f}: {args.metric} {value:.4f}"
                       + (" (best)" if improved else ""))
        res.eval_seconds += time.perf_counter() - t_eval
        if hooks.on_evaluate:
            hooks.on_evaluate(res.steps, total_steps, metrics)
        return args.patience is not None and bad_evals >= args.patience

    bar = tqdm(total=total_steps, initial=res.steps, desc=describe, disable=not acc.is_local_main_process,
               dynamic_ncols=True)
    # CPU dropout at a third of torch's cost, swapped in for the loop only, and out again on any exit
    # the bar and the trackers are closed on errors too (an open MLflow/W&B run would block the next one)
    with cpu_fast_dropout(acc.unwrap_model(model), enabled=acc.device.type == "cpu"), bar, trackers.finished(acc):
        model.train()
        t0, running, n_loss, done = time.perf_counter(), 0.0, 0, res.steps >= total_steps
        epoch = start_epoch
        while not done:
            loader.set_epoch(epoch)
            epoch_loader = resumed_batches(acc, loader, skip_batches) if skip_batches else loader
            batch_idx = skip_batches
            skip_batches = 0
            for batch in epoch_loader:
                batch_idx += 1
                with acc.accumulate(model):
                    loss = (forward(model, batch) if forward else model(**batch)).loss
                    acc.backward(loss)
                    if acc.sync_gradients and args.max_grad_norm > 0:
                        acc.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()  # a no-op inside an accumulation window (Accelerate skips it)
                    if acc.sync_gradients:
                        scheduler.step()
                        if hooks.on_optimizer_step:
                            hooks.on_optimizer_step(acc.unwrap_model(model), res.steps + 1)
                    optimizer.zero_grad()
                running += loss.detach().float()  # summed on the device: .item() only when logged (no sync per step)
                n_loss += 1
                texts = len(batch["first_token"] if "first_token" in batch else batch["input_ids"])  # packed: not rows
                res.samples_seen += texts * acc.num_processes
                if not acc.sync_gradients:
                    continue
                res.steps += 1
                bar.update(1)
                epoch_float = epoch + batch_idx / len(loader)
                epoch_end = batch_idx == len(loader)
                evaluating = (res.steps % args.eval_every == 0) if args.eval_every else epoch_end
                saving = args.save_every and res.steps % args.save_every == 0 and out_dir is not None
                if res.steps % args.log_every == 0 or evaluating or saving or res.steps >= total_steps:
                    # a non-finite loss stops the run before it is logged, evaluated or saved (checkpoints stay
                    # good); the mean over all processes, so every rank decides alike
                    mean_loss = acc.reduce(running.detach().clone(), "mean").item() / n_loss
                    check_finite(mean_loss, res.steps, args, acc)
                if res.steps % args.log_every == 0:
                    acc.log({"train/loss": mean_loss, "train/lr": scheduler.get_last_lr()[0]}, step=res.steps)
                    bar.set_postfix(loss=f"{mean_loss:.4f}")
                    running, n_loss = 0.0, 0
                stop = do_eval(epoch_float) if evaluating else False
                if saving:
                    # (epoch, batches done): resuming skips them; a finished epoch still gets its evaluation
                    save_checkpoint(acc, out_dir, res, bad_evals, epoch, batch_idx, best_state, args.batching)
                if stop or res.steps >= total_steps:
                    res.stopped_early, done = stop, True
                    break
            epoch += 1
        bar.close()
        if not res.stopped_early and (not res.history or res.history[-1]["step"] != res.steps):
            do_eval(res.steps / steps_per_epoch)  # the run ended between evaluations: score where it stopped
    res.train_seconds = time.perf_counter() - t0 - res.eval_seconds
    res.epochs_run = res.steps / steps_per_epoch
    if best_state is not None:  # end with the best weights, not the last ones
        unwrapped = acc.unwrap_model(model)
        with torch.no_grad():
            for n, p in unwrapped.named_parameters():
                if n in best_state:
                    p.copy_(best_state[n].to(p.device))
    set_seed(args.seed)
    return res


def check_finite(mean_loss: float, step: int, args: TrainArgs, acc) -> None:
    if math.isfinite(mean_loss):
        return
    why = f"the learning rate ({args.lr:g}) is likely too high"
    if acc.mixed_precision != "no":
        why += f", or {acc.mixed_precision} overflowed (try --precision no)"
    # (resuming would replay the same steps, with the checkpoint's learning rate and precision, into the same NaN)
    raise TrainingDiverged(f"the training loss became {mean_loss} by step {step}: {why}; stopped without saving "
                    "(earlier checkpoints are intact); start again with --overwrite")


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


def save_checkpoint(acc, out_dir: Path, res: TrainResult, bad_evals: int, epoch: int, batches_in_epoch: int,
                    best_state, batching: str):
    """Accelerate's save_state (model, optimizer, scheduler, RNGs), then the loop's own state, written last
    and atomically: a checkpoint without trainer_state.json is incomplete and never resumed from. A failed
    write (a full disk) removes the partial checkpoint and stops the run; the previous one stays as it was."""
    from .runinfo import WRITE_ERRORS, io_reason, write_text

    acc.project_configuration.iteration = res.steps  # the checkpoint is named after its step
    ckpt = out_dir / CKPT_DIR / f"checkpoint_{res.steps}"
    if acc.is_main_process and ckpt.exists():  # left half-written by a crash before a resume: redo it
        shutil.rmtree(ckpt)
    acc.wait_for_everyone()
    error = None
    try:
        acc.save_state()
        if acc.is_main_process:
            state = {"step": res.steps, "epoch": epoch, "batches_in_epoch": batches_in_epoch, "history": res.history,
                     "samples_seen": res.samples_seen, "best_metric": res.best_metric, "best_step": res.best_step,
                     "best_eval": res.best_eval, "bad_evals": bad_evals, "precision": acc.mixed_precision,
                     "batching": batching}
            if best_state is not None:
                torch.save(best_state, ckpt / "best_state.pt")
            write_text(ckpt / "trainer_state.json", json.dumps(state))
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
    found = [p for p in (out_dir / CKPT_DIR).glob("checkpoint_*") if (p / "trainer_state.json").is_file()]
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def find_checkpoint(resume: str, out_dir: Path | None) -> Path:
    """`--resume` = a checkpoint directory, or `latest` (the newest under OUTPUT/checkpoints)."""
    if resume != "latest":
        p = Path(resume)
        if not (p / "trainer_state.json").is_file():
            raise UserError(f"{p} is not a peftbert checkpoint (no trainer_state.json); pass --resume latest "
                            "or a directory under OUTPUT/checkpoints")
        return p
    found = complete_checkpoints(out_dir) if out_dir else []
    if not found:
        raise UserError(f"no checkpoint to resume under {out_dir}/{CKPT_DIR}; run with --save-every N first")
    return found[-1]
