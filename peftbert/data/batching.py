"""Length-grouped batching: less padding, same randomness from epoch to epoch.

Short texts padded to a random batch's longest row waste most of a step: finance tweets average 27 tokens,
and random batches of 32 pad them to 2.1x that. transformers' `get_length_grouped_indices` (the Trainer's
`group_by_length`) shuffles, cuts the shuffle into mega-batches of 50 batches, and sorts each by length, so
a batch holds texts of about one length while the order stays random. Its own sampler draws from one
generator across epochs, so a run resumed in epoch 3 would not see epoch 3's order; this one seeds each
epoch with (seed, epoch), like Accelerate's seedable sampler: resuming continues exactly.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


class LengthGroupedEpochSampler(Sampler):
    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_size: int = 50):
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0
        self.group_size = group_size  # batches per sorted mega-batch

    def set_epoch(self, epoch: int) -> None:  # called by Accelerate's loader at the start of every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        # (transformers caps the mega-batch at a quarter of the data: min(n // (4 * batch), group_size) batches)
        mult = max(1, min(len(self.lengths) // (4 * self.batch_size), self.group_size))
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=mult,
                                               generator=generator))
