"""Damaged artefacts and unwritable outputs: every command that reads an artefact ends well or in one line.

The matrix is generated, not listed: every artefact kind (built once, on the tiny model) x every file in it x
every damage (deleted, emptied, cut to half, random bytes) x every command that reads that kind. A row passes
when the command either succeeds with the output the undamaged artefact gives, or exits non-zero with one
`error:` line and no traceback, leaving no half-written output. A new file in an artefact, or a new command in
READERS, adds its rows with no new test code.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from unittest import mock

import pytest
import typer
from typer.testing import CliRunner

from conftest import make_tiny_bert, toy_rows
from peftbert.cli import app
from peftbert.predict import ONNX_CACHE

DAMAGES = {
    "deleted": lambda p, rng: p.unlink(),
    "empty": lambda p, rng: p.write_bytes(b""),
    "truncated": lambda p, rng: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "random": lambda p, rng: p.write_bytes(rng.randbytes(max(p.stat().st_size, 64))),
}
TRAIN = ["--max-length", "16", "--precision", "no", "--report-to", "none", "--batch-size", "16"]


COMMAND = typer.main.get_command(app)  # built once: typer's CliRunner would rebuild it per call (0.1 s)


def invoke(args):
    """The CLI in this process (fast): (exit code, output, the exception that escaped, if any)."""
    with mock.patch("typer.testing._get_command", lambda _: COMMAND):
        r = CliRunner().invoke(app, [str(a) for a in args], prog_name="peftbert")
    escaped = r.exception if r.exception is not None and not isinstance(r.exception, SystemExit) else None
    return r.exit_code, r.output, escaped


# ---------------------------------------------------------------- the artefacts, built once
@dataclass
class Env:
    """Where the artefacts live, the toy data and the commands' reference outputs (on undamaged artefacts)."""
    root: Path
    model: Path
    data: dict
    artefacts: dict  # kind -> its pristine copy
    reference: dict  # (kind, command) -> what a correct run gives
    home: dict = field(default_factory=dict)  # kind -> where it was built, and where each row damages a copy

    def data_flags(self, test: bool = True) -> list:
        flags = ["--train-file", self.data["train"], "--validation-file", self.data["validation"]]
        return flags + (["--test-file", self.data["test"]] if test else [])


def tune_flags(env: Env, *extra) -> list:
    return [*env.data_flags(), *TRAIN, "--epochs", "1", *extra]


def grid_args(env: Env, out: Path) -> list:
    return ["bench", "--models", env.model, "--methods", "lora", "--seeds", "1", *env.data_flags(),
            "--max-length", "16", "--precision", "no", "--batch-size", "16", "--epochs", "1",
            "--set", "train.report_to=none", "--output", out]


def search_args(env: Env, out: Path) -> list:
    return ["search", "--model", env.model, "--method", "lora", *env.data_flags(test=False), *TRAIN,
            "--epochs", "1", "--trials", "1", "--output", out]


def resume_args(env: Env, out: Path) -> list:
    return ["tune", "--model", env.model, "--method", "full", *tune_flags(env), "--max-steps", "4",
            "--save-every", "1", "--eval-every", "1", "--output", out]


def must(args):
    code, output, escaped = invoke(args)
    assert code == 0 and escaped is None, (args, output, escaped)


