"""train.wise: the fine-tuned weights mixed with the ones the run started from (WiSE-FT, Wortsman et al., CVPR
2022), so the run ends at wise x trained + (1 - wise) x start. With a few dozen rows per class, fine-tuning moves
the encoder a long way on little evidence; the mix keeps part of what the pretrained embedding knew."""

import torch


def snapshot(model) -> dict[str, torch.Tensor]:
    """A copy of the trainable weights before training."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def mix(model, start: dict[str, torch.Tensor], share: float) -> None:
    """Set each weight in `start` to share x its trained value + (1 - share) x its starting value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in start:
                p.lerp_(start[name].to(p.device, p.dtype), 1 - share)
