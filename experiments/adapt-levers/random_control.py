"""The control for simcse_start.py's few-label lead (eleventh session): the base MiniLM moved as far as the SimCSE
run moved it, tensor by tensor, in a random direction (Gaussian, seed 0, scaled to each tensor's change in
Frobenius norm). If it scores as the SimCSE start does on dev_probe.py's development set, the objective taught
nothing; the size of the step did.

    python experiments/adapt-levers/random_control.py MOVED_DIR OUT_DIR
    python experiments/adapt-levers/dev_probe.py OUT.jsonl minilm OUT_DIR
"""
import sys

import torch
from transformers import AutoModel, AutoTokenizer

from peftbert.models import resolve_model

moved_dir, out = sys.argv[1], sys.argv[2]
base_path = resolve_model("minilm")
base, moved = AutoModel.from_pretrained(base_path), AutoModel.from_pretrained(moved_dir)
moved_state, gen = moved.state_dict(), torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, w in base.state_dict().items():
        if not w.is_floating_point():
            continue
        size = (moved_state[name] - w).norm()
        noise = torch.randn(w.shape, generator=gen)
        w.add_(noise * size / noise.norm())
base.save_pretrained(out)
AutoTokenizer.from_pretrained(base_path).save_pretrained(out)
print("moved as far as", moved_dir, "in a random direction:", out)