def build_artefacts(root: Path) -> Env:
    model = make_tiny_bert(root / "tiny-bert")
    data = {}
    for split, n, seed in (("train", 48, 0), ("validation", 16, 1), ("test", 16, 2)):
        data[split] = root / f"{split}.csv"
        toy_rows(n, seed).to_csv(data[split], index=False)
    env = Env(root, model, data, {}, {})
    a = env.artefacts
    for method in ("full", "lora", "adapter"):  # a checkpoint; a LoRA adapter; a bottleneck adapter (own PEFT type)
        a[f"run-{method}"] = root / f"run-{method}"
        must(["tune", "--model", model, "--method", method, *tune_flags(env), "--output", a[f"run-{method}"]])
    a["export-hf"], a["export-onnx"] = root / "export-hf", root / "export-onnx"
    must(["export", a["run-lora"], "--output", a["export-hf"]])
    must(["export", a["run-lora"], "--output", a["export-onnx"], "--format", "onnx"])
    # the ONNX graph a run caches at its first predict of a file is part of the run from then on (one run has it:
    # it costs an export; predict --text uses a fresh cache and never builds one)
    must(["predict", a["run-lora"], "--file", data["test"], "--output", root / "cached.jsonl"])
    assert (a["run-lora"] / ONNX_CACHE).is_dir()
    feed = toy_rows(16, 2).assign(date=[f"2026-01-{1 + i % 4:02d}" for i in range(16)])
    feed.to_csv(root / "feed.csv", index=False)
    data["feed"] = root / "feed.csv"
    a["adapted"] = root / "adapted"
    must(["adapt", "--model", model, "--corpus", data["train"], "--output", a["adapted"], "--max-steps", "2",
          "--batch-size", "8", "--block-size", "32", "--precision", "no", "--report-to", "none"])
    a["study"] = root / "study"
    must(search_args(env, a["study"]))
    a["grid"] = root / "grid"
    must(grid_args(env, a["grid"]))
    # an interrupted run: checkpoints 3 and 4 of 4 steps; drop the finished run and the newest checkpoint
    straight = root / "straight"
    must(resume_args(env, straight))
    env.reference["straight"] = json.loads((straight / "metrics.json").read_text())
    a["interrupted"] = root / "interrupted"
    shutil.copytree(straight, a["interrupted"])
    for f in list(a["interrupted"].iterdir()):
        if f.is_file() and f.name not in ("recipe.yaml", "eval_log.jsonl"):
            f.unlink()
    shutil.rmtree(a["interrupted"] / "checkpoints" / "checkpoint_4")
    (root / "pristine").mkdir()
    for kind, home in a.items():  # rows run where each was built: a grid's cells record their own paths
        a[kind] = Path(shutil.move(home, root / "pristine" / kind))
        env.home[kind] = home
    return env


def fresh(env: Env, kind: str) -> Path:
    """The artefact, undamaged, back where it was built (the pristine copy keeps its timestamps)."""
    home = env.home[kind]
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(env.artefacts[kind], home)
    return home


# ---------------------------------------------------------------- the commands that read artefacts
@dataclass(frozen=True)
class Reader:
    """`args(env, artefact, work)` is the command line; `check(env, artefact, work)` says what is wrong with a
    successful run's output (None: correct); `outputs(work)` must not exist after a failed run."""
    args: Callable
    check: Callable
    outputs: Callable = lambda work: [work / "out"]


def predictions(path: Path) -> list:
    rows = [json.loads(line) for line in path.read_text().splitlines()]  # (ONNX Runtime or PyTorch: 1e-3 apart)
    return [(r["label"], *(round(v, 3) for k, v in sorted(r.items()) if k.startswith("p_"))) for r in rows]


def predict_args(env: Env, art: Path, out: Path) -> list:
    texts = [x for t in toy_rows(16, 2)["text"] for x in ("--text", t)]
    return ["predict", art, *texts, "--output", out]


def reference(env: Env, key: tuple, make: Callable):
    """A command's output on the undamaged artefact, made at first use."""
    if key not in env.reference:
        env.reference[key] = make()
    return env.reference[key]


def reference_predictions(env: Env, kind: str) -> list:
    """What `predict` answers from the undamaged artefact (an export answers as its run)."""
    def make():
        out = env.root / f"reference-{kind}.jsonl"
        must(predict_args(env, env.artefacts[kind], out))
        return predictions(out)
    return reference(env, ("predict", kind), make)


def check_predict(env, kind, art, work):
    got = predictions(work / "out.jsonl")
    return None if got == reference_predictions(env, kind) else "predictions differ from the undamaged artefact's"


def check_export(env, kind, art, work):
    out = work / "predict-export.jsonl"
    code, output, escaped = invoke(predict_args(env, work / "out", out))
    if code != 0:
        return f"the export does not load: {output.strip()[-300:]}"
    return None if predictions(out) == reference_predictions(env, kind) else "the export predicts otherwise"


def monitor_args(env, art, out):
    return ["monitor", env.data["feed"], "--run", art, "--output", out, "--bootstrap", "0",
            "--engine", "torch"]  # torch: auto would export a run without a cached graph to ONNX first (slow)


def check_monitor(env, kind, art, work):
    def make():
        ref = env.root / f"reference-monitor-{kind}"
        ref.mkdir()
        must(monitor_args(env, env.artefacts[kind], ref / "out"))
        return (ref / "out" / "index.csv").read_text()
    return None if (work / "out" / "index.csv").read_text() == reference(env, ("monitor", kind), make) else \
        "index.csv differs"


def tuned_scores(path: Path) -> dict:
    m = json.loads((path / "metrics.json").read_text())
    return {"validation": m["validation"], "test": m["test"], "steps": m["steps"]}


def tune_model_args(env, art, work):
    return ["tune", "--model", art, "--method", "full", *tune_flags(env), "--max-steps", "2", "--output", work / "out"]


