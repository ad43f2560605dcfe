"""Grids and searches spread over processes as docs/cluster.md shows them: bench shards writing one --output at
the same time, and the copyable examples naming only flags the CLI has."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_bench import bench_args

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"


def test_two_shards_at_once_fill_one_table(tiny_bert, toy_files, tmp_path):
    """`bench --shard 1/2` and `--shard 2/2` started together into one --output (an array job's two tasks): each
    runs its own cells, and the tables both leave hold every cell of the grid."""
    out = tmp_path / "bench"
    args = bench_args(tiny_bert, toy_files, out, "--methods", "lora,bitfit", "--seeds", "3,4")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "peftbert.cli", *args, "--shard", f"{k}/2"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in (1, 2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    name = tiny_bert.name
    cells = [f"{name}-lora-s3", f"{name}-lora-s4", f"{name}-bitfit-s3", f"{name}-bitfit-s4"]
    ran = [re.findall(r"\] (\S+-s\d)\s*$", o, re.M) for o in outputs]
    assert sorted(ran[0]) == sorted(cells[0::2]) and sorted(ran[1]) == sorted(cells[1::2]), outputs  # none twice
    with open(out / "results.csv") as f:
        assert sorted(row["run"] for row in csv.DictReader(f)) == sorted(cells)
    summary = (out / "summary.md").read_text()
    assert "lora" in summary and "bitfit" in summary
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.tmp.png"))


def example_commands() -> list[tuple[str, list[str]]]:
    """(file, flags) of every `peftbert CMD ...` line (with its continuation lines) in docs/examples."""
    found = []
    for path in sorted(EXAMPLES.iterdir()):
        text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continued lines
        for m in re.finditer(r"(?:peftbert(?:\.cli)?) (adapt|tune|bench|search)\b([^\n]*)", text):
            flags = re.findall(r"(--[a-z][a-z0-9-]*)", m.group(2))
            found.append((f"{path.name}: {m.group(1)}", [m.group(1), *flags]))
    return found


def test_examples_use_flags_the_cli_has():
    from typer.testing import CliRunner

    from peftbert.cli import app

    commands = example_commands()
    assert {c.split(": ")[1] for c, _ in commands} >= {"bench", "search", "tune"}, commands
    helps = {}
    for where, (cmd, *flags) in commands:
        if cmd not in helps:
            helps[cmd] = CliRunner().invoke(app, [cmd, "--help"], terminal_width=400).output
        missing = [f for f in flags if not re.search(rf"{re.escape(f)}(?![\w-])", helps[cmd])]
        assert not missing, f"{where} uses {missing}, which `peftbert {cmd}` does not have"


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.s*")))
def test_example_scripts_parse(script):
    """bash -n: the copyable scripts are at least valid shell."""
    r = subprocess.run(["bash", "-n", str(EXAMPLES / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
