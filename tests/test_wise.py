"""train.wise: the run ends at wise x trained + (1 - wise) x starting weights (WiSE-FT)."""

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_config
from peftbert.commands.tune import run_tune, tune_config
from peftbert.config import TrainArgs, build_adapt_config
from peftbert.errors import UserError
from peftbert.search import changed_after_training

SETS = ["train.max_steps=6", "train.lr=1e-3", "train.seed=3"]


def quiet(*a, **k):
    pass


def encoder(path) -> dict:
    return {k: v for k, v in load_file(path / "model.safetensors").items() if k.startswith("bert.encoder.")}


def test_the_saved_weights_are_the_share_of_trained_and_start(tiny_bert, toy_files, tmp_path):
    for share in (1.0, 0.25):
        run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / f"w{share}", SETS + [f"train.wise={share}"]),
                 log=quiet)
    start = load_file(tiny_bert / "model.safetensors")  # a BertForMaskedLM: its keys start with bert. too
    trained, mixed = encoder(tmp_path / "w1.0"), encoder(tmp_path / "w0.25")
    assert any(not torch.equal(trained[k], start[k]) for k in trained)  # training moved the encoder
    for k in trained:
        assert torch.allclose(mixed[k], 0.25 * trained[k] + 0.75 * start[k], atol=1e-6), k


def test_wise_0_with_the_refit_is_the_probe(tiny_bert, toy_files, tmp_path):
    refit = SETS + ["train.contrastive=1", "train.head_refit=true", "train.keep=last", "pooling=mean"]
    m = run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / "wise0", refit + ["train.wise=0"]), log=quiet)
    probe = run_tune(make_config(tiny_bert, toy_files, "probe", tmp_path / "probe", ["train.seed=3", "pooling=mean"]),
                     log=quiet)
    assert m["test"] == probe["test"]


def test_bad_values_and_other_methods_are_refused_and_a_recipes_value_dropped(tiny_bert):
    with pytest.raises(UserError, match=r"train.wise must be in \[0, 1\]"):
        TrainArgs(wise=1.5)
    with pytest.raises(UserError, match="drop --wise, or use --method full"):
        tune_config(None, {"model": str(tiny_bert), "method": "lora", "train": {"wise": 0.5}})
    with pytest.raises(UserError, match="adapt has none"):
        build_adapt_config(None, {"train": {"wise": 0.5}})
    recipe = tune_config("low-label", {"model": str(tiny_bert)}).train.wise
    assert recipe < 1  # so the next lines test something
    for method in ("lora", "probe"):  # the low-label suite runs them beside the recipe
        assert tune_config("low-label", {"model": str(tiny_bert), "method": method}).train.wise == 1


def test_a_config_built_by_hand_is_checked_and_search_does_not_prune_on_unmixed_scores(tiny_bert, toy_files,
                                                                                       tmp_path):
    import dataclasses

    cfg = make_config(tiny_bert, toy_files, "probe", tmp_path / "run")  # as api.tune(config=...) gets one
    with pytest.raises(UserError, match="--method probe is not full fine-tuning"):
        run_tune(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, wise=0.5)), log=quiet)
    assert not (tmp_path / "run").exists()
    full = tune_config(None, {"model": str(tiny_bert), "method": "full", "train": {"wise": 0.5}})
    assert changed_after_training(full)
    assert not changed_after_training(dataclasses.replace(full, train=dataclasses.replace(full.train, wise=1.0)))