def check_tune_model(env, kind, art, work):
    key = ("tune --model", kind)
    if key not in env.reference:
        ref = env.root / f"reference-tune-{kind}"
        must(tune_model_args(env, env.artefacts[kind], ref))
        env.reference[key] = tuned_scores(ref / "out")
    return None if tuned_scores(work / "out") == env.reference[key] else "training from it scores otherwise"


def check_resume(env, kind, art, work):
    m = json.loads((art / "metrics.json").read_text())
    want = env.reference["straight"]
    same = m["validation"] == want["validation"] and m["steps"] == want["steps"] and m["test"] == want["test"]
    return None if same else "the resumed run ends elsewhere than the uninterrupted one"


def results_rows(grid: Path) -> list:
    import pandas as pd

    df = pd.read_csv(grid / "results.csv")
    keep = [c for c in df.columns if not any(s in c for s in ("seconds", "per_second", "memory", "run_dir"))]
    return df[keep].round(6).astype(str).values.tolist()


def check_bench(env, kind, art, work):
    return None if results_rows(art) == results_rows(env.artefacts["grid"]) else "results.csv differs"


def check_search(env, kind, art, work):
    same = (art / "best.yaml").read_text() == (env.artefacts["study"] / "best.yaml").read_text()
    return None if same else "best.yaml differs"


READERS = {
    "predict": Reader(lambda env, art, work: predict_args(env, art, work / "out.jsonl"), check_predict,
                      lambda work: [work / "out.jsonl"]),
    "monitor": Reader(lambda env, art, work: monitor_args(env, art, work / "out"), check_monitor),
    "export": Reader(lambda env, art, work: ["export", art, "--output", work / "out"], check_export),
    "tune --model": Reader(tune_model_args, check_tune_model),
    "tune --resume": Reader(lambda env, art, work: [*resume_args(env, art), "--resume", "latest"], check_resume,
                            lambda work: []),
    "bench continuing": Reader(lambda env, art, work: grid_args(env, art), check_bench, lambda work: []),
    "search continuing": Reader(lambda env, art, work: search_args(env, art), check_search, lambda work: []),
}
# which commands read which artefact kind
READ_BY = {
    "run-full": ("predict", "export", "tune --model", "monitor"),
    "run-lora": ("predict", "export", "monitor"),
    "run-adapter": ("predict", "export", "monitor"),
    "export-hf": ("predict", "export", "tune --model", "monitor"),
    "export-onnx": ("predict", "export", "monitor"),
    "adapted": ("tune --model",),
    "interrupted": ("tune --resume",),
    "study": ("search continuing",),
    "grid": ("bench continuing",),
}
PAIRS = [(kind, command) for kind, commands in READ_BY.items() for command in commands]


def artefact_files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def damage_and_run(env: Env, kind: str, command: str, rel: str, damage: str, work: Path):
    """A fresh copy of the artefact, one file damaged, the command run (outputs in `work`): (exit code, output,
    escaped)."""
    art = fresh(env, kind)
    DAMAGES[damage](art / rel, random.Random(f"{kind}/{rel}/{damage}"))
    return invoke(READERS[command].args(env, art, work))


def run_row(env: Env, kind: str, command: str, rel: str, damage: str, work: Path) -> str | None:
    """One row of the matrix: None if it passes, else why not."""
    reader = READERS[command]
    art = env.home[kind]
    code, output, escaped = damage_and_run(env, kind, command, rel, damage, work)
    text = output.strip()
    if escaped is not None:
        return f"{type(escaped).__name__}: {str(escaped).splitlines()[0][:200] if str(escaped) else ''}"
    if code == 0:
        return reader.check(env, kind, art, work)
    lines = text.splitlines()
    if len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in text:
        return f"exit {code}, not one error line: {text[-300:]!r}"
    left = [str(p) for p in reader.outputs(work) if p.exists()]
    return f"left behind {left}" if left else None


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_artefacts(tmp_path_factory.mktemp("artefacts"))


@pytest.mark.parametrize("kind, command", PAIRS, ids=[f"{k}:{c}" for k, c in PAIRS])
def test_damaged_artefact(env, kind, command, tmp_path):
    failures, rows = [], 0
    for rel in artefact_files(env.artefacts[kind]):
        for damage in DAMAGES:
            work = tmp_path / f"{rows:03d}"
            work.mkdir()
            why = run_row(env, kind, command, rel, damage, work)
            rows += 1
            if why:
                failures.append(f"{kind}/{rel} {damage} -> {command}: {why}")
            shutil.rmtree(work, ignore_errors=True)
    assert rows >= 4
    assert not failures, f"{len(failures)} of {rows} rows:\n" + "\n".join(failures)


