"""Tokenise task frames into tensors the loop can batch, padding dynamically per batch."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class EncodedTask(Dataset):
    """Token ids per example, kept unpadded; `collate` pads each batch to its own longest row."""

    def __init__(self, frame, tokenizer, max_length: int):
        pairs = frame["text_pair"].tolist() if "text_pair" in frame.columns else None
        enc = tokenizer(frame["text"].tolist(), pairs, truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(frame))]
        self.labels = frame["label"].tolist() if "label" in frame.columns else None

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        item = dict(self.features[i])
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def make_collate(tokenizer):
    pad_id = tokenizer.pad_token_id or 0

    def collate(items):
        width = max(len(it["input_ids"]) for it in items)
        batch = {}
        for key in items[0]:
            if key == "labels":
                batch[key] = torch.tensor([it[key] for it in items], dtype=torch.long)
                continue
            fill = pad_id if key == "input_ids" else 0
            batch[key] = torch.tensor([it[key] + [fill] * (width - len(it[key])) for it in items], dtype=torch.long)
        return batch

    return collate
