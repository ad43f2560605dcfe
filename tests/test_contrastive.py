"""train.contrastive: a supervised contrastive loss on the head's input, mixed with the head's cross-entropy."""

import math

import pytest
import torch
from safetensors.torch import load_file

from helpers import make_config
from peftbert.cli_options import adapt_flags
from peftbert.commands.tune import run_tune, tune_config
from peftbert.config import TrainArgs, build_adapt_config
from peftbert.contrastive import supcon_loss
from peftbert.errors import UserError


def quiet(*a, **k):
    pass


def supcon_by_hand(z: torch.Tensor, y: list[int], t: float) -> float:
    """Khosla et al.'s L_out written as the sums of the paper, one anchor at a time."""
    z = torch.nn.functional.normalize(z, dim=-1)
    total, anchors = 0.0, 0
    for i in range(len(y)):
        others = [a for a in range(len(y)) if a != i]
        positives = [p for p in others if y[p] == y[i]]
        if not positives:
            continue
        denominator = sum(math.exp(float(z[i] @ z[a]) / t) for a in others)
        total += -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denominator) for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_supcon_is_the_papers_sum_and_skips_texts_alone_in_their_class():
    torch.manual_seed(0)
    z, y = torch.randn(9, 5), [0, 0, 0, 1, 1, 2, 2, 2, 3]  # class 3 has no partner: not an anchor
    assert supcon_loss(z, torch.tensor(y), 0.3).item() == pytest.approx(supcon_by_hand(z, y, 0.3), rel=1e-5)
    assert supcon_loss(z, torch.arange(9), 0.3).item() == 0.0  # no pairs at all


def test_supcon_is_low_when_each_class_clusters():
    torch.manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    clustered = torch.eye(3)[y] * 5 + 0.01 * torch.randn(6, 3)
    assert supcon_loss(clustered, y, 0.3) < supcon_loss(clustered, torch.tensor([0, 1, 2, 0, 1, 2]), 0.3) / 5


def encoder_and_head(path):
    weights = load_file(path / "model.safetensors")
    return weights["classifier.weight"], weights["bert.encoder.layer.0.attention.self.query.weight"]