# ---------------------------------------------------------------- each failure class, reproduced
def assert_one_line(code, output, escaped, *needles):
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"
    text = output.strip()
    assert code == 2 and len(text.splitlines()) == 1 and text.startswith("error: "), (code, text)
    for n in needles:
        assert n in text, text


def damaged_copy(env: Env, kind: str, rel: str, damage: str) -> Path:
    art = fresh(env, kind)
    DAMAGES[damage](art / rel, random.Random(0))
    return art


def test_cut_adapter_config_is_named(env, tmp_path):
    art = damaged_copy(env, "run-lora", "adapter_config.json", "truncated")
    assert_one_line(*invoke(["predict", art, "--text", "profit"]), "adapter_config.json", "not valid JSON")


def test_missing_adapter_config_is_never_a_hub_lookup(env, tmp_path):
    art = damaged_copy(env, "run-adapter", "adapter_config.json", "deleted")
    assert_one_line(*invoke(["predict", art, "--text", "profit"]), "adapter_config.json", "missing")


def test_missing_adapter_weights_are_never_a_hub_lookup(env, tmp_path):
    art = damaged_copy(env, "run-lora", "adapter_model.safetensors", "deleted")
    assert_one_line(*invoke(["export", art, "--output", tmp_path / "x"]), "adapter_model.safetensors", "missing")


def test_cut_onnx_graph_is_named(env, tmp_path):
    art = damaged_copy(env, "export-onnx", "model.onnx", "truncated")
    assert_one_line(*invoke(["predict", art, "--text", "profit"]), "model.onnx", "export the run again")


def test_study_that_is_not_a_database_is_named(env, tmp_path):
    art = damaged_copy(env, "study", "study.db", "random")
    assert_one_line(*invoke(search_args(env, art)), "study.db", "--overwrite")


def test_empty_optimizer_state_is_named_on_resume(env, tmp_path):
    art = damaged_copy(env, "interrupted", "checkpoints/checkpoint_3/optimizer.bin", "empty")
    assert_one_line(*invoke([*resume_args(env, art), "--resume", "latest"]), "optimizer.bin", "--overwrite")


# ---------------------------------------------------------------- outputs that cannot be written
# every command that writes: its command line with the output at OUT (each refuses before the work starts)
WRITERS = {
    "tune": lambda env, out: ["tune", "--model", env.model, "--method", "lora", *tune_flags(env), "--output", out],
    "adapt": lambda env, out: ["adapt", "--model", env.model, "--corpus", env.data["train"], "--output", out,
                               "--max-steps", "2", "--batch-size", "8", "--block-size", "32", "--precision", "no",
                               "--report-to", "none"],
    "export": lambda env, out: ["export", env.artefacts["run-lora"], "--output", out],
    "export onnx": lambda env, out: ["export", env.artefacts["run-lora"], "--output", out, "--format", "onnx"],
    "predict": lambda env, out: ["predict", env.artefacts["run-full"], "--file", env.data["test"],
                                 "--output", f"{out}.jsonl"],
    "bench": lambda env, out: grid_args(env, out),
    "search": lambda env, out: search_args(env, out),
    "monitor": lambda env, out: monitor_args(env, env.artefacts["run-full"], out),
}


def chattr(flag: str, path: Path) -> bool:
    """`chattr +i`: not even root can create a file in the directory (permission bits do not stop root)."""
    if not shutil.which("chattr"):
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "read-only"
    d.mkdir()
    if not chattr("+i", d):
        pytest.skip("chattr +i is not available here (not root, or the filesystem has no immutable flag)")
    yield d
    chattr("-i", d)


@pytest.mark.parametrize("command", WRITERS)
def test_output_in_a_read_only_directory(env, command, read_only_dir):
    out = read_only_dir / "out"
    assert_one_line(*invoke(WRITERS[command](env, out)), str(read_only_dir), "not writable")


