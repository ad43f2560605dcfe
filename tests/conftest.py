"""Shared fixtures: a tiny random BERT built here (fast tests) and the real data directory (real tests)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
if "PEFTBERT_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["PEFTBERT_DATA_DIR"] = str(SHARED_DATA)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

POS = ["profit", "growth", "beat", "record", "upgrade", "surge", "gain", "strong"]
NEG = ["loss", "decline", "miss", "cut", "downgrade", "slump", "weak", "debt"]
FILLER = ["the", "company", "shares", "market", "quarter", "said", "on", "after", "a", "its"]


def data_dir() -> Path | None:
    d = os.environ.get("PEFTBERT_DATA_DIR")
    return Path(d) if d and Path(d).is_dir() else None


needs_data = pytest.mark.skipif(data_dir() is None, reason="real data not found: set PEFTBERT_DATA_DIR")


def make_tiny_bert(path: Path, model_type: str = "bert", max_positions: int = 64) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level vocabulary covering the toy task."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POS, *NEG, *FILLER, "##s", "##ing", "neutral"]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(path)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max_positions, type_vocab_size=2)
    import torch
    torch.manual_seed(0)
    BertForMaskedLM(cfg).save_pretrained(path)
    return path


def toy_rows(n: int, seed: int) -> pd.DataFrame:
    """Two separable classes: a sentence's label is the polarity of its keyword."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        word = rng.choice(POS if label else NEG)
        words = rng.sample(FILLER, 4) + [word]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": ["negative", "positive"][label]})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("toy-data")
    files = {}
    for split, n, seed in (("train", 160, 0), ("validation", 40, 1), ("test", 40, 2)):
        files[split] = d / f"{split}.csv"
        toy_rows(n, seed).to_csv(files[split], index=False)
    return files
