"""How the package is built: no import cycles, no private names across modules, one schema for the flags."""

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from peftbert.cli import app
from peftbert.config import SELECTION_METRICS, AdaptArgs, AdaptConfig, DataArgs, TuneConfig, TrainArgs
from peftbert.methods import METHODS
from peftbert.methods.lora import LoraArgs
from test_cli import assert_one_line_error, tune_args

PACKAGE = Path(__file__).resolve().parents[1] / "peftbert"
runner = CliRunner()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str]):
    """(imported module, names taken from it) for every import of a peftbert module in `path`."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in modules:
                    yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            if target not in modules:
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{target}.{n}" in modules]  # `from . import lora`
            for n in submodules:
                yield f"{target}.{n}", []
            if len(submodules) < len(names):
                yield target, [n for n in names if n not in submodules]


def import_graph() -> dict[str, dict[str, list[str]]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    graph = {}
    for f in files:
        edges = graph.setdefault(module_name(f), {})
        for target, names in imports(f, modules):
            if target != module_name(f):
                edges.setdefault(target, []).extend(names)
    return graph


def test_no_import_cycles_inside_the_package():
    graph = import_graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in graph.get(m, {}):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_no_private_names_imported_across_modules():
    leaks = [f"{m} imports {name} from {target}" for m, edges in import_graph().items()
             for target, names in edges.items() for name in names
             if name.startswith("_") and not name.endswith("__")]
    assert not leaks, leaks


def command_flags(name: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[name]
    return {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]}


def expected_flags(cls, block=None, dotted=False, skip=()) -> set[str]:
    out = set()
    for f in dataclasses.fields(cls):
        if f.name in skip or f.type in ("TrainArgs", "DataArgs", "AdaptArgs") or f.name in ("method_args", "lora"):
            continue
        out.add(f"--{block}.{f.name}" if dotted else f"--{f.name.replace('_', '-')}")
    return out


TUNE = (expected_flags(TuneConfig) | expected_flags(TrainArgs) | expected_flags(DataArgs)
        | {flag for name, m in METHODS.items() for flag in expected_flags(m.config_cls, name, dotted=True)})
SCHEMA = {
    "tune": TUNE,
    "bench": TUNE - {"--model", "--method", "--output", "--seed"},
    "search": TUNE - {"--output"} | {"--output", "--trials", "--space"},
    # adapt trains no task head, so no --head-lr-ratio, --contrastive(-temperature), --head-refit or --wise (a recipe
    # that sets them is refused)
    "adapt": (expected_flags(AdaptConfig) | expected_flags(AdaptArgs)
              | expected_flags(TrainArgs, skip=("head_lr_ratio", "contrastive", "contrastive_temperature", "head_refit",
                                                "wise"))
              | expected_flags(LoraArgs, "lora", dotted=True)),
}


@pytest.mark.parametrize("command", sorted(SCHEMA))
def test_every_config_field_is_a_flag_in_the_help(command):
    """The flags are generated from the dataclasses: a new field is a new flag, shown by --help."""
    assert SCHEMA[command] <= command_flags(command), sorted(SCHEMA[command] - command_flags(command))
    shown = runner.invoke(app, [command, "--help"], terminal_width=300, env={"COLUMNS": "300"}).output
    missing = [flag for flag in SCHEMA[command] if flag not in shown]
    assert not missing, missing


def test_flags_reach_the_config(tiny_bert, toy_files, tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("peftbert.commands.tune.run_tune", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, tmp_path / "run", "--warmup-ratio", "0.2", "--lora.r",
                                     "4", "--lora.target_modules", "[query, key]", "--no-lora.use_rslora"))
    assert r.exit_code == 0, r.output
    cfg = seen["cfg"]
    assert cfg.train.warmup_ratio == 0.2 and cfg.train.epochs == 1 and cfg.data.max_length == 16
    assert (cfg.method_args.r, cfg.method_args.target_modules, cfg.method_args.use_rslora) == (4, ["query", "key"],
                                                                                              False)


def test_methods_lists_what_a_run_uses():
    """`peftbert methods` prints each setting as `tune --method NAME` resolves it (code defaults < preset)."""
    out = runner.invoke(app, ["methods"]).output
    assert "rslora.r = 16" in out and "rslora.target_modules = 'all-linear'" in out and "lora.r = 16" in out
    assert "(size: adapter.bottleneck)" in out


def test_selection_metrics_are_computed():
    from peftbert.metrics import classification_metrics

    assert set(SELECTION_METRICS) <= set(classification_metrics([0, 1, 1], [0, 1, 0], ["a", "b"]))


def test_misspelt_metric_fails_before_anything_is_written(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, out, "--metric", "macro-f1"))
    assert_one_line_error(r, "train.metric for tune must be one of macro_f1|accuracy|mcc, got 'macro-f1'")
    assert not out.exists()


def test_checkpoints_rotate_through_accelerate(tiny_bert, toy_files, tmp_path):
    from helpers import make_config
    from peftbert.commands.tune import run_tune

    cfg = make_config(tiny_bert, toy_files, "lora", tmp_path / "run", ["train.epochs=2", "train.save_every=2"])
    run_tune(cfg, log=lambda *a: None)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert kept == ["checkpoint_18", "checkpoint_20"]  # 20 steps, saved every 2, the newest two kept
    assert json.loads((tmp_path / "run" / "checkpoints" / "checkpoint_20" / "trainer_state.json").read_text())[
        "step"] == 20


def test_help_does_not_load_torch():
    """`peftbert --help` builds every flag from the schema without importing torch, transformers or peft."""
    import subprocess
    import sys

    code = "import sys, peftbert.cli; print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_other_methods_settings_are_refused_and_task_flag_wins(tiny_bert, toy_files, tmp_path):
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, tmp_path / "run", "--method", "adapter", "--lora.r", "4"))
    assert_one_line_error(r, "lora settings given (--lora.*) but the method is adapter")
    from peftbert.config import build_config
    from peftbert.methods import method_configs

    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: sst2\n")
    assert build_config(str(recipe), {"data": {"task": "rte"}}, method_configs()).data.task == "rte"
    assert build_config(str(recipe), {}, method_configs()).data.task == "sst2"


def test_bad_yaml_in_a_flag_is_one_line(tiny_bert, toy_files, tmp_path):
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, tmp_path / "run", "--lora.target_modules", "[query"))
    assert_one_line_error(r, "--lora.target_modules '[query' is not valid YAML")