@pytest.mark.parametrize("command", WRITERS)
def test_output_below_a_file(env, command, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    assert_one_line(*invoke(WRITERS[command](env, afile / "out")), str(afile), "is a file")
    assert afile.read_text() == "not a directory\n"


def test_export_permission_message_does_not_advise_disk_space(env, read_only_dir):
    code, output, escaped = invoke(WRITERS["export"](env, read_only_dir / "out"))
    assert_one_line(code, output, escaped)
    assert "disk space" not in output


# ---------------------------------------------------------------- columns that are not what they claim
def toy_with(tmp_path: Path, name: str, **columns) -> Path:
    """The toy training rows with columns replaced or added; written as CSV (or TSV for a .tsv name)."""
    df = toy_rows(60, 7)
    for col, values in columns.items():
        df[col] = values
    path = tmp_path / name
    df.to_csv(path, index=False, sep="\t" if name.endswith((".tsv", ".tab.csv")) else ",")
    return path


def tune_on(env: Env, train: Path, tmp_path: Path):
    return invoke(["tune", "--model", env.model, "--method", "full", "--train-file", train, *TRAIN, "--epochs", "1",
                   "--output", tmp_path / "out"])


def test_header_only_file_for_predict_is_refused_before_the_model_loads(env, tmp_path, monkeypatch):
    import peftbert.predict

    def no_model(*a, **kw):
        raise AssertionError("the model was loaded for a file with no rows")

    monkeypatch.setattr(peftbert.predict, "load_run", no_model)
    (tmp_path / "header-only.csv").write_text("text,label\n")
    assert_one_line(*invoke(["predict", env.artefacts["run-full"], "--file", tmp_path / "header-only.csv"]),
                    "header-only.csv has no rows")


def test_continuous_labels_are_refused(env, tmp_path):
    rng = random.Random(0)
    train = toy_with(tmp_path, "scores.csv", label=[round(rng.random(), 2) for _ in range(60)])
    assert_one_line(*tune_on(env, train, tmp_path), "scores.csv", "classifier", "bin")


def test_duplicated_column_names_are_refused(env, tmp_path):
    path = tmp_path / "twice.csv"
    df = toy_rows(60, 7)
    df.insert(1, "label ", ["x"] * 60)
    df.to_csv(path, index=False)
    path.write_text(path.read_text().replace("text,label ,label", "text,label,label", 1))
    assert_one_line(*tune_on(env, path, tmp_path), "twice.csv", "'label'", "twice")


def test_text_column_without_letters_is_refused(env, tmp_path):
    rng = random.Random(0)
    train = toy_with(tmp_path, "numbers.csv", text=[f"{rng.randint(0, 9999)} {rng.random():.3f}" for _ in range(60)])
    assert_one_line(*tune_on(env, train, tmp_path), "numbers.csv", "no letters", "--text-column")


def test_tab_separated_file_named_csv_is_named_as_such(env, tmp_path):
    train = toy_with(tmp_path, "tabs.tab.csv", text=[f"{t}, and more" for t in toy_rows(60, 7)["text"]])
    assert_one_line(*tune_on(env, train, tmp_path), "tabs.tab.csv", "tab-separated", ".tsv")


def examples(env: Env, work: Path) -> list[tuple[str, str, str]]:
    """For docs/bad-input.md (tools/bad_input_table.py): per artefact kind and command that reads it, the first
    of its files that, cut to half, stops the command with a line naming it, and that line."""
    rows, n = [], 0
    for kind, command in PAIRS:
        for rel in artefact_files(env.artefacts[kind]):
            n += 1
            (work / str(n)).mkdir(parents=True)
            code, output, _ = damage_and_run(env, kind, command, rel, "truncated", work / str(n))
            if code != 0 and Path(rel).name in output:
                rows.append((f"{kind}/{rel}", command, output.strip().replace(f"{env.root}/", "")))
                break
    return rows


# ---------------------------------------------------------------- the real command, as a user runs it
def all_rows(env: Env) -> list[tuple[str, str, str, str]]:
    return [(kind, command, rel, damage) for kind, command in PAIRS for rel in artefact_files(env.artefacts[kind])
            for damage in DAMAGES]


def test_a_sample_of_rows_in_a_subprocess_never_shows_a_traceback(env, tmp_path):
    """CliRunner catches what escapes; the real entry point must print one line itself. One seeded row for each
    of 4 commands that read artefacts (each subprocess pays ~5 s of imports: a sample, not the matrix)."""
    rows = all_rows(env)
    rng = random.Random(26)
    commands = rng.sample(sorted({c for _, c in PAIRS}), 4)
    sample = [rng.choice([r for r in rows if r[1] == command]) for command in commands]
    for i, (kind, command, rel, damage) in enumerate(sample):
        work = tmp_path / f"{i}"
        work.mkdir()
        art = fresh(env, kind)
        DAMAGES[damage](art / rel, random.Random(f"{kind}/{rel}/{damage}"))
        args = [str(a) for a in READERS[command].args(env, art, work)]
        r = subprocess.run([sys.executable, "-m", "peftbert.cli", *args], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        row = f"{kind}/{rel} {damage} -> {command}"
        assert "Traceback" not in r.stderr, f"{row}:\n{r.stderr[-2000:]}"
        if r.returncode != 0:
            assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: "), (row, r.stderr)
