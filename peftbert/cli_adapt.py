"""The `peftbert adapt` command; cli.py registers it with `app.command()(friendly(adapt))`.

Kept thin like `tune`: flags -> a typed AdaptConfig -> peftbert.adapt.run_adapt. The library is
imported inside the function so `peftbert --help` stays fast.
"""

from __future__ import annotations

from typing import List, Optional

import typer


def _given(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


def adapt(
    model: Optional[str] = typer.Option(None, help="model: 'minilm' (embedded default), a local directory, or a hub id"),
    domain: Optional[str] = typer.Option(None, help="domain whose corpus to read: a name under recipes/domains (finance) or a YAML file"),
    corpus: Optional[List[str]] = typer.Option(None, help="text source (repeatable): .txt/.txt.gz file, directory, CSV/JSONL/Parquet, or hub dataset id"),
    task: Optional[str] = typer.Option(None, help="task-adaptive pretraining: use this labelled task's training text"),
    text_column: Optional[str] = typer.Option(None, help="text column of table sources (default: text, sentence, content or body)"),
    data_dir: Optional[str] = typer.Option(None, help="data directory that domain corpora and tasks are read from [env PEFTBERT_DATA_DIR]"),
    recipe: Optional[str] = typer.Option(None, help="YAML recipe merged over recipes/adapt/default.yaml"),
    output: Optional[str] = typer.Option(None, help="run directory (default runs/adapt-<domain|task|corpus>-<method>-<model>-s<seed>)"),
    method: Optional[str] = typer.Option(None, help="full (every weight) or lora (merged back into a plain checkpoint)"),
    block_size: Optional[int] = typer.Option(None, help="tokens per packed training block, [CLS] and [SEP] included"),
    mlm_probability: Optional[float] = typer.Option(None, help="share of tokens predicted (of those: 80% [MASK], 10% random, 10% kept)"),
    whole_word_mask: Optional[bool] = typer.Option(None, "--whole-word-mask/--no-whole-word-mask", help="mask all pieces of a word together"),
    max_tokens: Optional[int] = typer.Option(None, help="training-token budget: documents are sampled until it is reached"),
    heldout_fraction: Optional[float] = typer.Option(None, help="share of each source's documents held out for evaluation"),
    max_heldout_tokens: Optional[int] = typer.Option(None, help="cap on held-out tokens (evaluation cost)"),
    head_warmup_steps: Optional[int] = typer.Option(None, help="first train only the MLM head for N steps (encoder frozen)"),
    lora_r: Optional[int] = typer.Option(None, help="LoRA rank (with --method lora)"),
    lora_alpha: Optional[float] = typer.Option(None, help="LoRA scaling numerator (with --method lora)"),
    epochs: Optional[float] = typer.Option(None, help="passes over the training blocks"),
    max_steps: Optional[int] = typer.Option(None, help="stop after this many optimizer steps"),
    batch_size: Optional[int] = typer.Option(None, help="blocks per device per step"),
    grad_accum: Optional[int] = typer.Option(None, help="batches accumulated per optimizer step"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate (recipe default 1e-4; about 5e-4 for lora)"),
    precision: Optional[str] = typer.Option(None, help="auto|no|bf16|fp16 (auto: bf16 where the hardware has it)"),
    seed: Optional[int] = typer.Option(None, help="random seed (split, sampling, masks, init, shuffling)"),
    eval_every: Optional[int] = typer.Option(None, help="evaluate the held-out set every N steps"),
    save_every: Optional[int] = typer.Option(None, help="write a resumable checkpoint every N steps"),
    resume: Optional[str] = typer.Option(None, help="continue from 'latest' or a checkpoint directory"),
    overwrite: bool = typer.Option(False, help="replace an existing run directory"),
    cpu: bool = typer.Option(False, help="train on the CPU even when a GPU is present"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override any recipe key, e.g. --set adapt.block_size=256"),
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
