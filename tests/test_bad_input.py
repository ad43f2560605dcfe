"""Every bad input a user can give ends as one line `error: ...` on stderr, exit code 2, nothing written.

CASES is the table: a command line (run from a directory of bad inputs that `make_inputs` builds), what is
wrong with it, and fragments the message must contain. tools/bad_input_table.py runs the same cases and
writes the table in docs/bad-input.md with the messages they really give.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, make_tiny_bert, toy_rows


@dataclass(frozen=True)
class Case:
    command: str  # after `peftbert`, run in the inputs directory
    what: str  # what is wrong
    expect: tuple[str, ...]  # fragments of the one-line message
    needs_non_root: bool = False  # chmod 000 does not stop root from reading

    @property
    def id(self) -> str:
        return self.what


TUNE = "tune --recipe fast.yaml"  # the tiny model, toy train/validation files, --output out (see make_inputs)

CASES = [
    # ---------------------------------------------------------------- flags typer/click reject
    Case("tune --epochs abc", "a number flag given a word", ("--epochs", "'abc'", "not a valid number")),
    Case("tune --batch-size 1.5", "an integer flag given a fraction", ("--batch-size", "'1.5'", "not a valid integer")),
    Case("tune --lrr 3", "a misspelled flag", ("no such option: --lrr", "did you mean --lr?")),
    Case("tune --method", "a flag without its value", ("--method", "requires an argument")),
    Case("predict", "a missing argument", ("missing argument", "RUN_DIR")),
    Case("tunne", "a misspelled command", ("no such command 'tunne'", "'tune'")),
    # ---------------------------------------------------------------- numbers
    Case("tune --lr 0", "a learning rate of zero", ("lr must be > 0 and finite, got 0",)),
    Case("tune --lr nan", "a learning rate that is not a number", ("train.lr must be a finite number, got nan",)),
    Case("tune --lr inf", "an infinite learning rate", ("train.lr must be a finite number, got inf",)),
    Case("tune --batch-size -1", "a negative batch size", ("batch_size must be > 0 and finite, got -1",)),
    Case("tune --max-length 0", "a zero token limit", ("max_length must be > 0 and finite, got 0",)),
    Case("tune --weight-decay nan", "a weight decay that is not a number",
         ("train.weight_decay must be a finite number",)),
    Case("tune --set lora.alpha=.inf", "an infinite method setting", ("lora.alpha must be a finite number",)),
    Case("predict run --text hi --batch-size 0", "predict with a zero batch size", ("--batch-size must be > 0",)),
    Case("tune --contrastive 1.5", "a contrastive weight above 1", ("train.contrastive must be in [0, 1], got 1.5",)),
    Case("tune --contrastive 1", "a contrastive loss alone, with no head refit", ("add --head-refit",)),
    Case("tune --wise 1.5", "a WiSE-FT share above 1", ("train.wise must be in [0, 1], got 1.5",)),
    Case("tune --method lora --wise 0.5", "WiSE-FT for a method that trains an adapter",
         ("--method lora is not full fine-tuning", "drop --wise, or use --method full")),
    Case("tune --method probe --contrastive 0.5", "a contrastive term for the probe, which trains no encoder",
         ("--method probe fits the head alone", "drop --contrastive")),
    Case("tune --recipe default --contrastive-temperature 0.1", "a contrastive temperature with no contrastive loss",
         ("this run has no contrastive loss", "add --contrastive W")),
    Case("tune --method probe --recipe low-label --contrastive-temperature 0.1",
         "a contrastive temperature for the probe", ("--method probe fits the head alone",
                                                     "drop --contrastive-temperature")),
    # ---------------------------------------------------------------- recipes
    Case("tune --recipe unknown-key.yaml", "a recipe key that does not exist",
         ("unknown key(s) in train: learning_rate", "known:", "lr")),
    Case("tune --recipe wrong-type.yaml", "a recipe value of the wrong type", ("train.epochs must be 'float', got 'many'",)),
    Case("tune --recipe list.yaml", "a recipe that is a list, not a mapping", ("must be a YAML mapping",)),
    Case("tune --recipe missing.yaml", "a recipe that does not exist", ("recipe not found: missing.yaml",)),
    # ---------------------------------------------------------------- data files
    Case(f"{TUNE} --train-file missing.csv", "a training file that does not exist", ("file not found: missing.csv",)),
    Case(f"{TUNE} --train-file unreadable.csv", "a training file without read permission",
         ("cannot read unreadable.csv", "permission denied", "chmod"), needs_non_root=True),
    Case(f"{TUNE} --train-file empty.csv", "an empty training file (0 bytes)", ("empty.csv is empty",)),
    Case(f"{TUNE} --train-file header-only.csv", "a training file with a header and no rows",
         ("header-only.csv has no rows",)),
    Case(f"{TUNE} --train-file a-directory", "a directory where a file is expected",
         ("a-directory is a directory", "pass a file")),
    Case(f"{TUNE} --train-file reviews.csv", "a training file without a text column",
         ("no text column found in reviews.csv", "columns: review, stars", "--text-column")),
    Case(f"{TUNE} --text-column body", "a text column that is not in the file",
         ("column 'body' not found", "columns: text, label", "--text-column")),
    Case(f"{TUNE} --train-file blank-text.csv", "blank text cells",
         ("blank-text.csv", "row 3", "text is blank")),
    Case(f"{TUNE} --train-file latin1.csv", "a CSV that is not UTF-8",
         ("latin1.csv is not UTF-8", "line 4", "iconv")),
    Case(f"{TUNE} --validation-file unseen-label.csv", "a validation label the training set does not have",
         ("unknown label 'sideways' in unseen-label.csv", "known labels: negative, positive")),
    Case(f"{TUNE} --train-file one-class.csv", "a training set with a single class",
         ("one-class.csv", "only one label ('positive')", "at least 2")),
    Case(f"{TUNE} --train-file scores.csv", "labels that are scores (0.00-0.99), not classes",
         ("scores.csv", "scores, not classes", "bin the scores")),
    Case(f"{TUNE} --train-file twice.csv", "a column name given twice in the header",
         ("twice.csv", "column 'label' appears twice")),
    Case(f"{TUNE} --train-file numbers.csv", "a text column with no letters in any row",
         ("numbers.csv", "no letters", "--text-column")),
    Case(f"{TUNE} --train-file tabs.csv", "a tab-separated file named .csv", ("tabs.csv looks tab-separated", ".tsv")),
    Case(f"{TUNE} --output train.csv/run", "an output below a regular file", ("train.csv, which is a file",)),
    Case("tune --task some-org/some-dataset", "a hub dataset while the Hub is unreachable",
         ("could not load hub dataset 'some-org/some-dataset'", "--train-file")),
    # ---------------------------------------------------------------- model directories
    Case(f"{TUNE} --model config-only", "a model directory with config.json only (no weights)",
         ("config-only has no weights", "model.safetensors")),
    Case(f"{TUNE} --model no-tokenizer", "a model directory without tokenizer files",
         ("no-tokenizer has no tokenizer files", "tokenizer.save_pretrained")),
    Case(f"{TUNE} --model corrupt-weights", "a model whose model.safetensors is garbage",
         ("corrupt-weights/model.safetensors", "not a readable safetensors file")),
    Case(f"{TUNE} --model pickle-weights", "a model with pytorch_model.bin only (pickle)",
         ("pickle-weights", "safetensors", "safe_serialization=True")),
    Case(f"{TUNE} --model gpt2", "a model of an unsupported architecture",
         ("architecture 'gpt2' is not supported", "bert")),
    Case(f"{TUNE} --model empty-dir", "an empty model directory", ("empty-dir has no config.json",)),
    Case(f"{TUNE} --model train.csv", "a file where a model directory is expected",
         ("train.csv is a file", "model directory")),
    Case(f"{TUNE} --model some-org/some-bert", "a hub model id while the Hub is unreachable",
         ("could not load model 'some-org/some-bert'", "offline")),
    # ---------------------------------------------------------------- predict and export
    Case("predict train.csv --text hi", "a file where a run directory is expected",
         ("train.csv is a file", "run directory")),
    Case("predict foreign-run --text hi", "a directory another tool wrote (no metrics.json)",
         ("not a finished peftbert run", "metrics.json")),
    Case("predict corrupt-run --text hi", "a run whose weights file is garbage",
         ("corrupt-run/model.safetensors", "not a readable safetensors file")),
    Case("export train.csv --output exported", "export of a file, not a run directory", ("train.csv is a file",)),
    Case("predict missing-run --text hi", "a run directory that does not exist", ("run directory not found: missing-run",)),
    Case("predict run --text hi --output no/such/dir/p.csv", "predict --output in a missing directory",
         ("its directory does not exist",)),
    Case("predict run --file header-only.csv", "predict on a file with a header and no rows",
         ("header-only.csv has no rows",)),
    Case("predict cut-metrics-run --text hi", "a run whose metrics.json was cut short",
         ("cut-metrics-run/metrics.json", "not valid JSON", "train it again")),
    Case("predict run --file latin1.csv --output preds.csv", "predict on a CSV that is not UTF-8",
         ("latin1.csv is not UTF-8", "line 4")),
    Case("predict run --file reviews.csv --output preds.csv", "predict on a file without a text column",
         ("no text column found in reviews.csv", "columns: review, stars")),
    Case("predict run --file unseen-label.csv --output preds.csv", "predict scoring a file with an unseen label",
         ("unknown label 'sideways'",)),
    Case("export foreign-run --output exported", "export of a directory another tool wrote",
         ("not a finished peftbert run",)),
    Case("export run --output exported --format tflite", "export to an unknown format",
         ("--format must be one of hf|onnx",)),
    # ---------------------------------------------------------------- bench and adapt
    Case("bench --methods lora,magic --output grid", "bench with an unknown method", ("unknown method 'magic'",)),
    Case("bench --seeds 1,two --output grid", "bench with a seed that is not a number", ("--seeds", "'1,two'")),
    Case("adapt --model tiny-bert --corpus empty.txt --output out", "adapt on an empty corpus file",
         ("empty.txt has no text",)),
    Case("adapt --model tiny-bert --corpus empty-dir --output out", "adapt on a directory with no text files",
         ("corpus directory", "empty-dir has no")),
    Case("adapt --model pickle-weights --corpus train.csv --output out", "adapt from a pickled checkpoint",
         ("pickle-weights", "safetensors only")),
    Case("adapt --model tiny-bert --corpus missing.txt --output out", "adapt on a corpus file that does not exist",
         ("corpus source not found: missing.txt",)),
]


# ---------------------------------------------------------------- the inputs every case reads
FAST = """\
model: tiny-bert
output: out
data: {train_file: train.csv, validation_file: validation.csv, max_length: 16}
train: {epochs: 1, batch_size: 16, precision: "no", log_every: 5}
"""


def make_inputs(d: Path) -> Path:
    """The directory the cases run in: a tiny model, toy files, a finished run, and one broken thing each."""
    d.mkdir(parents=True, exist_ok=True)
    model = make_tiny_bert(d / "tiny-bert")
    for split, n, seed in (("train", 120, 0), ("validation", 30, 1)):
        toy_rows(n, seed).to_csv(d / f"{split}.csv", index=False)
    (d / "fast.yaml").write_text(FAST)
    (d / "unknown-key.yaml").write_text("train: {learning_rate: 1e-4}\n")
    (d / "wrong-type.yaml").write_text("train: {epochs: many}\n")
    (d / "list.yaml").write_text("- model: minilm\n")
    (d / "empty.csv").write_bytes(b"")
    (d / "header-only.csv").write_text("text,label\n")
    (d / "a-directory").mkdir()
    (d / "empty-dir").mkdir()
    (d / "reviews.csv").write_text("review,stars\ngreat quarter,5\nweak quarter,1\n")
    rows = toy_rows(12, 3)
    rows.loc[2, "text"] = "  "
    rows.to_csv(d / "blank-text.csv", index=False)
    # line 4 (the third row) has a Latin-1 e-acute, invalid in UTF-8
    (d / "latin1.csv").write_bytes(b"text,label\nprofit up,positive\nloss,negative\ncaf\xe9 debt,negative\n")
    rows = toy_rows(10, 4)
    rows.loc[3, "label"] = "sideways"
    rows.to_csv(d / "unseen-label.csv", index=False)
    rows = toy_rows(20, 5)
    rows["label"] = "positive"
    rows.to_csv(d / "one-class.csv", index=False)
    rows = toy_rows(40, 6)  # columns that are not what they claim
    rows.assign(label=[f"0.{i:02d}" for i in range(40)]).to_csv(d / "scores.csv", index=False)
    rows.assign(stars=rows["label"]).to_csv(d / "twice.csv", index=False, header=["text", "label", "label"])
    rows.assign(text=[f"{1000 + 7 * i} {i / 8:.3f}" for i in range(40)]).to_csv(d / "numbers.csv", index=False)
    rows.to_csv(d / "tabs.csv", index=False, sep="\t")
    shutil.copy(d / "train.csv", d / "unreadable.csv")
    (d / "unreadable.csv").chmod(0)
    (d / "empty.txt").write_text("\n\n")
    # model directories: incomplete, corrupt, pickled, another architecture
    for name in ("config-only", "no-tokenizer", "corrupt-weights", "pickle-weights", "gpt2"):
        shutil.copytree(model, d / name)
    for f in (d / "config-only").iterdir():
        if f.name != "config.json":
            f.unlink()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / "no-tokenizer" / f).unlink()
    (d / "corrupt-weights" / "model.safetensors").write_bytes(os.urandom(64))
    _to_pickle(d / "pickle-weights")
    from transformers import GPT2Config
    gpt2 = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=34, bos_token_id=0, eos_token_id=0)
    gpt2.save_pretrained(d / "gpt2")  # over tiny-bert's config: BERT weights, an architecture peftbert lacks
    # a directory another tool wrote: a config, no metrics.json
    (d / "foreign-run").mkdir()
    shutil.copy(model / "config.json", d / "foreign-run" / "config.json")
    _finished_run(d)
    shutil.copytree(d / "run", d / "corrupt-run")
    (d / "corrupt-run" / "model.safetensors").write_bytes(os.urandom(64))
    shutil.copytree(d / "run", d / "cut-metrics-run")
    metrics = d / "cut-metrics-run" / "metrics.json"
    metrics.write_bytes(metrics.read_bytes()[: metrics.stat().st_size // 2])
    return d


def _to_pickle(model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(model_dir / "model.safetensors"), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()


def _finished_run(d: Path) -> None:
    """`run`: a finished tune run of the fast recipe (the cases' control: it works when nothing is wrong)."""
    from typer.testing import CliRunner

    from peftbert.cli import app

    cwd = os.getcwd()
    os.chdir(d)
    try:
        r = CliRunner().invoke(app, ["tune", "--recipe", "fast.yaml", "--method", "full", "--output", "run"])
    finally:
        os.chdir(cwd)
    assert r.exit_code == 0 and (d / "run" / "metrics.json").is_file(), r.output


def listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def run_case(case: Case, inputs: Path):
    """(CliRunner result, paths the command created) for one case, run in the inputs directory."""
    from typer.testing import CliRunner

    from peftbert.cli import app

    before = listing(inputs)
    cwd = os.getcwd()
    os.chdir(inputs)
    try:
        result = CliRunner().invoke(app, shlex.split(case.command), prog_name="peftbert")
    finally:
        os.chdir(cwd)
    return result, sorted(listing(inputs) - before)


def skip_reason(case: Case, inputs: Path) -> str | None:
    if case.needs_non_root and os.access(inputs / "unreadable.csv", os.R_OK):
        return "this user reads files whatever their permissions (root)"
    return None


# ---------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("bad-input"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, inputs):
    from test_cli import assert_one_line_error

    reason = skip_reason(case, inputs)
    if reason:
        pytest.skip(reason)
    result, created = run_case(case, inputs)
    assert_one_line_error(result, *case.expect)
    assert not created, f"left behind: {created}"


def test_cases_are_distinct_and_in_the_docs():
    assert len({c.command for c in CASES}) == len(CASES) >= 30
    assert len({c.what for c in CASES}) == len(CASES)
    page = (ROOT / "docs" / "bad-input.md").read_text()
    missing = [c.command for c in CASES if f"`peftbert {c.command}`" not in page]
    assert not missing, f"docs/bad-input.md's table is out of date (tools/bad_input_table.py): {missing}"


def test_usage_error_from_the_installed_command(tmp_path):
    """The real entry point (not CliRunner) prints the same single line; --help still works."""
    exe = Path(sys.executable).with_name("peftbert")
    if not exe.exists():
        pytest.skip("peftbert is not installed as a command beside this python")
    r = subprocess.run([str(exe), "tune", "--epochs", "abc"], capture_output=True, text=True, cwd=tmp_path,
                       check=False)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.strip().splitlines() == ["error: --epochs: 'abc' is not a valid number (see 'peftbert tune --help')"]
    h = subprocess.run([str(exe), "predict", "--help"], capture_output=True, text=True, cwd=tmp_path,
                       check=False)
    assert h.returncode == 0 and "Usage" in h.stdout
    assert not list(tmp_path.iterdir())
