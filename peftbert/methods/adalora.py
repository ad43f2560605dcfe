"""AdaLoRA (Zhang et al. 2023) through peft: SVD-shaped LoRA updates whose ranks are pruned during training.

Every adapted matrix starts at init_r; between tinit and total_steps - tfinal the total rank is cut on a
cubic schedule to target_r x (number of matrices), keeping the most important singular triplets; the
final tfinal steps train with the rank pattern fixed. The loop drives it through `on_optimizer_step`
(after optimizer.step, while the gradients the importance scores need are still there). peft's
AdaLoraModel.forward adds the orthogonality penalty to the loss whenever labels are passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UserError
from ..models import count_params
from .base import Method, register
from .lora import resolve_targets


@dataclass
class AdaLoraArgs:
    target_r: int = field(default=8, metadata={"help": "average final rank per adapted matrix (sets the budget)"})
    init_r: int | None = field(default=None, metadata={
        "help": "starting rank per matrix (default: ceil(1.5 x target_r), the paper's b(0) = 1.5 b(T))"})
    alpha: float = field(default=16, metadata={"help": "scaling numerator (update scaled by alpha/init_r)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on the adapter input"})
    target_modules: str | list = field(default="all-linear", metadata={
        "help": "all-linear (every encoder matrix, the paper's), qv, or a list of module names"})
    tinit_frac: float = field(default=0.1, metadata={"help": "share of steps at init_r before pruning starts"})
    tfinal_frac: float = field(default=0.3, metadata={"help": "share of steps at the end with the ranks fixed"})
    deltaT: int = field(default=10, metadata={"help": "optimizer steps between rank reallocations"})
    beta1: float = field(default=0.85, metadata={"help": "EMA factor of the importance (sensitivity) score"})
    beta2: float = field(default=0.85, metadata={"help": "EMA factor of its uncertainty"})
    orth_reg_weight: float = field(default=0.1, metadata={"help": "weight of the orthogonality penalty (gamma)"})

    def __post_init__(self):
        if self.target_r <= 0 or self.init_rank <= self.target_r:
            raise UserError(f"adalora needs 0 < target_r < init_r (got target_r={self.target_r}, "
                            f"init_r={self.init_rank}): nothing to prune otherwise")
        if not (0 <= self.tinit_frac and 0 <= self.tfinal_frac and self.tinit_frac + self.tfinal_frac < 1):
            raise UserError("adalora.tinit_frac and tfinal_frac must be >= 0 and sum to less than 1 "
                            f"(got {self.tinit_frac} and {self.tfinal_frac})")
        if self.deltaT <= 0 or self.alpha <= 0 or not 0 <= self.dropout < 1 or self.orth_reg_weight < 0:
            raise UserError("adalora needs deltaT > 0, alpha > 0, 0 <= dropout < 1, orth_reg_weight >= 0")
        if not (0 < self.beta1 < 1 and 0 < self.beta2 < 1):
            raise UserError(f"adalora.beta1 and beta2 must be in (0, 1), got {self.beta1}, {self.beta2}")

    @property
    def init_rank(self) -> int:
        return self.init_r if self.init_r is not None else math.ceil(1.5 * self.target_r)


def schedule(cfg: AdaLoraArgs, total_steps: int) -> dict:
    """Phases as fractions of the run, so the schedule scales with its length; int() keeps tinit < T - tfinal."""
    return {"total_step": total_steps, "tinit": int(cfg.tinit_frac * total_steps),
            "tfinal": int(cfg.tfinal_frac * total_steps)}


PROVISIONAL_STEPS = 1000  # until the loop's plan arrives in on_train_begin


def apply(model, cfg: AdaLoraArgs, ctx):
    from peft import AdaLoraConfig, TaskType, get_peft_model

    config = AdaLoraConfig(
        task_type=ctx.task_type and TaskType(ctx.task_type), target_r=cfg.target_r, init_r=cfg.init_rank,
        lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=resolve_targets(cfg.target_modules, ctx.arch),
        deltaT=cfg.deltaT, beta1=cfg.beta1, beta2=cfg.beta2, orth_reg_weight=cfg.orth_reg_weight,
        modules_to_save=ctx.modules_to_save, **schedule(cfg, ctx.total_steps or PROVISIONAL_STEPS))
    try:
        model = get_peft_model(model, config)
    except ValueError as e:
        raise UserError(f"adalora: {str(e).splitlines()[0][:200]} (set adalora.target_modules)") from None
    _evaluate_saved_ranks(model.base_model)
    return model


def on_train_begin(model, plan, cfg: AdaLoraArgs):
    """The budget schedule runs over the optimizer steps the loop will really take (its StepPlan)."""
    tuner = model.base_model
    for key, value in schedule(cfg, plan.total_steps).items():
        setattr(tuner.peft_config[tuner.trainable_adapter_name], key, value)  # the rank allocator reads this too


def on_optimizer_step(model, step: int):
    tuner = model.base_model
    name = tuner.trainable_adapter_name
    cfg = tuner.peft_config[name]
    if cfg.rank_pattern is None and step > cfg.total_step - cfg.tfinal:
        # resumed (--resume) inside the final phase: the pattern is not in the checkpoint, but the pruned
        # singular values are, as zeros (they are re-masked after every step of that phase)
        cfg.rank_pattern = {n: (p.detach().view(-1) != 0).tolist() for n, p in tuner.model.named_parameters()
                            if f".lora_E.{name}" in n}
    tuner.update_and_allocate(step)  # importance update, budget schedule, masking: all peft's


def _evaluate_saved_ranks(tuner):
    """In no-grad evaluation, run with the pruned singular values zeroed, then put them back.

    save_pretrained keeps only the triplets of the current rank pattern, but the in-memory weights can hold
    more: pruned values regrow between reallocations, and the loop restores its best weights (possibly from
    before the final pruning) after training. Masking only for evaluation makes every reported score that of
    the model that gets saved, without changing the training trajectory.
    """
    import torch

    kept = {}

    def mask(module, args):
        pattern = module.peft_config[module.trainable_adapter_name].rank_pattern
        if module.training or torch.is_grad_enabled() or not pattern:  # in-place edits would break backward
            return
        kept.update({n: p.detach().clone() for n, p in module.model.named_parameters() if ".lora_E." in n})
        module.rankallocator.mask_using_rank_pattern(module.model, pattern)

    def unmask(module, args, output):
        if kept:
            with torch.no_grad():
                for n, p in module.model.named_parameters():
                    if n in kept:
                        p.copy_(kept[n])
            kept.clear()

    tuner.register_forward_pre_hook(mask)
    tuner.register_forward_hook(unmask)


def rank_summary(model) -> dict:
    """Ranks per adapted matrix at the start (init_r) and as saved (the rank pattern), for metrics.json."""
    tuner = model.base_model
    name = getattr(tuner, "trainable_adapter_name", None) or tuner.active_adapters[0]
    cfg = tuner.peft_config[name]
    modules = sorted({n.rsplit(".lora_E", 1)[0] for n, _ in tuner.model.named_parameters() if ".lora_E." in n})
    # pattern keys are "<module>.lora_E.<adapter>" (or without the adapter name once saved)
    pattern = {k.replace(f".lora_E.{name}", "").replace(".lora_E", ""): v for k, v in (cfg.rank_pattern or {}).items()}
    final = {m: int(sum(pattern[m])) if m in pattern else cfg.init_r for m in modules}
    # one singular triplet of a matrix costs a row of P, a column of Q and its value: in + out + 1 parameters
    shapes = {n.rsplit(".lora_A", 1)[0]: p.shape for n, p in tuner.model.named_parameters() if ".lora_A." in n}
    per_rank = {m: shapes[m][1] + tuner.model.get_submodule(m).out_features + 1 for m in modules}
    initial_params = sum(cfg.init_r * per_rank[m] for m in modules)
    final_params = sum(final[m] * per_rank[m] for m in modules)
    return {"kept_params": count_params(model)["trainable_params"] - initial_params + final_params, "adalora": {
        "init_r": cfg.init_r, "target_r": cfg.target_r, "target_total_rank": cfg.target_r * len(modules),
        "initial_total_rank": cfg.init_r * len(modules), "final_total_rank": sum(final.values()),
        "initial_ranks": {m: cfg.init_r for m in modules}, "final_ranks": final,
        # adapter parameters outside the head: all trained at the start, those of kept triplets at the end
        "initial_params": initial_params, "final_params": final_params,
        "schedule": {"total_step": cfg.total_step, "tinit": cfg.tinit, "tfinal": cfg.tfinal, "deltaT": cfg.deltaT},
    }}


register(Method(
    "adalora", AdaLoraArgs, apply, help="LoRA with ranks pruned to a budget during training (peft AdaLoRA)",
    # sized by its final budget, as in the paper (Table 7): target_r triplets per matrix, counted as a run
    # whose every matrix holds that many; it trains init_r = ceil(1.5 x target_r) until pruning ends
    knob="target_r", resize=lambda size: {"target_r": size, "init_r": math.ceil(1.5 * size)},
    measure=lambda size: {"target_r": 1, "init_r": size},
    on_train_begin=on_train_begin, on_optimizer_step=on_optimizer_step, summary=rank_summary,
    space={"target_r": {"choices": [4, 8, 16]}, "alpha": {"choices": [8, 16, 32]},
           "dropout": {"low": 0.0, "high": 0.2}, "orth_reg_weight": {"choices": [0.0, 0.1, 0.5]}}))
