"""SetFit's own loss in the low-label recipe's place, on the development sets only (no test set is read):

    python experiments/low-label/select_cosine.py ARMS.json OUT.jsonl DEV_DIR

As select_recipe.py, with the recipe's supervised contrastive loss replaced by SetFit's CosineSimilarityLoss:
the squared error between two texts' cosine similarity and 1 (same class) or 0 (different classes). SetFit
samples pairs and oversamples the rarer kind so that as many pairs are positive as negative; here every pair in
the batch is used, positives and negatives each weighted a half, to keep that balance. The arms' temperature is
unused (the loss has none).
"""

import sys

import torch
import torch.nn.functional as F

import peftbert.contrastive as contrastive
from select_recipe import main


def cosine_pairs_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    z = F.normalize(features.float(), dim=-1)
    cos = z @ z.T
    pairs = torch.ones_like(cos, dtype=torch.bool).triu(diagonal=1)  # each unordered pair once, no text with itself
    same = labels[:, None] == labels[None, :]
    terms = [((cos[same & pairs] - 1) ** 2).mean()] if (same & pairs).any() else []
    terms += [(cos[~same & pairs] ** 2).mean()] if (~same & pairs).any() else []
    return sum(terms) / len(terms) if terms else cos.new_zeros(())


if __name__ == "__main__":
    contrastive.supcon_loss = cosine_pairs_loss  # with_contrastive looks it up at each call
    main(*sys.argv[1:])
