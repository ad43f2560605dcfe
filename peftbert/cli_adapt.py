"""The `peftbert adapt` command; cli.py registers it with `app.command()(friendly(adapt))`.

Kept thin like `tune`: flags -> a typed AdaptConfig -> peftbert.adapt.run_adapt. The library is
imported inside the function so `peftbert --help` stays fast.
"""

from typing import List, Optional

import typer
from typer import Option

Str, Int, Float, Strs = Optional[str], Optional[int], Optional[float], Optional[List[str]]  # unset = None


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def adapt(
    model: Str = Option(None, help="'minilm' (embedded default), a local directory, or a hub id"),
    domain: Str = Option(None, help="domain corpus: a name in recipes/domains (finance) or a YAML file"),
    corpus: Strs = Option(None, help="text source (repeatable): .txt(.gz), folder, CSV/JSONL/Parquet, hub id"),
    task: Str = Option(None, help="task-adaptive pretraining on this task's training text"),
    text_column: Str = Option(None, help="text column of table sources (default: text/sentence/content/body)"),
    data_dir: Str = Option(None, help="where domain corpora and tasks live (env PEFTBERT_DATA_DIR)"),
    recipe: Str = Option(None, help="YAML recipe merged over recipes/adapt/default.yaml"),
    output: Str = Option(None, help="run directory (default runs/adapt-<source>-<method>-<model>-s<seed>)"),
    method: Str = Option(None, help="full (every weight) or lora (merged into a plain checkpoint)"),
    block_size: Int = Option(None, help="tokens per packed block, [CLS] and [SEP] included"),
    mlm_probability: Float = Option(None, help="share of tokens predicted (80% [MASK], 10% random, 10% kept)"),
    whole_word_mask: Optional[bool] = Option(None, "--whole-word-mask/--no-whole-word-mask",
                                             help="mask all pieces of a word together"),
    max_tokens: Int = Option(None, help="training-token budget (documents sampled until reached)"),
    heldout_fraction: Float = Option(None, help="share of each source's documents held out"),
    max_heldout_tokens: Int = Option(None, help="cap on held-out tokens (evaluation cost)"),
    head_warmup_steps: Int = Option(None, help="first train only the MLM head N steps (encoder frozen)"),
    lora_r: Int = Option(None, help="LoRA rank (with --method lora)"),
    lora_alpha: Float = Option(None, help="LoRA scaling numerator (with --method lora)"),
    epochs: Float = Option(None, help="passes over the training blocks"),
    max_steps: Int = Option(None, help="stop after this many optimizer steps"),
    batch_size: Int = Option(None, help="blocks per device per step"),
    grad_accum: Int = Option(None, help="batches accumulated per optimizer step"),
    lr: Float = Option(None, help="peak learning rate (default 1e-4; about 5e-4 for lora)"),
    precision: Str = Option(None, help="auto|no|bf16|fp16 (auto: bf16 where supported)"),
    seed: Int = Option(None, help="random seed (split, sampling, masks, init, shuffling)"),
    eval_every: Int = Option(None, help="evaluate the held-out set every N steps"),
    save_every: Int = Option(None, help="write a resumable checkpoint every N steps"),
    resume: Str = Option(None, help="continue from 'latest' or a checkpoint directory"),
    overwrite: bool = Option(False, help="replace an existing run directory"),
    cpu: bool = Option(False, help="train on the CPU even when a GPU is present"),
    set_: Strs = Option(None, "--set", help="override a recipe key, e.g. --set adapt.block_size=256"),
):
    """Continue masked-LM pretraining on domain or task text; writes a checkpoint `tune --model` loads."""
    from .adapt import build_adapt_config, run_adapt
    from .config import deep_merge, parse_set

    cli = _given(model=model, domain=domain, corpus=corpus or None, task=task, text_column=text_column,
                 data_dir=data_dir, output=output)
    cli["train"] = _given(epochs=epochs, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                          precision=precision, seed=seed, eval_every=eval_every, save_every=save_every)
    cli["adapt"] = _given(method=method, block_size=block_size, mlm_probability=mlm_probability,
                          whole_word_mask=whole_word_mask, max_tokens=max_tokens, heldout_fraction=heldout_fraction,
                          max_heldout_tokens=max_heldout_tokens, head_warmup_steps=head_warmup_steps,
                          lora_r=lora_r, lora_alpha=lora_alpha)
    cfg = build_adapt_config(recipe, deep_merge(cli, parse_set(set_)))
    run_adapt(cfg, overwrite=overwrite, resume=resume, cpu=cpu)
