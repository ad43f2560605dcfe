"""Training batches: how the loop draws them (TrainBatches), and length-grouped batching: less padding, same
randomness from epoch to epoch.

Short texts padded to a random batch's longest row waste most of a step: finance tweets average 27 tokens,
and random batches of 32 pad them to 2.1x that. transformers' `get_length_grouped_indices` (the Trainer's
`group_by_length`) shuffles, cuts the shuffle into mega-batches of 50 batches, and sorts each by length, so
a batch holds texts of about one length while the order stays random. Its own sampler draws from one
generator across epochs, so a run resumed in epoch 3 would not see epoch 3's order; this one seeds each
epoch with (seed, epoch), like Accelerate's seedable sampler: resuming continues exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from ..config import TrainArgs
from ..errors import CheckpointMismatch


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


@dataclass
class TrainBatches:
    """The training set as the loop draws it: the examples, how a batch of them is collated, and how the model
    reads a batch (`forward(model, batch)`, where it needs more than `model(**batch)`: packed rows, packing.py).

    Packed and random batches hold the same texts (a random draw); packing, done by the collator, only lays them
    out without padding. `grouped` changes the draw: texts of about one length share a batch."""
    dataset: Dataset
    collate: Callable
    forward: Callable | None = None

    def loader(self, args: TrainArgs, num_processes: int) -> DataLoader:
        lengths = getattr(self.dataset, "lengths", None)
        if args.batching == "grouped" and lengths is not None:
            # grouped by the global batch: N processes then train on the batches one process would (each its share)
            sampler = LengthGroupedEpochSampler(lengths, args.batch_size * num_processes, args.seed, args.group_size)
            return DataLoader(self.dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=self.collate)
        # Accelerate swaps the shuffle for its seedable sampler
        return DataLoader(self.dataset, batch_size=args.batch_size, shuffle=True, collate_fn=self.collate)

    def run(self, model, batch):
        """The model's output on one training batch."""
        return self.forward(model, batch) if self.forward else model(**batch)


def texts_in(batch: dict) -> int:
    """How many texts a collated batch holds: a packed batch's rows hold several (one `first_token` each)."""
    return len(batch["first_token"] if "first_token" in batch else batch["input_ids"])


def check_resumed_batching(ran: str | None, asked: str, ckpt) -> None:
    """A resumed run skips the batches of its half-done epoch in the checkpoint's batch order, so it must draw
    them the same way. Checkpoints from before packing existed hold no batching: theirs was grouped or random."""
    if ran != asked and not (ran is None and asked != "packed"):
        raise CheckpointMismatch(f"{ckpt} was trained with {ran or 'grouped or random'} batches, not {asked}; resume "
                                 "with the run's own recipe.yaml (--recipe) or the matching --batching")
