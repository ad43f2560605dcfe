"""Masked-LM data: documents -> one token stream -> fixed-length blocks -> BERT's masking.

Packing: documents are joined with [SEP] and cut into blocks of [CLS] + (block_size - 2) tokens + [SEP]
(RoBERTa's FULL-SENTENCES packing: no compute spent on padding). Train and held-out documents are
packed separately, so no block mixes the two; only a split's last block is short, and padded.

Masking (Devlin et al. 2019): each non-special token is predicted with probability p (0.15); of
those 80% become [MASK], 10% a random token, 10% stay. Whole-word masking draws once per word and
predicts all its WordPiece pieces together. Special tokens and padding are never predicted or replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError

IGNORE = -100  # label of a position that is not predicted (the CE loss skips it)


@dataclass
class Stream:
    ids: np.ndarray  # int32 token ids of all documents, [SEP] between documents
    word_start: np.ndarray | None  # bool per token: it begins a word (only for whole-word masking)


def tokenize_documents(docs: list[list[str]], tokenizer, *, words: bool = False, max_tokens: int | None = None,
                       chunk_lines: int = 4096) -> Stream:
    """Tokenise documents in order until `max_tokens` (a training budget) is reached; lines never merge."""
    if words and not getattr(tokenizer, "is_fast", False):
        raise UserError("whole-word masking needs a fast tokenizer (one with a tokenizer.json)")
    sep = np.array([tokenizer.sep_token_id], dtype=np.int32)
    ids, starts, total, i = [], [], 0, 0
    while i < len(docs) and (max_tokens is None or total < max_tokens):
        batch, n_lines = [], 0
        while i < len(docs) and n_lines < chunk_lines:  # the fast tokenizer is fastest on big batches
            batch.append(docs[i])
            n_lines += len(docs[i])
            i += 1
        enc = tokenizer([line for d in batch for line in d], add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
        k = 0
        for d in batch:
            for _ in d:
                ids.append(np.asarray(enc["input_ids"][k], dtype=np.int32))
                if words:
                    w = np.asarray(enc.word_ids(k))
                    starts.append(np.concatenate([[True], w[1:] != w[:-1]]) if len(w) else np.zeros(0, bool))
                total += len(ids[-1])
                k += 1
            ids.append(sep)
            if words:
                starts.append(np.ones(1, bool))
            if max_tokens is not None and total >= max_tokens:
                break
    if not ids:
        return Stream(np.zeros(0, np.int32), np.zeros(0, bool) if words else None)
    # the last document needs no separator; the budget cuts mid-document
    stream = np.concatenate(ids)[:-1][:max_tokens]
    word_start = np.concatenate(starts)[:-1][:max_tokens] if words else None
    return Stream(stream, word_start)


class Rows(Dataset):
    """Fixed-width token rows: `ids` [n, width], `lengths` (non-padding tokens), `word_start` or None."""

    ids: np.ndarray
    lengths: np.ndarray
    word_start: np.ndarray | None

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "length": self.lengths[i],
                "word_start": None if self.word_start is None else self.word_start[i]}


class Blocks(Rows):
    """Packed blocks of block_size tokens."""

    def __init__(self, stream: Stream, tokenizer, block_size: int):
        body = block_size - 2
        n = math.ceil(len(stream.ids) / body)
        self.ids = np.full((n, block_size), tokenizer.pad_token_id or 0, dtype=np.int32)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.word_start = np.ones((n, block_size), bool) if stream.word_start is not None else None
        for b in range(n):
            chunk = stream.ids[b * body:(b + 1) * body]
            self.ids[b, 0], self.ids[b, 1:1 + len(chunk)], self.ids[b, 1 + len(chunk)] = (
                tokenizer.cls_token_id, chunk, tokenizer.sep_token_id)
            self.lengths[b] = len(chunk) + 2
            if self.word_start is not None:
                self.word_start[b, 1:1 + len(chunk)] = stream.word_start[b * body:(b + 1) * body]


def mask_tokens(ids, maskable, probability: float, mask_id: int, random_ids, word_start=None, generator=None,
                shard: tuple[int, int] = (0, 1)):
    """(inputs, labels) for a [batch, length] LongTensor; `maskable` marks real, non-special tokens.

    `shard` = (process index, process count): every random draw is made for the global batch (all processes'
    rows, in process order, as Accelerate shards batches) and this process keeps its rows. So N processes
    with batch B mask exactly as one process with batch N x B, and the RNG advances alike on all of them.
    """
    index, count = shard
    rows = slice(index * ids.shape[0], (index + 1) * ids.shape[0])

    def draw(fn, *args):
        return fn(*args, (ids.shape[0] * count, ids.shape[1]), generator=generator, device=ids.device)[rows]

    u = draw(torch.rand)
    if word_start is not None:
        # one draw per word (its index = number of word starts so far), shared by all its pieces
        word = torch.cumsum(word_start.long(), 1) - 1
        u = u.gather(1, word)
    else:
        word = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    chosen = (u < probability) & maskable
    # A row with nothing chosen teaches nothing, and an all-empty batch gives a NaN loss: pick one word.
    pick = (draw(torch.rand) * maskable).argmax(1, keepdim=True)  # drawn always: the RNG advances alike
    empty = ~chosen.any(1) & maskable.any(1)
    chosen |= empty[:, None] & (word == word.gather(1, pick)) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = draw(torch.rand)
    inputs = torch.where(chosen & (roll < 0.8), torch.full_like(ids, mask_id), ids)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    random_ids = random_ids.to(ids.device)
    picks = draw(torch.randint, len(random_ids))
    return torch.where(swap, random_ids[picks], inputs), labels


class MLMCollator:
    """Batches blocks (`batch`) and masks them (`mask`); `__call__` does both.

    Training masks each batch afresh (dynamic masking, as RoBERTa) inside the model's forward, not in
    the DataLoader: the loader prefetches a batch ahead, so masks drawn there would not follow the RNG
    state a checkpoint saves, and a resumed run would not continue exactly.
    """

    def __init__(self, tokenizer, probability: float = 0.15, whole_word: bool = False):
        if tokenizer.mask_token_id is None:
            raise UserError("the tokenizer has no mask token, so it cannot be used for masked-LM training")
        self.probability, self.whole_word, self.mask_id = probability, whole_word, tokenizer.mask_token_id
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        usable = torch.ones(len(tokenizer), dtype=torch.bool)
        usable[self.special] = False  # a "random" replacement is a real word, never [PAD] or [CLS]
        self.random_ids = usable.nonzero().squeeze(1)
        self.shard = (0, 1)  # (process index, count) under `accelerate launch`: see mask_tokens

    def batch(self, items) -> dict:
        ids = torch.as_tensor(np.stack([it["input_ids"] for it in items]), dtype=torch.long)
        lengths = torch.as_tensor([int(it["length"]) for it in items])
        out = {"input_ids": ids, "attention_mask": (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()}
        if self.whole_word:
            out["word_start"] = torch.as_tensor(np.stack([it["word_start"] for it in items]))
        if "next_sentence_label" in items[0]:  # segment pairs (data.nsp)
            out["token_type_ids"] = torch.as_tensor(np.stack([it["token_type_ids"] for it in items]), dtype=torch.long)
            out["next_sentence_label"] = torch.as_tensor([int(it["next_sentence_label"]) for it in items])
        return out

    def mask(self, input_ids, attention_mask, word_start=None, generator=None):
        maskable = attention_mask.bool() & ~torch.isin(input_ids, self.special.to(input_ids.device))
        return mask_tokens(input_ids, maskable, self.probability, self.mask_id, self.random_ids, word_start, generator,
                           self.shard if generator is None else (0, 1))

    def __call__(self, items, generator=None) -> dict:
        b = self.batch(items)
        inputs, labels = self.mask(b.pop("input_ids"), b["attention_mask"], b.pop("word_start", None), generator)
        return {"input_ids": inputs, "labels": labels, **b}

    def fixed(self, blocks, seed: int) -> dict:
        """The held-out set masked once, from a seeded generator: the same masks before and after training."""
        return self([blocks[i] for i in range(len(blocks))], generator=torch.Generator().manual_seed(seed))
