"""Masked-LM data: packing, BERT's 80/10/10 masking, whole-word masking, document-level held-out split."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from peftbert.data.corpus import Source, split_documents
from peftbert.data.mlm import IGNORE, Blocks, MLMCollator, mask_tokens, tokenize_documents

DOCS = [["the company said profits surged", "shares gaining on the market"],
        ["a weak quarter", "its debt cut after losses"],
        ["record growth"], ["the market said neutral"], ["strong upgrades on its shares", "a gain"]]


@pytest.fixture(scope="module")
def tok(tiny_bert):
    return AutoTokenizer.from_pretrained(tiny_bert)


def test_packing_fills_blocks_and_separates_documents(tok):
    stream = tokenize_documents(DOCS, tok)
    assert (stream.ids == tok.sep_token_id).sum() == len(DOCS) - 1  # a [SEP] between documents only
    blocks = Blocks(stream, tok, block_size=8)
    assert all(blocks.lengths[:-1] == 8) and 2 < blocks.lengths[-1] <= 8  # only the last block is short
    bodies = [blocks.ids[b, 1:blocks.lengths[b] - 1] for b in range(len(blocks))]
    assert np.array_equal(np.concatenate(bodies), stream.ids)  # nothing lost, nothing repeated
    assert all(blocks.ids[:, 0] == tok.cls_token_id)
    assert all(blocks.ids[b, blocks.lengths[b] - 1] == tok.sep_token_id for b in range(len(blocks)))
    assert all(blocks.ids[-1, blocks.lengths[-1]:] == tok.pad_token_id)


def test_token_budget_cuts_the_stream(tok):
    assert len(tokenize_documents(DOCS * 10, tok, max_tokens=23).ids) == 23


def test_masking_never_touches_special_or_padding_tokens(tok):
    blocks = Blocks(tokenize_documents(DOCS, tok, words=True), tok, block_size=8)  # last block padded
    collate = MLMCollator(tok, probability=0.5, whole_word=True)
    items = [blocks[i] for i in range(len(blocks))]
    ids = torch.as_tensor(blocks.ids, dtype=torch.long)
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))  # [CLS], [SEP], [PAD], [UNK]
    for seed in range(50):
        batch = collate(items, generator=torch.Generator().manual_seed(seed))
        assert (batch["labels"][special] == IGNORE).all()
        assert torch.equal(batch["input_ids"][special], ids[special])
        assert (batch["attention_mask"][ids == tok.pad_token_id] == 0).all()
        assert (batch["labels"] != IGNORE).any(1).all()  # every block predicts something
        replaced = (batch["input_ids"] != ids) & (batch["input_ids"] != tok.mask_token_id)
        assert not torch.isin(batch["input_ids"][replaced], torch.tensor(tok.all_special_ids)).any()


def test_masking_rates_are_15_percent_and_80_10_10(tok):
    collate = MLMCollator(tok)
    g = torch.Generator().manual_seed(0)
    ids = collate.random_ids[torch.randint(len(collate.random_ids), (400, 128), generator=g)]
    inputs, labels = mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), 0.15, collate.mask_id,
                                 collate.random_ids, generator=g)
    chosen = labels != IGNORE
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs(chosen.float().mean().item() - 0.15) < 0.005
    masked = (inputs[chosen] == collate.mask_id).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.01
    assert abs(kept - (0.1 + 0.1 / len(collate.random_ids))) < 0.01  # a random swap can draw the same token
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_whole_word_masking_masks_all_pieces_together(tok):
    docs = [["profits surging shares gaining downgrades losses cuts slumps"]] * 20
    stream = tokenize_documents(docs, tok, words=True)
    pieces = tok.convert_ids_to_tokens(stream.ids[:12].tolist())
    assert "##s" in pieces and "##ing" in pieces  # the test needs multi-piece words
    blocks = Blocks(stream, tok, block_size=32)
    items = [blocks[i] for i in range(len(blocks))]
    word = torch.as_tensor(np.cumsum(blocks.word_start, 1))
    real = ~torch.isin(torch.as_tensor(blocks.ids, dtype=torch.long), torch.tensor(tok.all_special_ids))
    collate = MLMCollator(tok, probability=0.3, whole_word=True)
    multi_masked = 0
    for seed in range(20):
        chosen = collate(items, generator=torch.Generator().manual_seed(seed))["labels"] != IGNORE
        for b in range(len(blocks)):
            for w in word[b, chosen[b]].unique():
                group = (word[b] == w) & real[b]
                assert chosen[b][group].all(), "a word was only partly masked"
                multi_masked += int(group.sum() > 1)
    assert multi_masked > 0
    # without whole-word masking, pieces are drawn independently: some words are split
    split = 0
    for seed in range(20):
        chosen = MLMCollator(tok, 0.3)(items, generator=torch.Generator().manual_seed(seed))["labels"] != IGNORE
        split += sum(int(chosen[b][(word[b] == w) & real[b]].unique().numel() > 1) for b in range(len(blocks))
                     for w in word[b].unique())
    assert split > 0


def test_fixed_heldout_masking_is_reproducible(tok):
    blocks = Blocks(tokenize_documents(DOCS, tok), tok, block_size=16)
    collate = MLMCollator(tok)
    a, b, c = collate.fixed(blocks, 7), collate.fixed(blocks, 7), collate.fixed(blocks, 8)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])


def test_document_split_is_per_source_without_overlap():
    big = Source("big", "big.txt", [[f"big doc {i}", f"line two of {i}"] for i in range(100)])
    small = Source("small", "small.txt", [[f"small doc {i}"] for i in range(5)])
    single = Source("one", "one.txt", [["the only document"]])
    train, heldout = split_documents([big, small, single], 0.1, seed=3)
    as_keys = lambda docs: {tuple(d) for d in docs}  # noqa: E731
    assert not as_keys(train) & as_keys(heldout)
    assert len(train) + len(heldout) == 106
    assert (big.heldout_documents, small.heldout_documents, single.heldout_documents) == (10, 1, 0)
    assert split_documents([big, small, single], 0.1, seed=3) == (train, heldout)  # seeded


def test_sharded_masking_equals_masking_the_global_batch():
    """Process k of N masks rows k*B..(k+1)*B of what one process masks for the N*B-row batch (same seed)."""
    from peftbert.data.mlm import mask_tokens

    ids = torch.randint(5, 50, (8, 12))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    random_ids = torch.arange(5, 50)

    def masked(rows, shard):
        return mask_tokens(ids[rows], maskable[rows], 0.3, 4, random_ids, generator=torch.Generator().manual_seed(3),
                           shard=shard)

    whole_inputs, whole_labels = masked(slice(0, 8), (0, 1))
    for k in range(2):
        inputs, labels = masked(slice(4 * k, 4 * k + 4), (k, 2))
        assert torch.equal(inputs, whole_inputs[4 * k:4 * k + 4]) and torch.equal(labels, whole_labels[4 * k:4 * k + 4])
