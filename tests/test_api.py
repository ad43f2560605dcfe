"""The Python API: the README's example runs as written, and the API takes the CLI's typed configs."""

import re
from pathlib import Path

import pytest

import peftbert
from helpers import make_config

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "README.md lost its Python API example"
    return block.group(1)


@pytest.mark.real
def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    assert namespace["predictions"][0]["label"] in namespace["clf"].labels
    assert abs(sum(namespace["predictions"][0]["probabilities"].values()) - 1) < 1e-5


def test_api_takes_a_typed_config_and_loads_the_run(tiny_bert, toy_files, tmp_path):
    cfg = make_config(tiny_bert, toy_files, "lora", tmp_path / "run", ["train.epochs=1"])
    metrics = peftbert.tune(cfg)
    clf = peftbert.load(tmp_path / "run")
    out = clf.classify(["the company profit surge", "shares slump"])
    assert [o["label"] for o in out] == [o["label"] for o in clf(["the company profit surge", "shares slump"])]
    assert set(out[0]["probabilities"]) == set(metrics["label_names"]) == set(clf.labels)
    assert clf.model.config.id2label[0] == "negative" and clf.tokenizer("x")["input_ids"]
