"""`train.contrastive W`: fine-tune a classifier on (1 - W) x cross-entropy + W x a supervised contrastive loss.

SetFit's lever with few labels is a contrastive stage: it pulls texts of one class together and pushes the others
apart, then fits a logistic-regression head on the result. This puts the same pressure into the one training loop:
the supervised contrastive loss of Khosla et al. (2020) on what the head reads (the pooled text, after dropout),
over every pair of texts in a batch (SetFit samples pairs and fits their cosine similarity), mixed with the head's
cross-entropy as Gunel et al. (ICLR 2021) do. W = 1 with `train.head_refit` (the low-label recipe) is SetFit's
two steps: the encoder learns from the contrastive loss alone, and the head is fitted on its features at the end.

Written here, not taken from sentence-transformers (its SupCon-like losses call a SentenceTransformer on text
features) or pytorch-metric-learning (not a dependency): the loss is a dozen lines on a (texts, hidden) tensor.
Across processes each computes it on its own batch share (its pairs only), as DDP averages the gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Khosla et al.'s L_out: for each text with another of its class in the batch, minus the mean log-probability
    of picking a same-class text among all the others by cosine similarity / temperature. 0 when no text has one."""
    z = F.normalize(features.float(), dim=-1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a text is not its own candidate
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    anchors = count > 0
    if not anchors.any():
        return logits.new_zeros(())
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(1)[anchors] / count[anchors]
    return -per_anchor.mean()


def with_contrastive(forward, model, num_labels: int, weight: float, temperature: float):
    """forward(model, batch) for the training loop: `forward`'s output (None: the model's own) with its loss
    replaced by the mix (train.contrastive_temperature: the default 0.3 is Gunel et al.'s few-shot choice)."""
    from .probe import label_layers

    forward = forward or (lambda model, batch: model(**batch))
    seen: list[torch.Tensor] = []
    for layer in label_layers(model, num_labels):  # a PEFT model's frozen copy never runs: all are watched
        layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]) if module.training else None)

    def run(model, batch):
        seen.clear()
        output = forward(model, batch)
        if len(seen) != 1 or len(seen[0]) != len(batch["labels"]):
            raise RuntimeError(f"train.contrastive: expected the head to read each text once, got {len(seen)} calls")
        # only the cross-entropy is mixed: what a method adds to the model's loss (AdaLoRA's orthogonal
        # regulariser) stays as it is. (At weight 1 the head's gradient is still there, at 0, for DDP.)
        cross_entropy = F.cross_entropy(output.logits.float(), batch["labels"])
        added = output.loss - cross_entropy
        contrastive = supcon_loss(seen[0], batch["labels"], temperature)
        output.loss = (1 - weight) * cross_entropy + weight * contrastive + added
        seen.clear()
        return output
    return run
