import pandas as pd
import pytest

from conftest import data_dir, needs_data, toy_rows
from peftbert.config import DataArgs
from peftbert.data.tasks import FOMC_SPLITS, load_task, stratified_split
from peftbert.errors import UserError


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet", "csv.gz"])
def test_reads_every_file_kind(tmp_path, suffix):
    df = toy_rows(40, 0)
    p = tmp_path / f"train.{suffix}"
    if suffix.startswith("csv"):
        df.to_csv(p, index=False)
    elif suffix == "tsv":
        df.to_csv(p, sep="\t", index=False)
    elif suffix == "jsonl":
        df.to_json(p, orient="records", lines=True)
    else:
        df.to_parquet(p)
    task = load_task(DataArgs(train_file=str(p)), seed=0)
    assert task.label_names == ["negative", "positive"]
    assert len(task.train) + len(task.validation) == 40
    assert set(task.train.columns) == {"text", "label"}


def test_validation_split_is_stratified_and_seeded():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0] * 80 + [1] * 20})
    tr1, va1 = stratified_split(df, 0.2, seed=3)
    tr2, va2 = stratified_split(df, 0.2, seed=3)
    assert va1.equals(va2) and len(va1) == 20
    assert (va1["label"] == 1).sum() == 4  # the 80/20 ratio is kept
    assert not set(tr1["text"]) & set(va1["text"])


def test_validation_is_drawn_from_the_pool_only():
    df = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0, 1] * 50})
    pool = {f"t{i}" for i in range(0, 100, 3)}
    tr, va = stratified_split(df, 0.1, seed=3, pool=pool)
    assert len(va) == 10 and len(tr) == 90
    assert set(va["text"]) <= pool and not set(tr["text"]) & set(va["text"])
    for fraction in (0.5, 0.33):  # more than the pool, or too few pool rows left for one of each class
        with pytest.raises(UserError, match="lower --validation-fraction"):
            stratified_split(df, fraction, seed=3, pool=pool)


def test_pair_columns_and_label_names(tmp_path):
    p = tmp_path / "pairs.csv"
    pd.DataFrame({"a": ["x", "y", "z", "w"] * 3, "b": ["1", "2", "3", "4"] * 3,
                  "y": ["yes", "no", "yes", "no"] * 3}).to_csv(p, index=False)
    task = load_task(DataArgs(train_file=str(p), text_column="a", text_pair_column="b", label_column="y"), seed=0)
    assert task.is_pair and task.id2label == {0: "no", 1: "yes"}


@pytest.mark.parametrize("kwargs, msg", [
    ({"text_column": "body"}, "column 'body' not found"),
    ({"label_column": "gold"}, "column 'gold' not found"),
])
def test_wrong_column(toy_files, kwargs, msg):
    with pytest.raises(UserError, match=msg):
        load_task(DataArgs(train_file=str(toy_files["train"]), **kwargs), seed=0)


def test_unknown_label_in_test_file(tmp_path, toy_files):
    bad = toy_rows(10, 5)
    bad.loc[3, "label"] = "maybe"
    bad.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(UserError, match="unknown label 'maybe'.*row 4"):
        load_task(DataArgs(train_file=str(toy_files["train"]), test_file=str(tmp_path / "test.csv")), seed=0)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_task(DataArgs(train_file=str(tmp_path / "nope.csv")), seed=0)
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(UserError, match="no rows"):
        load_task(DataArgs(train_file=str(tmp_path / "empty.csv")), seed=0)
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UserError, match="expected one of"):
        load_task(DataArgs(train_file=str(tmp_path / "x.xlsx")), seed=0)


def test_no_data_dir_falls_back_to_shipped_sample(monkeypatch):
    monkeypatch.delenv("PEFTBERT_DATA_DIR", raising=False)
    task = load_task(DataArgs(), seed=0)
    assert task.name == "finance-sample" and task.label_names == ["bearish", "bullish", "neutral"]
    assert any("sample" in n for n in task.notes)
    with pytest.raises(UserError, match="PEFTBERT_DATA_DIR"):
        load_task(DataArgs(task="sst2"), seed=0)


def test_unknown_task():
    with pytest.raises(UserError, match="unknown task"):
        load_task(DataArgs(task="imaginary"), seed=0)


@needs_data
@pytest.mark.parametrize("name, n_train, n_test, labels", [
    ("twitter-fin-sentiment", 9543, 2388, 3),
    ("fomc-hawkish-dovish", None, None, 3),
    ("fomc-hawkish-dovish@78516", None, None, 3),
    ("sst2", 67349, 872, 2),
    ("cola", 8551, 1043, 2),
    ("rte", 2490, 277, 2),
    ("mrpc", 3668, 408, 2),
])
def test_named_tasks_read_the_real_files(name, n_train, n_test, labels):
    task = load_task(DataArgs(task=name), seed=0)
    assert len(task.label_names) == labels
    if n_train:
        assert len(task.train) + len(task.validation) == n_train
        assert len(task.test) == n_test
    assert task.train["label"].nunique() == labels
    if name in ("rte", "mrpc"):
        assert task.is_pair


@needs_data
def test_fomc_validation_holds_no_test_sentence_of_any_split():
    tests = set()
    for split in FOMC_SPLITS:
        tests |= set(load_task(DataArgs(task=f"fomc-hawkish-dovish@{split}"), seed=0).test["text"])
    task = load_task(DataArgs(task="fomc-hawkish-dovish@78516"), seed=1)
    assert len(task.validation) == 191 and not set(task.validation["text"]) & tests


@needs_data
def test_default_task_is_finance_sentiment():
    assert load_task(DataArgs(data_dir=str(data_dir())), seed=0).name == "twitter-fin-sentiment"
