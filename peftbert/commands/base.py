"""The run skeleton `tune` and `adapt` share: output directory, checkpoint to resume, accelerator, recipe,
the loop, the metrics every run reports, the save. Each command adds what differs (its data, model and scores).

    run = Run(cfg, out, overwrite=..., resume=..., cpu=..., log=...)   # checks the output, finds the checkpoint
    run.log(...)                                                       # main process only
    run.write_recipe()                                                 # before training, unless resuming
    result = run.train(model, batches, evaluate=..., ...)              # the shared loop (train.py)
    metrics = {...what the command measured, **run.loop_metrics([result]), **run.machine_metrics()}
    run.save(model, tokenizer, metrics)                                # metrics.json last: a finished run
"""

from __future__ import annotations

from pathlib import Path

from ..config import save_recipe
from ..runinfo import main_process_log, peak_memory, prepare_output, save_run, versions
from ..train import Hooks, TrainResult, checkpoint_precision, find_checkpoint, make_accelerator, precision_note


class Run:
    """One run of a command, from its output directory to its metrics.json. `cfg`: the command's config (a
    `train` block, and what save_recipe writes); `resume`: a checkpoint directory or `latest`."""

    def __init__(self, cfg, out: Path, *, overwrite: bool = False, resume: str | None = None, cpu: bool = False,
                 log=print):
        prepare_output(out, overwrite, resume)
        self.cfg, self.out, self.cpu = cfg, out, cpu
        self.resume = str(find_checkpoint(resume, out)) if resume else None  # fail now, not after loading a model
        # a resumed run keeps the precision it started with
        self.acc = make_accelerator(cfg.train, out, cpu=cpu, precision=checkpoint_precision(self.resume))
        self.log = main_process_log(self.acc, log)

    @property
    def precision(self) -> str:
        """What ran, and why where `auto` chose it."""
        return precision_note(self.acc, self.cfg.train.precision)

    def fresh_accelerator(self) -> None:
        """A new accelerator in the same precision, for a second loop in one run (the loop prepares again)."""
        self.acc = make_accelerator(self.cfg.train, self.out, cpu=self.cpu, precision=self.acc.mixed_precision)

    def write_recipe(self) -> None:
        """The resolved recipe beside the outputs; a resume writes it once the checkpoint has accepted these
        settings (the loop checks them)."""
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            if not self.resume:
                save_recipe(self.cfg, self.out / "recipe.yaml")

    def train(self, model, batches, *, evaluate, greater_is_better: bool, describe: str, hooks: Hooks | None = None,
              head: tuple[str, ...] = ()) -> TrainResult:
        from ..train import train  # imported when called: tests wrap peftbert.train.train

        result = train(model, batches, self.cfg.train, accelerator=self.acc, evaluate=evaluate, out_dir=self.out,
                       hooks=hooks, resume=self.resume, greater_is_better=greater_is_better, describe=describe,
                       head=head)
        if self.resume and self.acc.is_main_process:
            save_recipe(self.cfg, self.out / "recipe.yaml")
        return result

    def fit_head(self, fit, rows: int) -> TrainResult:
        """The run of a method that fits its head itself (fit() -> training accuracy) instead of the loop."""
        import time

        t = time.perf_counter()
        accuracy = fit()
        seconds = time.perf_counter() - t
        self.log(f"head: a logistic regression on the frozen features ({accuracy:.3f} of the training rows "
                 f"right), {seconds:.1f} s")
        return TrainResult(train_seconds=seconds, samples_seen=rows)

    @staticmethod
    def loop_metrics(results: list[TrainResult]) -> dict:
        """What the loop did: the last loop's steps and best step, the time of all of them (training apart from
        evaluating)."""
        last = results[-1]
        return {"best_step": last.best_step, "steps": last.steps, "epochs": round(last.epochs_run, 3),
                "stopped_early": last.stopped_early, "train_seconds": round(sum(r.train_seconds for r in results), 2),
                "eval_seconds": round(sum(r.eval_seconds for r in results), 2)}

    def machine_metrics(self) -> dict:
        """Where it ran: precision, processes, device, peak memory, package versions."""
        acc = self.acc
        return {"precision": acc.mixed_precision, "precision_choice": self.precision,
                "num_processes": acc.num_processes, "device": str(acc.device), **peak_memory(), "versions": versions()}

    def save(self, model, tokenizer, metrics: dict, **kwargs) -> None:
        """Weights, tokenizer, anything `extra(out)` adds, then metrics.json (runinfo.save_run)."""
        save_run(self.acc, self.out, model, tokenizer, metrics, **kwargs)
