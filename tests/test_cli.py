"""The CLI: bad input is one clear line and exit 2, nothing written; a full run end to end."""

import json

import pytest
from typer.testing import CliRunner

from conftest import toy_rows
from peftbert.cli import app

runner = CliRunner()


def tune_args(tiny_bert, toy_files, out, *extra):
    return ["tune", "--model", str(tiny_bert), "--train-file", str(toy_files["train"]),
            "--validation-file", str(toy_files["validation"]), "--test-file", str(toy_files["test"]),
            "--output", str(out), "--epochs", "1", "--precision", "no", "--max-length", "16", *extra]


def assert_one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert text.startswith("error: ")
    for n in needles:
        assert n in text, text


@pytest.mark.parametrize("extra, needles", [
    (["--train-file", "/nonexistent/train.csv"], ["file not found", "/nonexistent/train.csv"]),
    (["--text-column", "body"], ["column 'body' not found", "--text-column"]),
    (["--label-column", "gold"], ["column 'gold' not found"]),
    (["--lr", "-1"], ["lr must be > 0"]),
    (["--method", "magic"], ["unknown method 'magic'"]),
    (["--precision", "fp8"], ["precision must be one of"]),
    (["--recipe", "/nonexistent.yaml"], ["recipe not found"]),
    (["--set", "train.nonsense=3"], ["unknown key(s) in train: nonsense"]),
    (["--model", "./no/such/dir"], ["model path not found"]),
    (["--resume", "latest"], ["no checkpoint to resume"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_bert, toy_files, tmp_path, extra, needles):
    out = tmp_path / "run"
    result = runner.invoke(app, tune_args(tiny_bert, toy_files, out, *extra))
    assert_one_line_error(result, *needles)
    assert not (out / "metrics.json").exists() and not (out / "recipe.yaml").exists()


def test_unknown_label_in_test_file(tiny_bert, toy_files, tmp_path):
    bad = toy_rows(10, 3)
    bad.loc[0, "label"] = "sideways"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    args = tune_args(tiny_bert, toy_files, tmp_path / "run")
    args[args.index("--test-file") + 1] = str(tmp_path / "bad.csv")
    assert_one_line_error(runner.invoke(app, args), "unknown label 'sideways'", "known labels: negative, positive")
    assert not (tmp_path / "run").exists()


def test_tune_then_predict_end_to_end(tiny_bert, toy_files, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, tune_args(tiny_bert, toy_files, out, "--method", "full", "--lr", "1e-3",
                                          "--epochs", "6"))
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "full" and m["label_names"] == ["negative", "positive"]
    assert (out / "recipe.yaml").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "eval_log.jsonl").is_file()

    again = runner.invoke(app, tune_args(tiny_bert, toy_files, out))
    assert_one_line_error(again, "not empty", "--overwrite")

    pred = runner.invoke(app, ["predict", str(out), "--text", "the company profit surge", "--text", "shares slump"])
    assert pred.exit_code == 0, pred.output
    rows = [json.loads(x) for x in pred.output.strip().splitlines()]
    assert [r["label"] for r in rows] and abs(rows[0]["p_negative"] + rows[0]["p_positive"] - 1) < 1e-5

    scored = runner.invoke(app, ["predict", str(out), "--file", str(toy_files["test"]), "--output",
                                 str(tmp_path / "p.csv")])
    assert scored.exit_code == 0, scored.output
    assert "scored 40 labelled rows" in scored.output
    assert (tmp_path / "p.csv").read_text().startswith("text,label,p_negative,p_positive")


def test_predict_errors(tmp_path):
    assert_one_line_error(runner.invoke(app, ["predict", str(tmp_path), "--text", "x"]), "not a finished peftbert run")


def test_every_command_has_help():
    for cmd in ([], ["tune"], ["predict"], ["adapt"], ["bench"], ["tasks"], ["methods"]):
        r = runner.invoke(app, [*cmd, "--help"])
        assert r.exit_code == 0 and "Usage" in r.output


@pytest.mark.parametrize("command", ["tune", "predict", "adapt", "bench"])
def test_every_option_has_help(command):
    import typer.main
    cmd = typer.main.get_command(app).commands[command]
    missing = [p.name for p in cmd.params if not getattr(p, "help", None)]
    assert not missing, missing


def test_unreachable_hub_is_one_line(tiny_bert, toy_files, tmp_path, monkeypatch):
    import socket

    from huggingface_hub import constants

    def no_network(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, tmp_path / "run", "--model", "some-org/some-bert"))
    assert_one_line_error(r, "cannot reach", "some-org/some-bert")
    r = runner.invoke(app, ["tune", "--task", "some-org/some-dataset", "--output", str(tmp_path / "run")])
    assert_one_line_error(r, "cannot reach", "--train-file")


def test_bad_method_setting_keeps_an_earlier_run(tiny_bert, toy_files, tmp_path):
    """`--overwrite` with a LoRA target the model lacks fails before the earlier run is removed."""
    out = tmp_path / "run"
    assert runner.invoke(app, tune_args(tiny_bert, toy_files, out, "--method", "bitfit")).exit_code == 0
    r = runner.invoke(app, tune_args(tiny_bert, toy_files, out, "--overwrite", "--lora.target_modules", "[nope]"))
    assert_one_line_error(r, "lora:", "set lora.target_modules")
    assert (out / "metrics.json").is_file()
