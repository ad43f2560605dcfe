"""Command-line flags generated from the config dataclasses: one schema, no option written twice.

A field `lr` of TrainArgs becomes `--lr` (help from its metadata, type from its annotation); a field of a
method's config becomes `--<method>.<field>` (e.g. `--lora.r`). A flag left out is None and so leaves the
recipe's value alone. `command(fn, flags)` gives `fn(values, **own_options)` a signature typer reads: fn's
own options (recipe, resume, ...) plus the generated flags; `values` is the nested dict of flags given.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from typing import List, Optional

import typer

from .config import yaml_load
from .errors import UserError


@dataclass(frozen=True)
class Flag:
    path: tuple[str, ...]  # where the value goes: ("train", "lr") or ("model",)
    decl: str  # "--lr", "--lora.r", "--whole-word-mask/--no-whole-word-mask"
    annotation: object  # what typer parses: Optional[int], Optional[bool], ...
    help: str
    panel: str | None
    as_yaml: bool = False  # lists and unions arrive as text and are read as YAML ("[query, value]")

    @property
    def param(self) -> str:
        return "__".join(self.path).replace("-", "_")


def flags(cls, block: str | None = None, *, panel: str | None = None, dotted: bool = False,
          skip: tuple[str, ...] = ()) -> list[Flag]:
    """One flag per field of the dataclass `cls`; nested dataclass fields (train, data, ...) are skipped.

    `block` is where the values go (None: top level); `dotted` names them `--block.field` (method blocks,
    whose field names repeat across methods) instead of `--field`.
    """
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help")
        if f.name in skip or not f.init or help_text is None:  # no help: not a user setting (method_args)
            continue
        annotation, as_yaml = _cli_type(hints[f.name])
        name = f"{block}.{f.name}" if dotted else f.name.replace("_", "-")
        decl = f"--{name}/--no-{name}" if annotation is Optional[bool] else f"--{name}"
        path = (block, f.name) if block else (f.name,)
        out.append(Flag(path, decl, annotation, help_text, panel, as_yaml))
    return out


def _cli_type(hint):
    """(annotation typer understands, whether the text is read as YAML)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if hint in (int, float, str, bool):
        return Optional[hint], False
    if origin is list and typing.get_args(hint) == (str,):
        return Optional[List[str]], False  # a repeatable flag
    return Optional[str], True  # str | list and other unions: YAML text


def command(fn, generated: list[Flag]):
    """A typer command: fn's own parameters (all but the first, `values`) followed by the generated flags."""
    seen = {}
    for f in generated:
        for d in f.decl.split("/"):
            if d in seen:
                raise ValueError(f"{fn.__name__}: flag {d} comes from both {seen[d]} and {f.path}")
            seen[d] = f.path
    own = list(inspect.signature(fn, eval_str=True).parameters.values())[1:]
    params = own + [inspect.Parameter(f.param, inspect.Parameter.KEYWORD_ONLY, annotation=f.annotation,
                                      default=typer.Option(None, f.decl, help=f.help, rich_help_panel=f.panel,
                                                           show_default=False))
                    for f in generated]

    def wrapper(**kwargs):
        values: dict = {}
        for f in generated:
            v = kwargs.pop(f.param)
            if v is None or v == []:
                continue
            node = values
            for key in f.path[:-1]:
                node = node.setdefault(key, {})
            node[f.path[-1]] = read_yaml_value(v, f.decl) if f.as_yaml else v
        return fn(values, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def read_yaml_value(text: str, flag: str):
    import yaml

    try:
        return yaml_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{flag} {text!r} is not valid YAML ({str(e).splitlines()[0]}); "
                        "write a name, or a list like \"[query, value]\"") from None


def method_flags(skip_blocks: tuple[str, ...] = ()) -> list[Flag]:
    """`--<method>.<field>` for every registered method, one help panel each."""
    from .methods import METHODS

    return [f for name, m in METHODS.items() if name not in skip_blocks
            for f in flags(m.config_cls, name, panel=f"Method {name} ({name}.*)", dotted=True)]


def tune_flags(skip: tuple[str, ...] = ()) -> list[Flag]:
    """The flags of `tune` (and, minus the grid's keys, of `bench`): run keys, train.*, data.*, methods."""
    from .config import DataArgs, TuneConfig, TrainArgs

    return (flags(TuneConfig, skip=skip) + flags(DataArgs, "data", panel="Data (data.*)", skip=skip)
            + flags(TrainArgs, "train", panel="Training (train.*)", skip=skip) + method_flags())


def adapt_flags() -> list[Flag]:
    from .config import HEAD_SETTINGS, AdaptArgs, AdaptConfig, TrainArgs
    from .methods.lora import LoraArgs

    return (flags(AdaptConfig) + flags(AdaptArgs, "adapt", panel="Adaptation (adapt.*)")
            + flags(TrainArgs, "train", panel="Training (train.*)", skip=HEAD_SETTINGS)
            + flags(LoraArgs, "lora", panel="LoRA, with --method lora (lora.*)", dotted=True))
