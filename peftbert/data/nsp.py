"""Segment pairs for BERT's next-sentence objective (Devlin et al. 2019), jointly with masked LM.

Each document's token stream is cut into segments of (block_size - 3) // 2 tokens. A pair is
[CLS] A [SEP] B [SEP] with token types 0 for A and 1 for B, where A is a segment that has a successor
in its document, and B is that successor (label 0, "is next") with probability 1/2, otherwise a segment
of another document (label 1, "not next"), drawn once from the seed. Masking is the MLM collator's.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .mlm import Rows, Stream

IS_NEXT, NOT_NEXT = 0, 1  # BertForPreTraining's convention


def documents_of(stream: Stream, sep_id: int) -> list[tuple[int, int]]:
    """(start, end) of each document in the stream: tokenize_documents puts [SEP] between documents."""
    cuts = np.flatnonzero(stream.ids == sep_id)
    starts, ends = np.concatenate([[0], cuts + 1]), np.concatenate([cuts, [len(stream.ids)]])
    return [(int(s), int(e)) for s, e in zip(starts, ends) if e > s]


class Pairs(Rows):
    """Segment pairs: Rows plus `token_types` [n, block_size] and `next_label`."""

    def __init__(self, stream: Stream, tokenizer, block_size: int, seed: int):
        seg = (block_size - 3) // 2
        segments, doc_of = [], []  # (start, end) in the stream, and the document each belongs to
        for d, (s, e) in enumerate(documents_of(stream, tokenizer.sep_token_id)):
            for a in range(s, e, seg):
                segments.append((a, min(a + seg, e)))
                doc_of.append(d)
        doc_of = np.asarray(doc_of)
        firsts = [i for i in range(len(segments) - 1) if doc_of[i] == doc_of[i + 1]]
        if not firsts or len(set(doc_of.tolist())) < 2:
            raise UserError(f"adapt.nsp needs at least 2 documents and some longer than one segment "
                            f"({seg} tokens at block_size {block_size}); the corpus has none")
        rng = np.random.default_rng(seed)
        n = len(firsts)
        self.ids = np.full((n, block_size), tokenizer.pad_token_id or 0, dtype=np.int32)
        self.token_types = np.zeros((n, block_size), dtype=np.int32)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.next_label = np.zeros(n, dtype=np.int64)
        self.word_start = np.ones((n, block_size), bool) if stream.word_start is not None else None
        for row, i in enumerate(firsts):
            j = i + 1
            if rng.random() >= 0.5:
                while doc_of[j] == doc_of[i]:  # another document: at least two exist
                    j = int(rng.integers(len(segments)))
                self.next_label[row] = NOT_NEXT
            (a0, a1), (b0, b1) = segments[i], segments[j]
            la, lb = a1 - a0, b1 - b0
            self.ids[row, :la + lb + 3] = np.concatenate([[tokenizer.cls_token_id], stream.ids[a0:a1],
                                                          [tokenizer.sep_token_id], stream.ids[b0:b1],
                                                          [tokenizer.sep_token_id]])
            self.token_types[row, la + 2:la + lb + 3] = 1
            self.lengths[row] = la + lb + 3
            if self.word_start is not None:
                self.word_start[row, 1:1 + la] = stream.word_start[a0:a1]
                self.word_start[row, la + 2:la + 2 + lb] = stream.word_start[b0:b1]

    def __getitem__(self, i):
        return {**super().__getitem__(i), "token_type_ids": self.token_types[i],
                "next_sentence_label": self.next_label[i]}
