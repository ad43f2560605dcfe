"""`adapt` never trains on a task's validation/test text: a planted test sentence is removed."""

import dataclasses
import gzip
import json

import pandas as pd
import pytest
import torch

from conftest import FILLER, NEG, POS

from peftbert.commands.adapt import run_adapt
from peftbert.data.corpus import Source
from peftbert.data.decontaminate import decontaminate, normalise
from peftbert.data.select import nearest_lines
from peftbert.data.tasks import SAMPLE_DIR
from peftbert.errors import UserError
from peftbert.models import load_tokenizer
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


class BagOfWords(torch.nn.Module):
    """An encoder whose mean-pooled states are a text's bag of words: cosine similarity is word overlap."""

    def __init__(self, vocab_size):
        super().__init__()
        self.config = type("Config", (), {"hidden_size": vocab_size})()
        self.words = torch.nn.Embedding.from_pretrained(torch.eye(vocab_size))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return (self.words(input_ids) * (input_ids > 4).unsqueeze(-1),)  # [PAD], [CLS], [SEP]... count nothing


def market_and_filler() -> tuple[list[str], list[str]]:
    """Corpus lines sharing the task's market words, and filler lines with no word of the task."""
    return ([f"{p} {n} {f}" for p, n, f in zip(POS, NEG, FILLER)],
            [" ".join(FILLER[i:i + 3]) for i in range(len(FILLER) - 2)])


def test_select_keeps_the_corpus_lines_nearest_the_task(tiny_bert):
    """kNN-TAPT: each task text's nearest lines first, round-robin, distinct, until N."""
    tokenizer = load_tokenizer(str(tiny_bert))
    market, filler = market_and_filler()
    sources = [Source("s", "s", [[line] for line in filler + market])]
    task = [f"{p} {n}" for p, n in zip(POS[:3], NEG[:3])]
    picked = nearest_lines(sources, task, 3, BagOfWords(tokenizer.vocab_size), tokenizer)
    assert [doc[0] for doc in picked.documents] == market[:3]
    assert len(nearest_lines(sources, task, 1000, BagOfWords(tokenizer.vocab_size), tokenizer).documents) == len(
        market + filler)  # N above the corpus: all of it, once each


def test_select_needs_a_task_and_a_corpus(tiny_bert, tmp_path):
    with pytest.raises(UserError, match="--task NAME and --domain or --corpus"):
        config(tiny_bert, [], tmp_path / "o", select=10)


def test_select_embeds_under_bf16_close_to_fp32(tiny_bert):
    """The bf16 path (adapt --select on bf16 hardware) gives the embeddings fp32 gives, to bf16's precision."""
    from transformers import AutoModel

    from peftbert.data.select import embed

    tokenizer, model = load_tokenizer(str(tiny_bert)), AutoModel.from_pretrained(str(tiny_bert)).eval()
    texts = market_and_filler()[0]
    fp32, bf16 = embed(texts, model, tokenizer), embed(texts, model, tokenizer, bf16=True)
    assert fp32.dtype == bf16.dtype == torch.float32 and not torch.equal(fp32, bf16)  # it did run in bf16
    assert torch.allclose(bf16.norm(dim=1), torch.ones(len(texts)))
    assert (fp32 * bf16).sum(dim=1).min() > 0.99  # cosine of each text's two embeddings


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_select_near_embeds_in_the_runs_precision(tiny_bert, tmp_path, monkeypatch, precision):
    """adapt's wiring: the run's precision reaches the embedding pass (bf16 asked: autocast on)."""
    import peftbert.data.select as select
    from peftbert.commands.adapt import select_near

    seen, real = [], select.embed
    monkeypatch.setattr(select, "embed", lambda *a, bf16=False, **k: seen.append(bf16) or real(*a, bf16=bf16, **k))
    market, filler = market_and_filler()
    sources = [Source("s", "s", [[line] for line in filler + market])]
    task = Source("task", "task", [[f"{p} {n}"] for p, n in zip(POS[:3], NEG[:3])])
    (tmp_path / "c.txt").write_text("\n".join(filler + market) + "\n")
    cfg = config(tiny_bert, [tmp_path / "c.txt"], tmp_path / "o", train={"precision": precision})
    cfg = dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, select=3))
    picked = select_near(sources, task, cfg, cpu=True)
    assert len(picked.documents) == 3 and seen == [precision == "bf16"] * 2  # the corpus, then the task texts
