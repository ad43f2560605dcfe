"""Class probabilities for a list of texts, batched by length: the one forward-pass loop that predict, serve,
monitor and export's checks share (its own module so that onnx_export can use it without importing predict,
which imports onnx_export)."""

from __future__ import annotations

import torch


@torch.inference_mode()
def predict_proba(model, tokenizer, texts, pairs=None, batch_size=64, max_length=512) -> torch.Tensor:
    """Class probabilities in input order; batches are formed by length (longest first)."""
    enc = tokenizer(list(texts), list(pairs) if pairs else None, truncation=True, max_length=max_length)
    order = sorted(range(len(texts)), key=lambda i: -len(enc["input_ids"][i]))
    out = torch.empty(len(texts), model.config.num_labels)
    device = model.device if isinstance(model, torch.nn.Module) else None  # an ONNX session takes CPU tensors
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in enc.keys()}, return_tensors="pt")
        if device is not None:
            batch = batch.to(device)
        out[idx] = torch.softmax(model(**batch).logits.float(), -1).cpu()
    return out
