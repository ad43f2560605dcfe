"""Tokenise task frames once; transformers' DataCollatorWithPadding pads each batch to its longest row."""

from __future__ import annotations

from torch.utils.data import Dataset


class EncodedTask(Dataset):
    """Token ids per example, kept unpadded (a collator pads each batch to its own longest row)."""

    def __init__(self, frame, tokenizer, max_length: int, by_length: bool = False):
        """`by_length`: longest first, so evaluation batches pad little (metrics do not depend on order)."""
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        enc = tokenizer(frame["text"].tolist(), pairs, truncation=True, max_length=max_length)
        order = range(len(frame))
        if by_length:
            order = sorted(order, key=lambda i: -len(enc["input_ids"][i]))
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in order]
        labels = frame["label"].tolist() if "label" in frame.columns else None
        self.labels = [labels[i] for i in order] if labels is not None else None
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        item = dict(self.features[i])
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item