def gradients(tiny_bert, weight: float, rows: int = 8):
    """The head's and a encoder matrix's gradient after one mixed loss on a batch of the tiny model."""
    from peftbert.contrastive import with_contrastive
    from peftbert.models import load_classifier, load_tokenizer

    torch.manual_seed(0)
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"}, "mean").train()
    batch = dict(load_tokenizer(str(tiny_bert))(["good gain", "bad loss", "great profit", "weak sales"] * (rows // 4),
                                                 padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([1, 0, 1, 0] * (rows // 4))
    with_contrastive(None, model, 2, weight, 0.3)(model, batch).loss.backward()
    return model.classifier.weight.grad, model.bert.encoder.layer[0].attention.self.query.weight.grad


def test_the_weight_mixes_the_two_losses(tiny_bert):
    """W = 1: the encoder learns from the contrastive loss alone, the head gets no gradient; W = 0.5: both learn,
    and the encoder's gradient differs from cross-entropy's alone."""
    head, encoder = gradients(tiny_bert, 1.0)
    assert torch.count_nonzero(head) == 0 and torch.count_nonzero(encoder) > 0
    head, encoder = gradients(tiny_bert, 0.5)
    head0, encoder0 = gradients(tiny_bert, 0.0)
    assert torch.allclose(head, head0 * 0.5) and torch.count_nonzero(head) > 0  # only cross-entropy reaches the head
    assert not torch.allclose(encoder, encoder0 * 0.5)


def test_a_run_with_the_term_trains_other_weights(tiny_bert, toy_files, tmp_path):
    sets = ["train.max_steps=6", "train.lr=1e-3", "train.seed=3"]
    for w in (0.0, 0.5):
        run_tune(make_config(tiny_bert, toy_files, "full", tmp_path / f"w{w}", sets + [f"train.contrastive={w}"]),
                 log=quiet)
    assert not torch.allclose(encoder_and_head(tmp_path / "w0.5")[1], encoder_and_head(tmp_path / "w0.0")[1])


@pytest.mark.parametrize("method, sets", [
    ("lora", []), ("lora", ["lora.r=2"]),  # a LoRA matrix with one output per label is not the head
    ("full", ["pooling=mean", "train.batching=grouped"]), ("full", ["train.batching=packed"])])
def test_contrastive_runs_with_peft_heads_mean_pooling_and_packed_rows(tiny_bert, toy_files, tmp_path, method, sets):
    cfg = make_config(tiny_bert, toy_files, method, tmp_path / "run", sets + ["train.contrastive=0.5",
                                                                             "train.max_steps=3"])
    m = run_tune(cfg, log=quiet)
    assert m["steps"] == 3 and math.isfinite(m["validation"]["macro_f1"])
    assert "contrastive: 0.5" in (tmp_path / "run" / "recipe.yaml").read_text()


def test_the_probe_turns_a_recipes_term_off_and_refuses_one_asked_for(tiny_bert):
    cfg = tune_config("low-label", {"model": str(tiny_bert), "method": "probe"})  # the low-label suite's probe cells
    assert (cfg.train.contrastive, cfg.train.head_refit) == (0, False)
    with pytest.raises(UserError, match="drop --contrastive, or use a method that trains"):
        tune_config(None, {"model": str(tiny_bert), "method": "probe", "train": {"contrastive": 0.5}})
    with pytest.raises(UserError, match="drop --head-refit"):
        tune_config(None, {"model": str(tiny_bert), "method": "probe", "train": {"head_refit": True}})


def test_bad_weights_and_a_head_left_as_it_began_are_refused():
    with pytest.raises(UserError, match=r"in \[0, 1\]"):
        TrainArgs(contrastive=1.5)
    with pytest.raises(UserError, match="add --head-refit"):
        TrainArgs(contrastive=1.0)
    with pytest.raises(UserError, match="add --keep last"):
        TrainArgs(contrastive=1.0, head_refit=True)
    assert TrainArgs(contrastive=1.0, head_refit=True, keep="last").contrastive == 1
    for field in ("contrastive", "contrastive_temperature", "head_refit"):  # adapt has no task head
        assert not any(f.path == ("train", field) for f in adapt_flags())
    with pytest.raises(UserError, match="adapt has none"):
        build_adapt_config(None, {"train": {"contrastive": 0.5}})
    with pytest.raises(UserError, match="train.contrastive_temperature applies to tune's task head"):
        build_adapt_config(None, {"train": {"contrastive_temperature": 0.1}})
    with pytest.raises(UserError, match="adapt has none"):
        build_adapt_config(None, {"train": {"head_refit": True}})


def probe_fit_difference(model, tokenizer, cfg) -> torch.Tensor:
    """What the probe's logistic regression, fitted on `model`'s own features of the training rows, puts in a
    two-label head: its one coefficient row, the second label's weights minus the first's."""
    from sklearn.linear_model import LogisticRegression

    from peftbert.config import PROBE_C
    from peftbert.data.tasks import load_task
    from peftbert.probe import head_features

    train = load_task(cfg.data, cfg.train.seed).train
    fit = LogisticRegression(C=PROBE_C, max_iter=5000, random_state=cfg.train.seed).fit(
        head_features(model, tokenizer, train, 16), train["label"])
    return torch.as_tensor(fit.coef_[0])


def test_head_refit_ends_with_a_logistic_regression_on_the_trained_features(tiny_bert, toy_files, tmp_path):
    from peftbert.predict import load_run

    sets = ["train.max_steps=6", "train.lr=1e-3", "train.contrastive=0.9", "train.seed=3"]
    for refit in (False, True):
        cfg = make_config(tiny_bert, toy_files, "full", tmp_path / f"refit-{refit}",
                          sets + [f"train.head_refit={refit}"])
        m = run_tune(cfg, log=quiet)
    assert 0.5 <= m["head_refit_train_accuracy"] <= 1
    model, tokenizer, _ = load_run(tmp_path / "refit-True")
    weight = model.classifier.weight.detach()
    expected = probe_fit_difference(model, tokenizer, cfg).to(weight.dtype)
    assert torch.allclose(weight[1] - weight[0], expected, atol=1e-4)
    unrefitted = encoder_and_head(tmp_path / "refit-False")
    assert torch.equal(encoder_and_head(tmp_path / "refit-True")[1], unrefitted[1])  # the same encoder
    assert not torch.allclose(weight, unrefitted[0])


def test_head_refit_reaches_a_peft_models_trained_head(tiny_bert, toy_files, tmp_path):
    from peftbert.predict import load_run

    sets = ["train.max_steps=4", "train.contrastive=1", "train.head_refit=true", "train.keep=last", "train.seed=3"]
    cfg = make_config(tiny_bert, toy_files, "lora", tmp_path / "run", sets)
    run_tune(cfg, log=quiet)
    model, tokenizer, _ = load_run(tmp_path / "run", merge=False)
    trained = [m for n, m in model.named_modules() if n.endswith("classifier.modules_to_save.default")][0]
    weight = trained.weight.detach()
    expected = probe_fit_difference(model, tokenizer, cfg).to(weight.dtype)  # the saved adapter's features
    assert torch.allclose(weight[1] - weight[0], expected, atol=1e-4)


def test_only_the_cross_entropy_is_mixed_not_what_a_method_adds(tiny_bert):
    """AdaLoRA adds its orthogonal regulariser to the model's loss: the mix must leave it whole."""
    from peftbert.contrastive import with_contrastive
    from peftbert.models import load_classifier, load_tokenizer

    def plus_five(model, batch):
        output = model(**batch)
        output.loss = output.loss + 5.0
        return output

    losses = []
    for forward in (None, plus_five):
        torch.manual_seed(0)
        model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"}, "mean").train()
        batch = dict(load_tokenizer(str(tiny_bert))(["good gain", "bad loss", "great profit", "weak sales"],
                                                     padding=True, return_tensors="pt"))
        batch["labels"] = torch.tensor([1, 0, 1, 0])
        losses.append(with_contrastive(forward, model, 2, 0.5, 0.3)(model, batch).loss.item())
    assert losses[1] - losses[0] == pytest.approx(5.0, abs=1e-5)
