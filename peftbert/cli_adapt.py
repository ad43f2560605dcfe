"""The `peftbert adapt` command: its own options here, every config field as a generated flag.

Kept thin like `tune`: flags -> a typed AdaptConfig -> peftbert.commands.adapt.run_adapt. The library is
imported inside the function so `peftbert --help` stays fast.
"""

from typing import List, Optional

from typer import Option

from .cli_options import adapt_flags, command


def run(
    values: dict,
    recipe: Optional[str] = Option(None, help="YAML recipe merged over recipes/adapt/default.yaml"),
    resume: Optional[str] = Option(None, help="continue from 'latest' or a checkpoint directory"),
    overwrite: bool = Option(False, help="replace an existing run directory"),
    cpu: bool = Option(False, help="train on the CPU even when a GPU is present"),
    set_: Optional[List[str]] = Option(None, "--set", help="override a recipe key, e.g. --set adapt.block_size=256"),
):
    """Continue masked-LM pretraining on domain or task text; writes a checkpoint `tune --model` loads."""
    from .commands.adapt import run_adapt
    from .config import build_adapt_config, deep_merge, parse_set

    cfg = build_adapt_config(recipe, deep_merge(values, parse_set(set_)))
    run_adapt(cfg, overwrite=overwrite, resume=resume, cpu=cpu)


adapt = command(run, adapt_flags())
