"""`peftbert bench`: a grid of tiny runs, its tables and plot, resuming, and bad input."""

import csv
import json
import statistics

import yaml

import pytest
from typer.testing import CliRunner

from peftbert.bench_report import summarise
from peftbert.cli import app
from test_cli import assert_one_line_error

runner = CliRunner()


def bench_args(tiny_bert, toy_files, out, *extra):
    return ["bench", "--models", str(tiny_bert), "--train-file", str(toy_files["train"]),
            "--validation-file", str(toy_files["validation"]), "--test-file", str(toy_files["test"]),
            "--output", str(out), "--max-steps", "4", "--set", "data.max_length=16", "--set", "train.precision=no",
            *extra]


def test_grid_writes_tables_and_plot_and_resumes(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "bench"
    args = bench_args(tiny_bert, toy_files, out, "--methods", "lora,bitfit", "--seeds", "3,4", "--budget", "2k")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "--budget sizes lora; bitfit run at their own size" in r.output

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    name = tiny_bert.name
    assert [row["run"] for row in rows] == [f"{name}-lora-s3", f"{name}-lora-s4", f"{name}-bitfit-s3",
                                            f"{name}-bitfit-s4"]
    for row in rows:  # every row is its run's own metrics.json, test split
        m = json.loads((out / "runs" / row["run"] / "metrics.json").read_text())
        assert row["split"] == "test" and float(row["macro_f1"]) == round(m["test"]["macro_f1"], 6)
        assert int(row["seed"]) == m["seed"] and int(row["trainable_params"]) == m["trainable_params"]
        assert int(row["kept_params"]) == m["trainable_params"]  # only AdaLoRA keeps fewer than it trains
    lora = [row for row in rows if row["method"] == "lora"]
    assert abs(int(lora[0]["trainable_params_no_head"]) - 2000) < 200  # r sized to the budget (64 params per r)

    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    assert [(s["method"], s["n"], s["seeds"]) for s in summary] == [("lora", "2", "3 4"), ("bitfit", "2", "3 4")] \
        or [(s["method"], s["n"], s["seeds"]) for s in summary] == [("bitfit", "2", "3 4"), ("lora", "2", "3 4")]
    assert "±" in (out / "summary.md").read_text()
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second run of the same command keeps finished cells and reruns only the one whose metrics are gone
    kept = (out / "runs" / f"{name}-lora-s3" / "metrics.json").stat().st_mtime_ns
    (out / "runs" / f"{name}-bitfit-s4" / "metrics.json").unlink()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert r.output.count("done, kept") == 3
    assert (out / "runs" / f"{name}-lora-s3" / "metrics.json").stat().st_mtime_ns == kept
    assert (out / "runs" / f"{name}-bitfit-s4" / "metrics.json").exists()

    # ... but never reuses a finished run made with other settings
    changed = [a if a != "4" else "3" for a in args]  # --max-steps 3
    assert_one_line_error(runner.invoke(app, changed), f"{name}-lora-s3 finished with other settings (train differ)",
                          "another --output")


def test_summary_is_mean_and_sd_over_seeds():
    rows = [{"model": "m", "method": "lora", "trainable_params": 10, "kept_params": 10, "trainable_percent": 1.0,
             "split": "test", "seed": s, "accuracy": a, "macro_f1": f, "train_seconds": 2.0}
            for s, a, f in ((1, 0.8, 0.7), (2, 0.9, 0.6), (3, 0.7, 0.8))]
    rows.append({**rows[0], "method": "full", "trainable_params": 99})
    lora, = [s for s in summarise(rows) if s["method"] == "lora"]
    assert lora["n"] == 3 and lora["seeds"] == "1 2 3"
    assert lora["accuracy_mean"] == round(statistics.mean([0.8, 0.9, 0.7]), 4)
    assert lora["macro_f1_sd"] == round(statistics.stdev([0.7, 0.6, 0.8]), 4)
    assert (lora["macro_f1_min"], lora["macro_f1_max"]) == (0.6, 0.8)
    full, = [s for s in summarise(rows) if s["method"] == "full"]
    assert full["n"] == 1 and full["accuracy_sd"] is None


@pytest.mark.parametrize("extra, needles", [
    (["--methods", "lora,magic"], ["unknown method 'magic'"]),
    (["--seeds", "1,x"], ["--seeds '1,x'", "1,2,3"]),
    (["--methods", ""], ["--methods is empty"]),
    (["--models", "./no/such/dir"], ["model path not found"]),
    (["--methods", "lora,lora"], ["names an entry twice"]),
    (["--methods", "prefix", "--budget", "1"], ["below the smallest prefix"]),
    (["--methods", "full", "--budget", "lots"], ["budget 'lots' is not a parameter count"]),
    (["--set", "train.seed=5"], ["bench sets train.seed per cell; use --seeds"]),
    (["--set", "method=full"], ["use --methods"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_bert, toy_files, tmp_path, extra, needles):
    out = tmp_path / "bench"
    assert_one_line_error(runner.invoke(app, bench_args(tiny_bert, toy_files, out, *extra)), *needles)
    assert not out.exists()


def test_models_must_have_distinct_names_and_output_must_be_a_bench_dir(tiny_bert, toy_files, tmp_path):
    twin = tmp_path / "elsewhere" / tiny_bert.name
    twin.parent.mkdir()
    twin.symlink_to(tiny_bert)
    r = runner.invoke(app, bench_args(tiny_bert, toy_files, tmp_path / "b", "--models", f"{tiny_bert},{twin}"))
    assert_one_line_error(r, "directory names differ")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(runner.invoke(app, bench_args(tiny_bert, toy_files, tmp_path / "file")), "not a directory")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert_one_line_error(runner.invoke(app, bench_args(tiny_bert, toy_files, tmp_path / "mine")),
                          "not a bench directory")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x" and not (tmp_path / "b").exists()


def test_shards_split_the_grid_and_the_tables_merge(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "bench"
    args = bench_args(tiny_bert, toy_files, out, "--methods", "lora,bitfit", "--seeds", "3,4")
    name = tiny_bert.name
    r = runner.invoke(app, [*args, "--shard", "1/2"])
    assert r.exit_code == 0, r.output
    ran = sorted(p.name for p in (out / "runs").iterdir())
    assert ran == [f"{name}-bitfit-s3", f"{name}-lora-s3"]  # cells 1 and 3 of lora-s3, lora-s4, bitfit-s3, bitfit-s4
    r = runner.invoke(app, [*args, "--shard", "2/2"])
    assert r.exit_code == 0, r.output
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(row["run"] for row in rows) == sorted([f"{name}-lora-s3", f"{name}-lora-s4", f"{name}-bitfit-s3",
                                                         f"{name}-bitfit-s4"])
    assert r.output.count("done, kept") == 2  # the first shard's cells, not rerun


@pytest.mark.parametrize("shard", ["0/2", "3/2", "1/0", "a/b", "2"])
def test_bad_shard_is_one_line(tiny_bert, toy_files, tmp_path, shard):
    out = tmp_path / "bench"
    r = runner.invoke(app, [*bench_args(tiny_bert, toy_files, out, "--methods", "lora"), "--shard", shard])
    assert_one_line_error(r, "--shard", "K/N")
    assert not out.exists()


def test_tables_carry_baselines_and_paired_differences(tiny_bert, toy_files, tmp_path):
    from scipy import stats

    out = tmp_path / "bench"
    r = runner.invoke(app, bench_args(tiny_bert, toy_files, out, "--methods", "full,lora", "--seeds", "3,4,5"))
    assert r.exit_code == 0, r.output
    base = json.loads((out / "baselines.json").read_text())
    assert base["split"] == "test" and set(base["scores"]) == {"majority class", "TF-IDF + LR"}
    assert base["scores"]["majority class"]["accuracy"] == 0.5  # the toy test set is balanced
    assert base["scores"]["TF-IDF + LR"]["accuracy"] > 0.9  # its keywords separate the classes
    summary = (out / "summary.md").read_text()
    assert "| (baseline) | majority class |" in summary and "| (baseline) | TF-IDF + LR |" in summary

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    f1 = {(row["method"], int(row["seed"])): float(row["macro_f1"]) for row in rows}
    d = [100 * (f1[("lora", s)] - f1[("full", s)]) for s in (3, 4, 5)]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(d) / 3 ** 0.5
    with open(out / "paired.csv") as f:
        (pair,) = list(csv.DictReader(f))
    assert pair["comparison"] == f"{tiny_bert.name}/lora - {tiny_bert.name}/full" and pair["seeds"] == "3 4 5"
    assert float(pair["macro_f1_diff"]) == pytest.approx(statistics.mean(d), abs=0.01)
    assert float(pair["macro_f1_ci_high"]) - float(pair["macro_f1_ci_low"]) == pytest.approx(2 * half, abs=0.02)
    assert "Paired differences on test" in summary


def test_suite_runs_each_task_as_a_grid_and_joins_them(tiny_bert, tmp_path):
    """A suite recipe: one bench grid per task (the shipped sample here, twice under two names would clash, so one
    task in a group), then suite.md with the group's means, baselines and paired differences."""
    suite = tmp_path / "suite.yaml"
    suite.write_text("tasks: [finance-sample]\ngroups: {sample: [finance-sample]}\n"
                     f"models: [{tiny_bert}]\nmethods: [full, bitfit]\nseeds: [1, 2]\n")
    out = tmp_path / "suite"
    args = ["bench", "--suite", str(suite), "--output", str(out), "--max-steps", "2", "--set", "data.max_length=16",
            "--set", "train.precision=no"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    with open(out / "finance-sample" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {row["task"] for row in rows} == {"finance-sample"}
    text = (out / "suite.md").read_text()
    assert "## sample (1 task, test)" in text and "| (baseline) | TF-IDF + LR |" in text
    f1 = [float(row["macro_f1"]) for row in rows if row["method"] == "bitfit"]
    with open(out / "suite.csv") as f:
        bitfit = [row for row in csv.DictReader(f) if row["method"] == "bitfit"][0]
    assert float(bitfit["macro_f1_mean"]) == pytest.approx(statistics.mean(f1), abs=1e-4)
    assert f"{tiny_bert.name}/bitfit - {tiny_bert.name}/full | 1 2 |" in text
    # the command line's lists replace the suite's; a suite and --task together are refused
    r = runner.invoke(app, [*args, "--seeds", "1"])
    assert r.exit_code == 0 and r.output.count("done, kept") == 2, r.output
    assert_one_line_error(runner.invoke(app, [*args, "--task", "sst2"]), "--task", "--suite")


def test_suite_per_class_runs_each_size_with_its_settings(tiny_bert, tmp_path):
    """per_class: one suite per size in OUTPUT/n<N>/ (N rows per class, or all), with the suite's recipe and its
    `set:` over it applied."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"tasks: [finance-sample]\nper_class: [4, all]\nmodels: [{tiny_bert}]\nmethods: [full]\n"
                     "seeds: [1]\nrecipe: low-label\nset: [pooling=mean, train.min_steps=3]\n")
    out = tmp_path / "suite"
    r = runner.invoke(app, ["bench", "--suite", str(suite), "--output", str(out), "--epochs", "1", "--set",
                            "data.max_length=16", "--set", "train.precision=no"])
    assert r.exit_code == 0, r.output
    small = json.loads(next((out / "n4" / "finance-sample" / "runs").glob("*/metrics.json")).read_text())
    whole = json.loads(next((out / "nall" / "finance-sample" / "runs").glob("*/metrics.json")).read_text())
    assert small["pooling"] == whole["pooling"] == "mean"
    assert small["steps"] == 3 and whole["steps"] > 3  # min_steps binds on 12 rows only
    recipe = yaml.safe_load(next((out / "n4" / "finance-sample" / "runs").glob("*/recipe.yaml")).read_text())
    assert recipe["data"]["train_per_class"] == 4 and (out / "n4" / "suite.md").is_file()
    assert recipe["train"]["keep"] == "last" and recipe["train"]["head_init"] == "probe"  # from the recipe
    assert (out / "nall" / "suite.md").is_file()


def test_low_label_suite_recipe_loads():
    from peftbert.suite import load_suite

    s = load_suite("low-label")
    assert s.per_class == [8, 32, 128, "all"] and s.recipe == "low-label" and s.methods == ["probe", "full"]


@pytest.mark.parametrize("text, needles", [
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\n", ["seeds"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\nper_class: [0]\n", ["per_class"]),
    ("tasks: []\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\n", ["tasks must be a non-empty list"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\ngroups: {g: [sst2]}\n", ["sst2"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\ngroups: [a]\n", ["groups must map"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\ngroups: {g: []}\n", ["groups"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [x, 1.5]\n", ["seeds", "ints"]),
    ("tasks: [finance-sample]\nmodels: [minilm]\nmethods: [full]\nseeds: [1]\ngroups: {g: [1]}\n", ["groups"]),
])
def test_bad_suite_is_one_line(tmp_path, text, needles):
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    assert_one_line_error(runner.invoke(app, ["bench", "--suite", str(suite), "--output", str(tmp_path / "o")]),
                          *needles)
    assert_one_line_error(runner.invoke(app, ["bench", "--suite", "nonesuch"]), "nonesuch", "finance")
    assert not (tmp_path / "o").exists()


def test_a_cell_whose_checkpoint_has_other_settings_starts_over(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "bench"
    args = bench_args(tiny_bert, toy_files, out, "--methods", "lora", "--seeds", "3")
    assert runner.invoke(app, [*args, "--save-every", "2"]).exit_code == 0
    cell = out / "runs" / f"{tiny_bert.name}-lora-s3"
    (cell / "metrics.json").unlink()  # as if killed after its last checkpoint
    r = runner.invoke(app, [*args, "--save-every", "2", "--set", "train.lr=0.05"])
    assert r.exit_code == 0, r.output
    assert "starting the cell over" in r.output and (cell / "metrics.json").exists()
    assert json.loads((cell / "metrics.json").read_text())["steps"] == 4


def test_paired_against_several_references():
    """method - each reference on the same seeds, each pair once: probe - full, setfit - full, probe - setfit."""
    from peftbert.bench_report import paired

    scores = {"full": [0.50, 0.60, 0.55], "probe": [0.52, 0.61, 0.58], "setfit": [0.51, 0.63, 0.54]}
    rows = [{"model": "m", "method": method, "seed": seed, "task": "t", "accuracy": f, "macro_f1": f}
            for method, fs in scores.items() for seed, f in zip((1, 2, 3), fs)]
    got = {p["comparison"]: p["macro_f1_diff"] for p in paired(rows, ("full", "setfit"))}
    assert got == {"m/probe - m/full": 2.0, "m/setfit - m/full": 1.0, "m/probe - m/setfit": 1.0}
    assert [p["comparison"] for p in paired(rows)] == ["m/probe - m/full", "m/setfit - m/full"]
