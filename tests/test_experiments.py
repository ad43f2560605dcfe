"""experiments/: the committed tables are what the result files give, the runner runs and collects, presets cite
their evidence."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from experiments.__main__ import main
from experiments.catalog import ROOT, all_experiments

REPO = ROOT.parent


def test_committed_tables_match_the_result_files(capsys):
    """Every experiment README, INDEX.md and README.md's results block: regenerated, they equal what is committed."""
    assert main(["tables", "--check"]) == 0, capsys.readouterr().out


def write_experiment(root: Path, exp_id: str, commands: list[str], **extra) -> Path:
    d = root / exp_id
    d.mkdir(parents=True)
    data = {"id": exp_id, "title": "A tiny grid", "status": "current", "machine": "CPU: this one", "commit": "test",
            "evidence_for": "the runner", "headline": "tiny", "commands": commands, **extra}
    (d / "experiment.yaml").write_text(json.dumps(data))  # JSON is YAML
    return d


@pytest.fixture
def tiny_suite(tiny_bert, tmp_path) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"tasks: [finance-sample]\nmodels: [{tiny_bert}]\nmethods: [full, bitfit]\nseeds: [1]\n")
    return suite


def test_run_collects_results_and_tables_them_and_check_catches_changes(tiny_bert, tiny_suite, tmp_path, capsys):
    root, runs = tmp_path / "experiments", tmp_path / "runs"
    bench = (f"{sys.executable} -m peftbert.cli bench --suite {tiny_suite} --output {{out}} --max-steps 2 "
             "--set data.max_length=16 --set train.precision=no")
    d = write_experiment(root, "tiny", [bench],
                         collect=[{"files": ["*/runs/*/metrics.json", "*/baselines.json"]}],
                         tables=[{"kind": "grid", "title": "Test", "dir": "results", "suite": str(tiny_suite),
                                  "per_task": True}],
                         readme_rows=[{"dir": "results", "suite": str(tiny_suite), "group": "finance-sample",
                                       "method": "bitfit", "model": tiny_bert.name}])
    readme = tmp_path / "README.md"  # the README next to the experiments root: the one `run` and `tables` fill
    stale_block = "# x\n<!-- results:begin -->\nold\n<!-- results:end -->\nafter\n"
    readme.write_text(stale_block)

    # --dry-run prints the commands with {out} filled in, runs and copies nothing
    assert main(["--root", str(root), "run", "tiny", "--dry-run", "--runs", str(runs)]) == 0
    assert f"--output {runs / 'tiny'} " in capsys.readouterr().out
    assert not runs.exists() and not (d / "results").exists()

    assert main(["--root", str(root), "run", "tiny", "--runs", str(runs)]) == 0
    metrics = sorted((d / "results").glob("finance-sample/runs/*/metrics.json"))
    assert [m.parent.name for m in metrics] == [f"{tiny_bert.name}-bitfit-s1", f"{tiny_bert.name}-full-s1"]
    assert (d / "results/finance-sample/baselines.json").is_file()
    f1 = json.loads(metrics[0].read_text())["test"]["macro_f1"]
    row = rf"\| {tiny_bert.name} \| bitfit \| [\d.]+ \| 1 \| [\d.]+ \| {f1:.4f} \|"
    assert re.search(row, (d / "README.md").read_text())
    assert "[tiny](tiny/README.md)" in (root / "INDEX.md").read_text()
    block = readme.read_text()
    assert re.search(rf"\| finance-sample \| bitfit \| [\d.]+ \| 1 \| [\d.]+ \| {f1:.4f} \|", block)
    assert block.startswith("# x\n<!-- results:begin -->\n| task |") and block.endswith("<!-- results:end -->\nafter\n")
    assert main(["--root", str(root), "tables", "--check"]) == 0

    # a changed result file, or a hand-edited block, makes the check fail until the tables are regenerated
    capsys.readouterr()
    m = json.loads(metrics[0].read_text())
    m["test"]["macro_f1"] += 0.01
    metrics[0].write_text(json.dumps(m))
    assert main(["--root", str(root), "tables", "--check"]) == 1
    out = capsys.readouterr().out
    assert f"stale: {d / 'README.md'}" in out and f"stale: {readme}" in out
    assert main(["--root", str(root), "tables"]) == 0
    assert main(["--root", str(root), "tables", "--check"]) == 0
    readme.write_text(stale_block)
    assert main(["--root", str(root), "tables", "--check"]) == 1


def test_a_failing_command_stops_the_run_with_one_line(tmp_path, capsys):
    root = tmp_path / "experiments"
    write_experiment(root, "broken", ["exit 3", "touch {out}/never"])
    assert main(["--root", str(root), "run", "broken", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: broken: command 1 of 2 failed (exit 3)") and "\n" not in err
    assert not (tmp_path / "runs/broken/never").exists()


@pytest.mark.parametrize("change, needle", [
    ({"status": "done"}, "status must be one of current, superseded"),
    ({"id": "other"}, "differs from its folder"),
    ({"conclusion": "a\nb\nc\nd\ne\nf"}, "more than 5 lines"),
    ({"colour": "red"}, "unknown colour"),
])
def test_bad_experiment_yaml_is_one_line(tmp_path, capsys, change, needle):
    root = tmp_path / "experiments"
    d = write_experiment(root, "x", ["true"])
    data = json.loads((d / "experiment.yaml").read_text())
    (d / "experiment.yaml").write_text(json.dumps({**data, **change}))
    assert main(["--root", str(root), "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
    assert main(["--root", str(root), "run", "nonesuch", "--dry-run"]) == 2


def test_superseded_experiments_are_read_not_rerun(tmp_path, capsys):
    root = tmp_path / "experiments"
    write_experiment(root / "archive", "old", ["true"], status="superseded")
    assert main(["--root", str(root), "run", "old", "--runs", str(tmp_path / "runs")]) == 2
    assert "superseded" in capsys.readouterr().err
    assert main(["--root", str(root), "run", "old", "--dry-run"]) == 0


def test_every_preset_names_one_current_experiment_that_documents_it():
    """recipes/methods/<m>.yaml: settings plus one line `# evidence: experiments/<id>`; that experiment is current
    and carries the preset's provenance."""
    current = {e.id: e for e in all_experiments() if e.status == "current"}
    for preset in sorted((REPO / "recipes/methods").glob("*.yaml")):
        comments = [line for line in preset.read_text().splitlines() if line.startswith("#")]
        assert len(comments) == 1, f"{preset.name}: {comments}"
        found = re.fullmatch(r"# evidence: experiments/([\w.-]+)", comments[0])
        assert found and found.group(1) in current, f"{preset.name}: {comments[0]}"
        assert preset.stem in current[found.group(1)].presets, f"{preset.name} not in {found.group(1)}'s presets"


def test_a_copied_experiment_tree_checks_clean(tmp_path):
    """The check does not depend on where the tree lives (links and paths are relative)."""
    root = tmp_path / "experiments"
    shutil.copytree(ROOT / "fomc-lora", root / "fomc-lora")
    assert main(["--root", str(root), "tables", "--readme", str(tmp_path / "none.md")]) == 0
    assert (root / "fomc-lora/README.md").read_text() == (ROOT / "fomc-lora/README.md").read_text()
