"""`adapt --task T --domain D --select N`: curated task-adaptive text (Gururangan et al. 2020's kNN-TAPT).

The domain corpus is cut to the N lines nearest T's training texts in the model's own embedding space (mean
pooled, cosine): for each training text its nearest lines are taken in turn, round-robin over the texts, until N
distinct lines are chosen. So the adapt step reads domain text that looks like the task, not the whole domain.
"""

from __future__ import annotations

import torch

from .corpus import Source


@torch.no_grad()
def embed(texts: list[str], model, tokenizer, batch_size: int = 128, max_length: int = 128,
          bf16: bool = False) -> torch.Tensor:
    """Unit-length mean-pooled embeddings, in the order given (batched by length: little padding); under bf16
    autocast where `bf16` (benchmarks/select_speed.py: the same neighbours, a fraction of the time on bf16 CPUs)."""
    from ..masked_lm import mean_pooled

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), model.config.hidden_size)
    device = next(model.parameters()).device
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        batch = tokenizer([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            states = model(**batch)[0]
        pooled = mean_pooled(states.float(), batch["attention_mask"]).cpu()
        out[idx] = torch.nn.functional.normalize(pooled, dim=-1)
    return out


def nearest_lines(sources: list[Source], task_texts: list[str], n: int, model, tokenizer,
                  bf16: bool = False) -> Source:
    """One source of the n corpus lines nearest the task texts, one line a document."""
    lines = list(dict.fromkeys(line for s in sources for doc in s.documents for line in doc))
    n = min(n, len(lines))
    corpus, task = embed(lines, model, tokenizer, bf16=bf16), embed(task_texts, model, tokenizer, bf16=bf16)
    k = min(len(lines), max(1, -(-n // max(len(task_texts), 1)) * 4))  # enough neighbours per text for n in all
    ranked = torch.cat([(task[i:i + 1024] @ corpus.T).topk(k, dim=1).indices for i in range(0, len(task), 1024)])
    chosen: dict[int, None] = {}
    for rank in range(k):
        for line in ranked[:, rank].tolist():
            chosen.setdefault(line, None)
            if len(chosen) == n:
                break
        if len(chosen) == n:
            break
    picked = [[lines[i]] for i in chosen]
    names = ", ".join(s.name for s in sources)
    return Source(f"the {len(picked)} of {len(lines)} lines of {names} nearest the task", "selected", picked)
