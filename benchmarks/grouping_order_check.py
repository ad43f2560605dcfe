"""A check, not a feature: length-grouped batches in a shuffled order (the longest first, the partial last
kept), to tell batch order from batch make-up in the short regime (experiments/short-regime-batching, mode shuffled).

    python benchmarks/grouping_order_check.py SEED OUTPUT_DIR   (runs/short-*.csv, as that experiment writes them)
"""

import os
import sys

import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

import peftbert
from peftbert.data import batching


def shuffled_batches(self):
    generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
    mult = max(1, min(len(self.lengths) // (4 * self.batch_size), self.group_size))
    order = get_length_grouped_indices(self.lengths, self.batch_size, mega_batch_mult=mult, generator=generator)
    batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
    last = [batches.pop()] if len(batches[-1]) < self.batch_size else []
    rest = batches[1:]
    picked = [rest[j] for j in torch.randperm(len(rest), generator=generator).tolist()]
    return iter([i for b in [batches[0], *picked, *last] for i in b])


if __name__ == "__main__":
    batching.LengthGroupedEpochSampler.__iter__ = shuffled_batches
    seed, output = int(sys.argv[1]), sys.argv[2]
    test = os.path.join(os.environ["PEFTBERT_DATA_DIR"], "finance-tasks/twitter-financial-news-sentiment/valid.csv")
    peftbert.tune(method="full", train_file="runs/short-train.csv", validation_file="runs/short-validation.csv",
                  test_file=test, train={"epochs": 3, "lr": 1e-4, "seed": seed, "batching": "grouped",
                                         "report_to": "none"}, output=output, overwrite=True)
