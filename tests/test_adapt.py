"""`peftbert adapt`: corpus sources, bad input, held-out perplexity drops, new head + LoRA, outputs that load."""

import gzip
import json
import random

import pytest
import torch
import typer
from transformers import AutoModelForMaskedLM, AutoModelForPreTraining, BertConfig, BertModel, BertTokenizerFast
from typer.testing import CliRunner

from conftest import FILLER, NEG, POS, needs_data
from peftbert.commands.adapt import run_adapt
from peftbert.masked_lm import head_names, load_mlm, set_trainable
from peftbert.cli import friendly
from peftbert.cli_adapt import adapt
from peftbert.config import build_adapt_config
from peftbert.data.corpus import load_corpus, task_source
from peftbert.errors import UserError
from peftbert.models import load_classifier

FAST = {"batch_size": 8, "eval_batch_size": 16, "lr": 1e-3, "precision": "no", "log_every": 10}


def quiet(*a, **k):
    pass


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """60 toy documents of 4 patterned lines: the fillers are predictable, so a tiny model learns fast."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "toy.txt.gz"
    with gzip.open(path, "wt") as f:
        for _ in range(60):
            for _ in range(4):
                f.write(f"the company said a {rng.choice(POS)} quarter after its {rng.choice(NEG)} on the market\n")
            f.write("\n")
    return path


def config(model, sources, out, train=None, lora=None, **adapt_args):
    return build_adapt_config(None, {"model": str(model), "corpus": [str(s) for s in sources], "output": str(out),
                                     "train": {**FAST, **(train or {})}, "lora": lora or {},
                                     "adapt": {"block_size": 32, "head_warmup_steps": 0, **adapt_args}})


def test_corpus_sources(tmp_path):
    (tmp_path / "docs.txt").write_text("a b\nc d\n\n\ne f\n\ng\n")
    (tmp_path / "lines.txt").write_text("one\ntwo\nthree\n")  # no blank line: a document per line
    (tmp_path / "t.jsonl").write_text('{"text": "x y"}\n{"text": "z"}\n')
    (tmp_path / "t.csv").write_text("id,sentence\n1,hello there\n2,\n")
    docs = {s.name.split("/")[-1]: s.documents for s in load_corpus([str(tmp_path)], data_dir=None)}
    assert docs == {"docs.txt": [["a b", "c d"], ["e f"], ["g"]], "lines.txt": [["one"], ["two"], ["three"]],
                    "t.jsonl": [["x y"], ["z"]], "t.csv": [["hello there"]]}
    with pytest.raises(UserError, match="no text column 'body'"):
        load_corpus([str(tmp_path / "t.csv")], data_dir=None, text_column="body")
    # relative paths fall back to the data directory (how domain recipes name their files)
    assert load_corpus(["docs.txt"], data_dir=tmp_path)[0].path == str(tmp_path / "docs.txt")


def test_tapt_reads_only_the_task_training_text():
    src = task_source("finance-sample", None, seed=42)
    from peftbert.config import DataArgs
    from peftbert.data.tasks import load_task
    train = load_task(DataArgs(task="finance-sample"), 42).train
    assert src.name == "task:finance-sample" and [d[0] for d in src.documents] == train["text"].tolist()


@pytest.mark.parametrize("change, needle", [
    ({"corpus": ["/no/such/corpus.txt"]}, "corpus source not found"),
    ({"corpus": ["data/missing.txt.gz"]}, "corpus source not found"),
    ({"corpus": ["EMPTY"]}, "has no text"),
    ({"corpus": ["ONE_DOC"]}, "too few documents"),
    ({"corpus": []}, "nothing to adapt on"),
    ({"corpus": ["someone/some-dataset"]}, "could not load hub dataset"),
    ({"adapt": {"mlm_probability": 1.5}}, "mlm_probability"),
    ({"adapt": {"method": "magic"}}, "method must be one of full|lora"),
    ({"adapt": {"block_size": 128}}, "exceeds the model's 64 positions"),
    ({"adapt": {"nsp": True}, "corpus": ["SHORT_DOCS"]}, "adapt.nsp needs at least 2 documents"),
    ({"train": {"metric": "macro_f1"}}, "train.metric for adapt"),
    ({"domain": "nowhere"}, "unknown domain"),
    ({"shards": 3}, "unknown top-level key"),
])
def test_bad_input_is_a_user_error_and_writes_nothing(tiny_bert, corpus, tmp_path, change, needle):
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    (tmp_path / "one.txt").write_text("a single document\nof two lines\n\n")
    (tmp_path / "short.txt").write_text("".join(f"document {i}\n\n" for i in range(20)))
    files = {"EMPTY": str(tmp_path / "empty.txt"), "ONE_DOC": str(tmp_path / "one.txt"),
             "SHORT_DOCS": str(tmp_path / "short.txt")}
    out = tmp_path / "out"
    cli = {"model": str(tiny_bert), "corpus": [str(corpus)], "output": str(out), "train": dict(FAST),
           "adapt": {"block_size": 32}}
    for k, v in change.items():
        if k == "corpus":
            cli[k] = [files.get(s, s) for s in v]
        else:
            cli[k] = {**cli[k], **v} if isinstance(v, dict) else v
    with pytest.raises(UserError, match=needle):
        run_adapt(build_adapt_config(None, cli), log=quiet)
    assert not out.exists()


def test_cli_bad_input_is_one_line_exit_2(tiny_bert, tmp_path):
    app = typer.Typer()
    app.command()(friendly(adapt))  # as cli.py registers it
    result = CliRunner().invoke(app, ["--model", str(tiny_bert), "--corpus", str(tmp_path / "missing.txt.gz"),
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith("error: corpus source not found") and len(result.output.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_adapt_lowers_heldout_perplexity_and_the_output_loads(tiny_bert, corpus, tmp_path):
    out = tmp_path / "out"
    m = run_adapt(config(tiny_bert, [corpus], out, {"max_steps": 40, "eval_every": 20}, heldout_fraction=0.2),
                  log=quiet)
    before, after = m["heldout_before"], m["heldout_after"]
    assert after["perplexity"] < before["perplexity"] * 0.8
    assert after["masked_tokens"] == before["masked_tokens"] > 0  # the same fixed masks
    assert abs(after["perplexity"] - torch.tensor(after["loss"]).exp().item()) < 1e-3
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["sources"][0]["documents"] == 60 and saved["sources"][0]["heldout_documents"] == 12
    assert saved["tokens_seen"] > 0 and saved["tokens_per_second"] > 0 and saved["versions"]["peftbert"]
    assert not (out / "checkpoints").exists() and (out / "tokenizer.json").is_file()
    model, info = AutoModelForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    clf = load_classifier(str(out), {0: "negative", 1: "positive"})  # what `peftbert tune --model OUT` does
    assert clf.config.num_labels == 2


def test_resume_mid_epoch_continues_exactly(tiny_bert, corpus, tmp_path, monkeypatch):
    """Crash after the step-5 checkpoint (mid-epoch), resume: same weights as the uninterrupted run.

    Masks are drawn afresh each step from the global RNG, so this also checks the RNG continues exactly.
    """
    from peftbert import train as train_mod

    tr = {"max_steps": 12, "save_every": 5, "eval_every": 6}
    run_adapt(config(tiny_bert, [corpus], tmp_path / "straight", train=tr), log=quiet)
    real_train = train_mod.train

    def crash_at_7(model, step):
        if step == 7:
            raise KeyboardInterrupt

    def train_with_crash(*a, **kw):
        return real_train(*a, **{**kw, "hooks": train_mod.Hooks(on_optimizer_step=crash_at_7)})

    cfg = config(tiny_bert, [corpus], tmp_path / "resumed", train=tr)
    monkeypatch.setattr("peftbert.train.train", train_with_crash)  # adapt imports it at call time
    with pytest.raises(KeyboardInterrupt):
        run_adapt(cfg, log=quiet)
    monkeypatch.setattr("peftbert.train.train", real_train)
    run_adapt(cfg, resume="latest", log=quiet)
    a = AutoModelForMaskedLM.from_pretrained(tmp_path / "straight").state_dict()
    b = AutoModelForMaskedLM.from_pretrained(tmp_path / "resumed").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), [k for k in a if not torch.allclose(a[k], b[k])]


def test_predicted_only_head_gives_the_models_own_loss(tiny_bert):
    from transformers import AutoTokenizer

    from peftbert.masked_lm import PredictedOnly
    from peftbert.data.mlm import Blocks, MLMCollator, tokenize_documents
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    blocks = Blocks(tokenize_documents([["the company said a record quarter"] * 9], tok), tok, 16)
    batch = MLMCollator(tok)([blocks[i] for i in range(len(blocks))], generator=torch.Generator().manual_seed(0))
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    assert torch.allclose(PredictedOnly(model)(**batch).loss, model(**batch).loss, atol=1e-5)


def headless_bert(path):
    """Like the embedded MiniLM: an encoder with a pooler and no masked-LM head."""
    torch.manual_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILLER]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True).save_pretrained(path)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(path)
    return path


def test_new_head_is_tied_warmed_up_and_lora_is_merged(corpus, tmp_path):
    src = headless_bert(tmp_path / "headless")
    model, new_head = load_mlm(str(src))
    assert new_head and model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    set_trainable(model, head_names(model))  # the head warm-up: encoder and tied embeddings frozen
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias"}

    out = tmp_path / "out"
    m = run_adapt(config(src, [corpus], out, {"max_steps": 6}, method="lora", head_warmup_steps=3, lora={"r": 4},
                         whole_word_mask=True), log=quiet)
    assert m["head_initialised"] and m["method"] == "lora"
    assert m["heldout_after"]["loss"] < m["heldout_before"]["loss"]
    assert not (out / "adapter_config.json").exists()  # merged: a plain checkpoint
    base, adapted = BertModel.from_pretrained(src).state_dict(), AutoModelForMaskedLM.from_pretrained(out).bert
    assert not torch.equal(base["encoder.layer.0.attention.self.query.weight"],
                           adapted.encoder.layer[0].attention.self.query.weight)  # LoRA merged in
    assert torch.equal(base["embeddings.word_embeddings.weight"], adapted.embeddings.word_embeddings.weight)
    clf = load_classifier(str(out), {0: "a", 1: "b"})
    assert clf.peftbert_new_modules == ("classifier",)  # the source's pooler was carried over
    assert torch.equal(clf.bert.pooler.dense.weight, base["pooler.dense.weight"])


@pytest.mark.real
@needs_data
def test_adapt_minilm_on_the_finance_domain(tmp_path):
    out = tmp_path / "out"
    cfg = build_adapt_config(None, {"domain": "finance", "output": str(out),
                                    "train": {"max_steps": 5, "batch_size": 8, "eval_batch_size": 32},
                                    "adapt": {"block_size": 64, "max_tokens": 10_000, "max_heldout_tokens": 2_000,
                                              "head_warmup_steps": 3}})
    run_adapt(cfg, log=quiet)
    m = json.loads((out / "metrics.json").read_text())
    assert m["head_initialised"] and m["carried_over"] == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
    assert [s["path"].split("/")[-1] for s in m["sources"]] == [
        "fomc_minutes_1996_2024.txt.gz", "fomc_speeches_1996_2022.txt.gz",
        "fomc_press_conferences_2011_2022.txt.gz", "reuters21578.txt.gz"]
    assert m["sources"][0]["documents"] == 230 and 8 * 8 * 60 < m["tokens_seen"] <= 8 * 8 * 64
    assert m["heldout_after"]["loss"] < m["heldout_before"]["loss"]
    assert AutoModelForMaskedLM.from_pretrained(out).config.model_type == "bert"


def test_nsp_learns_which_segment_comes_next(tmp_path):
    """Documents each on one of four topics: the next segment shares the topic, a random one mostly does not."""
    from peftbert.data.mlm import tokenize_documents
    from peftbert.data.nsp import NOT_NEXT, Pairs

    rng = random.Random(0)
    topics = [POS[:4], POS[4:], NEG[:4], NEG[4:]]
    path = tmp_path / "topics.txt"
    path.write_text("".join("".join(" ".join(rng.choice(topics[d % 4]) for _ in range(10)) + "\n" for _ in range(4))
                            + "\n" for d in range(120)))
    src = headless_bert(tmp_path / "headless")
    tok = BertTokenizerFast.from_pretrained(src)
    pairs = Pairs(tokenize_documents(load_corpus([str(path)], data_dir=None)[0].documents, tok), tok, 32, seed=0)
    row = pairs[0]
    n = int(row["length"])
    assert row["input_ids"][0] == tok.cls_token_id and row["input_ids"][n - 1] == tok.sep_token_id
    assert (row["input_ids"] == tok.sep_token_id).sum() == 2 and row["token_type_ids"][n - 1] == 1
    assert 0.4 < (pairs.next_label == NOT_NEXT).mean() < 0.6

    out = tmp_path / "out"
    m = run_adapt(config(src, [path], out, {"epochs": 20, "lr": 3e-3}, nsp=True, heldout_fraction=0.25), log=quiet)
    assert m["nsp"] and m["head_initialised"]
    before, after = m["heldout_before"]["nsp_accuracy"], m["heldout_after"]["nsp_accuracy"]
    assert after > 0.75 and after > before + 0.15, (before, after)
    assert m["heldout_after"]["loss"] < m["heldout_before"]["loss"]
    clf = load_classifier(str(out), {0: "a", 1: "b"})  # what `tune --model` does
    pretrained = AutoModelForPreTraining.from_pretrained(out)
    assert torch.equal(clf.bert.pooler.dense.weight, pretrained.bert.pooler.dense.weight)
