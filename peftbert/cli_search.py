"""The `peftbert search` command: the search's own options here; every tune setting is a generated flag."""

from typing import List, Optional

from typer import Context, Option

from .cli_options import command, tune_flags


def run(
    values: dict,
    ctx: Context,
    trials: int = Option(20, help="finished trials to reach (a continued search counts the earlier ones)"),
    minutes: Optional[float] = Option(None, help="start no new trial after this many minutes (wall-time budget)"),
    space: Optional[str] = Option(None, help="YAML of ranges merged over the method's default space (null drops one)"),
    show_space: bool = Option(False, help="print the search space and exit"),
    prune: bool = Option(True, help="stop trials whose validation score trails the median of earlier trials"),
    output: str = Option("runs/search", help="study directory: study.db, trials/, trials.csv/.md, best.yaml"),
    overwrite: bool = Option(False, help="replace an existing search in --output instead of continuing it"),
    recipe: Optional[str] = Option(None, help="YAML recipe every trial starts from (default: tune's)"),
    cpu: bool = Option(False, help="train on the CPU even when a GPU is present"),
    storage: Optional[str] = Option(None, help="shared study for workers on many processes or machines: "
                                    "journal:PATH or a database URL (postgresql://, mysql://, sqlite:///)"),
    study: str = Option("peftbert", help="study name inside --storage (one database can hold several searches)"),
    workers: int = Option(1, help="start N worker processes here on one study (a journal in --output unless "
                          "--storage), each with its share of the cores"),
    heartbeat: float = Option(30.0, help="seconds between a worker's signs of life; a trial silent for 4 of them "
                              "is run again by another worker"),
    set_: Optional[List[str]] = Option(None, "--set", help="fix a recipe key in every trial, e.g. --set lora.r=16"),
):
    """Search a method's hyper-parameters with Optuna on validation; write a trials table and the best recipe."""
    import shlex

    import yaml

    from .config import deep_merge, parse_set
    from .search import masked, resolve_space, run_search

    values = deep_merge(values, parse_set(set_))
    if show_space:
        _, resolved = resolve_space(values, recipe, space)
        print(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None, width=200), end="")
        return
    # as typed (cli.OneLineErrors keeps it), less --overwrite: the recorded command continues the study
    argv = [a for a in ctx.meta.get("peftbert.argv", ["search"]) if a not in ("--overwrite", "--no-overwrite")]
    run_search(values, recipe=recipe, space_file=space, trials=trials, minutes=minutes, output=output,
               overwrite=overwrite, prune=prune, cpu=cpu, storage=storage, study_name=study, workers=workers,
               heartbeat=heartbeat, argv=argv, command=shlex.join(["peftbert", *map(masked, argv)]))


search = command(run, tune_flags(skip=("output",)))
