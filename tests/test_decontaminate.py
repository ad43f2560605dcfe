"""`adapt` never trains on a task's validation/test text: a planted test sentence is removed."""

import gzip
import json

import pandas as pd

from peftbert.commands.adapt import run_adapt
from peftbert.data.corpus import Source
from peftbert.data.decontaminate import decontaminate, normalise
from peftbert.data.tasks import SAMPLE_DIR
from test_adapt import config, corpus, quiet  # noqa: F401  (corpus: a fixture)


def test_lines_and_sentences_matching_held_out_text_are_dropped():
    texts = {normalise("Shares of Acme fell 5% after the report.")}
    source = Source("s", "s", [["shares of ACME fell 5%, after the report", "kept line"],
                               ["Rates rose. Shares of Acme fell 5% after the report. Bonds rallied."],
                               ["shares of acme fell 5 after the report"]])
    dropped = decontaminate([source], texts)
    assert source.documents == [["kept line"], ["Rates rose. Bonds rallied."]]  # the third document went whole
    assert (dropped.lines, dropped.sentences) == (2, 1)


def test_adapt_drops_a_planted_test_sentence(tiny_bert, corpus, tmp_path):
    planted = pd.read_csv(SAMPLE_DIR / "finance_sentiment_test.csv")["text"].iloc[3]
    path = tmp_path / "leaky.txt.gz"
    with gzip.open(corpus, "rt") as f:
        text = f.read()
    with gzip.open(path, "wt") as f:
        f.write(text + f"\n{planted.upper()}\n\nSomething else. {planted}. And more.\n")
    out = tmp_path / "out"
    m = run_adapt(config(tiny_bert, [path], out, {"max_steps": 2}, decontaminate=["finance-sample"]), log=quiet)
    assert m["decontaminated"] == {"tasks": ["finance-sample"], "dropped_lines": 1, "dropped_sentences": 1}
    assert json.loads((out / "metrics.json").read_text())["decontaminated"]["dropped_lines"] == 1
    assert m["sources"][0]["documents"] == 61  # 60 toy documents and the one that kept its other sentences
