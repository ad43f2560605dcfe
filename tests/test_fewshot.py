"""`--train-per-class N`: the low-label regime's seeded, stratified subsample, with validation sized to match."""

import pandas as pd
import pytest

from conftest import needs_data
from peftbert.config import DataArgs
from peftbert.data.tasks import load_task
from peftbert.errors import UserError


def write(path, n_per_class):
    rows = [{"text": f"{name} text {i}", "label": name} for name in ("down", "flat", "up") for i in range(n_per_class)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def test_n_per_class_train_and_carved_validation_disjoint(tmp_path):
    args = DataArgs(train_file=write(tmp_path / "train.csv", 30), train_per_class=8)
    task = load_task(args, seed=1)
    assert task.train["label"].value_counts().tolist() == [8, 8, 8]
    assert task.validation["label"].value_counts().tolist() == [8, 8, 8]
    assert not set(task.train["text"]) & set(task.validation["text"])
    again = load_task(args, seed=1)
    assert again.train.equals(task.train) and again.validation.equals(task.validation)  # seeded
    other = load_task(args, seed=2)
    assert set(other.train["text"]) != set(task.train["text"])  # another seed, another sample


def test_given_validation_is_subsampled_and_test_untouched(tmp_path):
    args = DataArgs(train_file=write(tmp_path / "train.csv", 20), validation_file=write(tmp_path / "val.csv", 12),
                    test_file=write(tmp_path / "test.csv", 15), train_per_class=4)
    task = load_task(args, seed=0)
    assert len(task.train) == 12 and len(task.validation) == 12 and len(task.test) == 45


def test_too_few_rows_of_a_class_is_one_line(tmp_path):
    args = DataArgs(train_file=write(tmp_path / "train.csv", 10), train_per_class=8)  # 8 validation + 8 train > 10
    with pytest.raises(UserError, match="lower --train-per-class"):
        load_task(args, seed=0)


@needs_data
def test_fomc_low_label_validation_holds_no_test_sentence():
    task = load_task(DataArgs(task="fomc-hawkish-dovish@78516", train_per_class=32), seed=3)
    assert len(task.train) == len(task.validation) == 96
    assert not set(task.validation["text"]) & set(task.test["text"])
    assert not set(task.train["text"]) & set(task.validation["text"])
