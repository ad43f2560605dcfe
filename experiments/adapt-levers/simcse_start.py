"""A lead that did not carry (eleventh session; the low-label recipe from its output scored lower on FOMC's
development set, see the experiment's notes): unsupervised SimCSE (Gao et al. 2021; the two dropout masks of one
sentence are its positive pair, the batch's other sentences its negatives) on FOMC's unlabelled training text, then
dev_probe.py on the output:

    python experiments/adapt-levers/simcse_start.py OUT_DIR STEPS LR TEMPERATURE [BATCH]
    python experiments/adapt-levers/dev_probe.py OUT.jsonl minilm OUT_DIR

The text: split 5768's train file less dev_probe.py's 500 development rows (by index: the file repeats sentences, and
4 of the 528 read as a development sentence) and less every validation or test sentence of FOMC's published
splits (peftbert's decontamination), 528 distinct sentences. Mean-pooled MiniLM, bf16
autocast, AdamW. Run once: 100 steps, lr 1e-5, temperature 0.05, batch 64. Written outside `adapt` (which trains
a masked-LM objective) to see whether the objective is worth building in.
"""
import random
import sys
import time

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer

from peftbert.config import DataArgs
from peftbert.data.decontaminate import held_out_texts, normalise
from peftbert.data.tasks import data_dir
from peftbert.models import resolve_model

out, steps, lr, temp = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bs = int(sys.argv[5]) if len(sys.argv) > 5 else 64
torch.manual_seed(0)
random.seed(0)
train = pd.read_csv(data_dir(DataArgs()) / "finance-tasks/fomc-hawkish-dovish/train-5768.csv")
dev = train.sample(n=500, random_state=0)  # dev_probe.py's development set: never trained on
pool = train.drop(dev.index)
held = held_out_texts("fomc-hawkish-dovish@5768", None, 42)
texts = [t for t in pool["sentence"].astype(str) if normalise(t) not in held]
texts = list(dict.fromkeys(texts))
print("texts", len(texts), flush=True)
path = resolve_model("minilm")
tok = AutoTokenizer.from_pretrained(path)
model = AutoModel.from_pretrained(path)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


def emb(b):
    o = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    return (o * m).sum(1) / m.sum(1)


t0, order = time.time(), []
for step in range(steps):
    if len(order) < bs:
        order += random.sample(texts, len(texts))
    batch, order = order[:bs], order[bs:]
    b = tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z1, z2 = emb(b), emb(b)
    z1, z2 = F.normalize(z1.float(), dim=-1), F.normalize(z2.float(), dim=-1)
    loss = F.cross_entropy(z1 @ z2.T / temp, torch.arange(len(batch)))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 20 == 0:
        print(step, round(loss.item(), 4), round(time.time() - t0), flush=True)
model.save_pretrained(out)
tok.save_pretrained(out)
print("done", round(time.time() - t0))
