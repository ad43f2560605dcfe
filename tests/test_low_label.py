"""The low-label levers: a minimum step budget, mean pooling (kept across save/load), a linear-probe head."""

import gzip
import json
import random

import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoModel

from conftest import FILLER, NEG, POS, ROOT
from helpers import make_config
from test_adapt import config
from peftbert.commands.adapt import run_adapt
from peftbert.masked_lm import mean_pooled
from peftbert.config import RECIPES_DIR, TrainArgs, build_adapt_config, load_yaml
from peftbert.data.tasks import load_task
from peftbert.errors import UserError
from peftbert.models import load_classifier, load_tokenizer
from peftbert.predict import load_run
from peftbert.probe import head_features, probe_head
from peftbert.train import plan_steps
from peftbert.commands.tune import run_tune


def quiet(*a, **k):
    pass


def test_min_steps_adds_epochs_on_small_sets_and_max_steps_wins():
    assert plan_steps(3, TrainArgs(epochs=5)).total_steps == 15
    assert plan_steps(3, TrainArgs(epochs=5, min_steps=200)).total_steps == 200
    assert plan_steps(300, TrainArgs(epochs=5, min_steps=200)).total_steps == 1500  # a large set: no change
    assert plan_steps(3, TrainArgs(epochs=5, min_steps=200, max_steps=7)).total_steps == 7


@pytest.mark.parametrize("method", ["full", "lora"])
def test_mean_pooling_trains_saves_and_reloads(tiny_bert, toy_files, tmp_path, method):
    cfg = make_config(tiny_bert, toy_files, method, tmp_path / "run", ["pooling=mean", "train.batching=packed"])
    m = run_tune(cfg, log=quiet)
    assert m["pooling"] == "mean"
    model, tokenizer, _ = load_run(tmp_path / "run")
    assert model.config.peftbert_pooling == "mean"
    batch = tokenizer(["good gain", "bad loss on the market"], padding=True, return_tensors="pt")
    with torch.no_grad():
        mean_logits = model(**batch).logits
        for h in model.base_model.modules():  # the same weights read through [CLS] instead answer otherwise
            h._forward_hooks.clear()
        assert not torch.allclose(mean_logits, model(**batch).logits)


def test_mean_pooling_ignores_padding(tiny_bert):
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"}, "mean").eval()
    tok = load_tokenizer(str(tiny_bert))
    alone = tok(["good gain"], return_tensors="pt")
    padded = tok(["good gain", "bad loss on the market today"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**alone).logits[0], model(**padded).logits[0], atol=1e-5)


def test_pooling_mean_refuses_models_without_a_bert_head(tiny_bert, tmp_path):
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    path = tmp_path / "distil"
    DistilBertForMaskedLM(DistilBertConfig(vocab_size=40, dim=32, n_layers=1, n_heads=2, hidden_dim=64)).save_pretrained(path)
    with pytest.raises(UserError, match="use --pooling cls"):
        load_classifier(str(path), {0: "negative", 1: "positive"}, "mean")


def test_probe_head_fits_the_frozen_features(tiny_bert, toy_files):
    cfg = make_config(tiny_bert, toy_files, "full")
    task = load_task(cfg.data, 0)
    model = load_classifier(str(tiny_bert), task.id2label, "mean")
    tok = load_tokenizer(str(tiny_bert))
    fit = probe_head(model, tok, task.train, 16, seed=0)
    x = torch.as_tensor(head_features(model, tok, task.train, 16))
    preds = (x @ model.classifier.weight.T + model.classifier.bias).argmax(-1)
    assert fit == pytest.approx((preds.numpy() == task.train["label"].to_numpy()).mean())
    assert fit > 0.6  # the toy task's keywords separate the classes even through a random tiny encoder


def test_bad_pooling_is_a_user_error(tiny_bert, toy_files):
    with pytest.raises(UserError, match="pooling must be one of cls|mean"):
        make_config(tiny_bert, toy_files, "full", sets=["pooling=max"])


def test_adapt_preserve_keeps_embeddings_closer(tiny_bert, tmp_path):
    """The preservation term: the same adapt run with it drifts less from the original sentence embeddings."""
    rng = random.Random(0)
    corpus = tmp_path / "c.txt.gz"
    with gzip.open(corpus, "wt") as f:
        for _ in range(40):
            f.write(" ".join(rng.choice(POS + NEG + FILLER) for _ in range(12)) + "\n\n")
    tok = load_tokenizer(str(tiny_bert))
    batch = tok(["good gain on the market", "bad loss after the quarter"], padding=True, return_tensors="pt")

    def embed(path):
        with torch.no_grad():
            return mean_pooled(AutoModel.from_pretrained(path)(**batch)[0], batch["attention_mask"])

    original = embed(str(tiny_bert))
    drift = {}
    for preserve in (0.0, 5.0):
        out = tmp_path / f"p{preserve}"
        m = run_adapt(config(tiny_bert, [corpus], out, {"max_steps": 30, "lr": 3e-3}, preserve=preserve),
                      log=quiet)
        assert m["preserve"] == preserve
        drift[preserve] = (1 - torch.nn.functional.cosine_similarity(embed(str(out)), original)).mean().item()
    assert drift[5.0] < drift[0.0]


def corpus_file(tmp_path, seed=1, documents=30):
    corpus = tmp_path / "c.txt.gz"
    rng = random.Random(seed)
    with gzip.open(corpus, "wt") as f:
        for _ in range(documents):
            f.write(" ".join(rng.choice(POS + NEG + FILLER) for _ in range(12)) + "\n\n")
    return corpus


def test_a_tapt_run_is_chosen_by_its_own_task_unless_told_otherwise(tiny_bert):
    """--task T probes T by default (its validation score picks the weights); --probe-task names another task,
    and `none` turns the probe off (perplexity chooses); a domain run alone has no task to probe."""
    def cfg(**cli):
        return build_adapt_config(None, {"model": str(tiny_bert), **cli})
    tapt = cfg(task="finance-sample")
    assert tapt.adapt.probe_task == "finance-sample" and tapt.train.metric == "probe_macro_f1"
    assert tapt.adapt.preserve == 1.0  # the default recipe keeps the embeddings near the original's
    assert cfg(task="finance-sample", adapt={"probe_task": "twitter-fin-sentiment"}).adapt.probe_task == (
        "twitter-fin-sentiment")
    off = cfg(task="finance-sample", adapt={"probe_task": "none"})
    assert off.adapt.probed is None and off.train.metric == "loss"
    saved = off.to_dict()  # what recipe.yaml holds: rebuilt from it, the run is the same (no probe)
    assert cfg(**{k: saved[k] for k in ("task", "adapt", "train")}).adapt.probed is None
    assert cfg(corpus=["x.txt"]).adapt.probe_task is None


def test_a_tapt_run_gets_the_measured_step_schedule_unless_told_otherwise(tiny_bert, tmp_path):
    """--task as the only text source runs recipes/adapt/task.yaml's schedule (the one experiments/adapt-levers
    measured); a domain or corpus keeps default.yaml's; a named length or flag wins over it."""
    def cfg(**cli):
        return build_adapt_config(None, {"model": str(tiny_bert), **cli})
    schedule = load_yaml(RECIPES_DIR / "adapt" / "task.yaml")
    tapt = cfg(task="finance-sample")
    assert (tapt.train.max_steps, tapt.train.eval_every, tapt.train.patience, tapt.adapt.head_warmup_steps) == (
        schedule["train"]["max_steps"], schedule["train"]["eval_every"], schedule["train"]["patience"],
        schedule["adapt"]["head_warmup_steps"])
    default = load_yaml(RECIPES_DIR / "adapt" / "default.yaml")
    for other in (cfg(task="finance-sample", domain="finance"), cfg(task="finance-sample", corpus=["x.txt"])):
        assert other.train.max_steps is None and other.train.eval_every == default["train"]["eval_every"]
        assert other.adapt.head_warmup_steps == default["adapt"]["head_warmup_steps"]
    assert tapt.adapt.max_heldout_tokens == schedule["adapt"]["max_heldout_tokens"]
    assert cfg(task="finance-sample", train={"eval_every": 10}).train.eval_every == 10
    for length in ({"train": {"epochs": 2}}, {"train": {"min_steps": 900}}, {"adapt": {"max_tokens": 5000}}):
        assert cfg(task="finance-sample", **length).train.max_steps is None, length  # the user's length rules
    assert cfg(task="finance-sample", adapt={"max_tokens": None}).train.max_steps == schedule["train"]["max_steps"]
    assert cfg(task="finance-sample", train={"max_steps": 30}).train.max_steps == 30
    saved = tapt.to_dict()  # a run's recipe.yaml, given back as --recipe: the same run
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(saved))
    assert build_adapt_config(str(recipe), {}).to_dict() == saved


def test_the_tapt_default_is_the_schedule_measured_on_twitter():
    """`adapt --task twitter-fin-sentiment` resolves to the recipe of the 600-step run experiments/adapt-levers
    measured (the start its low-label and full-data results come from), but for where it wrote and settings added
    since at their off values."""
    measured = load_yaml(ROOT / "experiments/adapt-levers/results/twitter-tapt-preserve1-600/recipe.yaml")
    now = build_adapt_config(None, {"task": "twitter-fin-sentiment"}).to_dict()
    for block in ("train", "adapt", "lora"):
        assert {k: now[block].get(k) for k in measured[block] if k != "report_to"} == {
            k: v for k, v in measured[block].items() if k != "report_to"}, block
    assert {k: now[k] for k in measured if k not in ("train", "adapt", "lora", "output")} == {
        k: v for k, v in measured.items() if k not in ("train", "adapt", "lora", "output")}


def test_adapt_probe_task_scores_validation_and_chooses_by_it(tiny_bert, tmp_path):
    """--probe-task: the task probe's validation score sits beside perplexity before, during and after, and
    picks the weights kept (train.metric defaults to probe_macro_f1), the starting encoder among them."""
    out = tmp_path / "out"
    cfg = config(tiny_bert, [corpus_file(tmp_path)], out, {"max_steps": 6, "eval_every": 2, "lr": 5e-3},
                 probe_task="finance-sample", probe_rows=100)
    assert cfg.train.metric == "probe_macro_f1"
    assert config(tiny_bert, [out], out, {"metric": "loss"}, probe_task="finance-sample").train.metric == "loss"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  metric: loss\n")  # set in a recipe file: the user's choice too
    assert build_adapt_config(str(recipe), {"model": str(tiny_bert), "corpus": [str(out)],
                                            "adapt": {"probe_task": "finance-sample"}}).train.metric == "loss"
    m = run_adapt(cfg, log=quiet)
    assert 0 <= m["heldout_before"]["probe_macro_f1"] <= 1 and "probe_macro_f1" in m["heldout_after"]
    history = [json.loads(line) for line in (out / "eval_log.jsonl").read_text().splitlines()]
    scores = {h["step"]: h["probe_macro_f1"] for h in history}
    assert len(scores) == 3 and scores[m["best_step"]] == max(scores.values())
    kept = m["heldout_before"]["probe_macro_f1"] if m["kept_start"] else scores[m["best_step"]]
    assert m["kept_start"] == (max(scores.values()) <= m["heldout_before"]["probe_macro_f1"])
    assert m["heldout_after"]["probe_macro_f1"] == pytest.approx(kept, abs=1e-6)


@pytest.mark.parametrize("trend,method", [("falling", "full"), ("rising", "full"), ("falling", "lora")])
def test_adapt_keeps_the_starting_encoder_unless_an_evaluation_beats_it(tiny_bert, tmp_path, monkeypatch, trend,
                                                                       method):
    """The guarantee behind "adapting never hurts the task": scores that only fall after the start give back the
    starting encoder, bit for bit; a score above the start keeps the adapted one."""
    import peftbert.commands.adapt as adapt_command

    calls = []

    class Scripted:  # the probe's scores, scripted: before, steps 2, 4, 6, then the kept weights once more
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, encoder):
            calls.append(1)
            step = len(calls) - 1
            return {"probe_macro_f1": 0.5 - 0.1 * step if trend == "falling" else 0.5 + 0.1 * min(step, 3)}

    monkeypatch.setattr(adapt_command, "TaskProbe", Scripted)
    out = tmp_path / "out"
    m = run_adapt(config(tiny_bert, [corpus_file(tmp_path)], out, {"max_steps": 6, "eval_every": 2, "lr": 5e-3},
                         probe_task="finance-sample", method=method), log=quiet)
    original, adapted = AutoModel.from_pretrained(str(tiny_bert)), AutoModel.from_pretrained(str(out))
    same = all(torch.equal(p, adapted.state_dict()[k]) for k, p in original.state_dict().items() if "pooler" not in k)
    assert m["kept_start"] == (trend == "falling") == same


def test_probe_metric_needs_a_probe_task(tiny_bert, tmp_path):
    with pytest.raises(UserError, match="--probe-task"):
        config(tiny_bert, [tmp_path / "x.txt"], tmp_path / "out", {"metric": "probe_macro_f1"})


def test_few_steps_get_a_note_and_the_low_label_recipe_by_name(tiny_bert, toy_files):
    from peftbert.commands.tune import few_steps, tune_config

    cfg = make_config(tiny_bert, toy_files, "full")  # 160 rows, batches of 16, 2 epochs: 20 steps
    assert "--recipe low-label" in few_steps(cfg, 160) and "--method probe" in few_steps(cfg, 160)
    assert few_steps(cfg, 2000) is None  # 250 steps
    low = tune_config("low-label", {"model": str(tiny_bert)})
    assert low.pooling == "mean" and low.train.min_steps == 200 and few_steps(low, 160) is None
    assert (low.train.head_init, low.train.keep, low.train.lr) == ("probe", "last", 3e-5)  # LP-FT, the last step
    assert low.train.contrastive == 1 and low.train.head_refit  # SetFit's two steps, in the loop


def test_a_small_training_set_gets_the_low_label_recipe_unless_the_user_chose(tiny_bert, toy_files, tmp_path):
    from peftbert.commands.tune import sized_tune_config

    data = {"train_file": str(toy_files["train"]), "validation_file": str(toy_files["validation"])}
    cfg, note = sized_tune_config(None, {"model": str(tiny_bert), "data": data})
    assert (cfg.method, cfg.train.head_init, cfg.train.min_steps) == ("full", "probe", 200)
    assert "160 training rows" in note and "--recipe default" in note
    floor = cfg.train.min_steps  # the low-label recipe's: the switch runs it where the default takes fewer steps
    for chosen in ({"method": "lora"}, {"lora": {"r": 4}}, {"train": {"epochs": 1}}, {"train": {"lr": 1e-3}}):
        cfg, note = sized_tune_config(None, {"model": str(tiny_bert), "data": data, **chosen})
        assert cfg.method == "lora" and cfg.train.head_init == "random" and note is None
    assert sized_tune_config("default", {"model": str(tiny_bert), "data": data})[0].method == "lora"
    warmer = {"model": str(tiny_bert), "data": data, "train": {"contrastive_temperature": 0.2}}
    assert sized_tune_config(None, warmer)[0].train.contrastive_temperature == 0.2  # used by the switched recipe
    with pytest.raises(UserError, match="has no contrastive loss"):  # the default, kept, would leave it unused
        sized_tune_config("default", warmer)
    with pytest.MonkeyPatch.context() as patch:  # a model whose head cannot read the mean: the default stands
        patch.setattr("peftbert.commands.tune.bert_style", lambda model: False)
        cfg_default = sized_tune_config(None, {"model": str(tiny_bert), "data": data})[0]
        assert cfg_default.method == "lora"
        with pytest.raises(UserError, match="has no contrastive loss"):  # no switch: the default leaves it unused
            sized_tune_config(None, warmer)
    steps = cfg_default.train.epochs / cfg_default.train.batch_size  # the default's steps per row (LoRA's preset)
    enough = floor / steps  # rows from which the default takes the low-label recipe's floor or more
    for rows, switched in ((int(enough - cfg_default.train.batch_size), True), (int(enough), False)):
        f = tmp_path / f"{rows}.csv"
        pd.concat([pd.read_csv(toy_files["train"])] * 10).head(rows).to_csv(f, index=False)
        low, note = sized_tune_config(None, {"model": str(tiny_bert), "data": {**data, "train_file": str(f)}})
        assert (low.method == "full") == switched and (note is not None) == switched, rows
    patient = {"model": str(tiny_bert), "data": {**data, "train_file": str(f)}, "train": {"patience": 3}}
    assert sized_tune_config(None, patient)[0].train.patience == 3  # kept default: the low-label recipe not built


def test_a_handful_of_rows_per_class_gets_the_probe_unless_the_user_chose(tiny_bert, toy_files, tmp_path):
    from typer.testing import CliRunner

    from peftbert.cli import app
    from peftbert.commands.tune import PROBE_PER_CLASS, sized_tune_config

    data = {"validation_file": str(toy_files["validation"])}
    for per_class, method in ((PROBE_PER_CLASS, "probe"), (PROBE_PER_CLASS + 1, "full")):
        f = tmp_path / f"{per_class}.csv"
        pd.read_csv(toy_files["train"]).head(2 * per_class).to_csv(f, index=False)  # two classes, alternating
        values = {"model": str(tiny_bert), "data": {**data, "train_file": str(f)}}
        cfg, note = sized_tune_config(None, values)
        assert cfg.method == method and note is not None, per_class
        assert (f"{per_class} per class: running --method probe" in note) == (method == "probe")
    small = {"model": str(tiny_bert), "data": {**data, "train_file": str(tmp_path / f"{PROBE_PER_CLASS}.csv")}}
    for named in ({"contrastive": 0.5}, {"contrastive_temperature": 0.2}, {"head_refit": True},
                  {"layer_lr_decay": 0.9}, {"weight_decay": 0.1}):  # read by training alone: the recipe, which trains
        assert sized_tune_config(None, {**small, "train": named})[0].method == "full", named
    assert sized_tune_config(None, {**small, "train": {"seed": 3, "precision": "no"}})[0].method == "probe"
    train = pd.read_csv(toy_files["train"])
    for more, method in ((0, "probe"), (2, "full")):  # 14 + 2 rows: 8 per class on average, as the switch counts;
        uneven = tmp_path / f"uneven{more}.csv"        # 16 + 2: 9 (the smaller class is 2 either way)
        pd.concat([train[train.label == "negative"].head(2 * PROBE_PER_CLASS - 2 + more),
                   train[train.label == "positive"].head(2)]).to_csv(uneven, index=False)
        uneven_values = {**small, "data": {**data, "train_file": str(uneven)}}
        assert sized_tune_config(None, uneven_values)[0].method == method, more
    assert sized_tune_config("low-label", small)[0].method == "full"
    assert sized_tune_config(None, {**small, "method": "lora"})[0].method == "lora"
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "--model", str(tiny_bert), "--train-file", small["data"]["train_file"],
                                      "--validation-file", data["validation_file"], "--output", str(out),
                                      "--max-length", "16", "--report-to", "none"])
    assert result.exit_code == 0, result.output
    assert f"note: {2 * PROBE_PER_CLASS} training rows, {PROBE_PER_CLASS} per class: running --method probe" in \
        result.output
    assert "method: probe" in (out / "recipe.yaml").read_text() and (out / "metrics.json").is_file()


def test_tune_says_when_it_runs_the_low_label_recipe(tiny_bert, toy_files, tmp_path):
    from typer.testing import CliRunner

    from peftbert.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["tune", "--model", str(tiny_bert), "--train-file", str(toy_files["train"]),
                                      "--validation-file", str(toy_files["validation"]), "--output", str(out),
                                      "--precision", "no", "--max-length", "16", "--report-to", "none"])
    assert result.exit_code == 0, result.output
    assert ("note: 160 training rows give the default recipe 50 optimizer steps, under the low-label recipe's 200"
            in result.output)
    recipe = (out / "recipe.yaml").read_text()
    assert "method: full" in recipe and "contrastive: 1.0" in recipe and "head_refit: true" in recipe
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 200 and metrics["head_refit_train_accuracy"] > 0.5


def test_probe_method_fits_the_head_alone_and_the_run_serves(tiny_bert, toy_files, tmp_path):
    from safetensors.torch import load_file

    cfg = make_config(tiny_bert, toy_files, "probe", tmp_path / "run", ["probe.c=10"])
    assert cfg.pooling == "mean"  # from the preset: the sentence embedding, not [CLS]
    m = run_tune(cfg, log=quiet)
    assert m["steps"] == 0 and m["trainable_params"] == 32 * 2 + 2  # the head's weight and bias, fitted
    assert m["validation"]["accuracy"] > 0.6
    base, tuned = load_file(tiny_bert / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    encoder = [k for k in tuned if k.startswith("bert.encoder.")]
    assert encoder and all(torch.equal(tuned[k], base[k]) for k in encoder)  # the encoder is as pretrained
    model, tokenizer, _ = load_run(tmp_path / "run")
    task = load_task(cfg.data, 0)
    x = torch.as_tensor(head_features(model, tokenizer, task.train, 16))
    assert torch.equal(model.classifier.weight, tuned["classifier.weight"]) and x.shape[1] == 32


def test_a_stronger_penalty_gives_a_softer_probe(tiny_bert, toy_files):
    cfg = make_config(tiny_bert, toy_files, "full")
    task = load_task(cfg.data, 0)
    tok = load_tokenizer(str(tiny_bert))
    norms = []
    for c in (0.01, 10):
        model = load_classifier(str(tiny_bert), task.id2label, "mean")
        probe_head(model, tok, task.train, 16, seed=0, c=c)
        norms.append(model.classifier.weight.norm().item())
    assert norms[0] < norms[1] / 10


def test_keep_last_ends_on_the_last_step_and_best_on_the_best(tiny_bert, toy_files, tmp_path):
    runs = {}
    for keep in ("best", "last"):
        cfg = make_config(tiny_bert, toy_files, "full", tmp_path / keep,
                          [f"train.keep={keep}", "train.max_steps=8", "train.eval_every=2", "train.lr=3e-3"])
        runs[keep] = run_tune(cfg, log=quiet)
        history = [json.loads(x) for x in (tmp_path / keep / "eval_log.jsonl").read_text().splitlines()]
        runs[keep]["history"] = history
    assert runs["last"]["best_step"] == 8
    best = max(runs["best"]["history"], key=lambda r: r["macro_f1"])  # the first of equals is kept
    assert runs["best"]["best_step"] == best["step"]
    assert runs["last"]["validation"]["macro_f1"] == pytest.approx(runs["last"]["history"][-1]["macro_f1"], abs=0.02)


def test_keep_last_refuses_patience():
    with pytest.raises(UserError, match="drop one of them"):
        TrainArgs(keep="last", patience=2)
    with pytest.raises(UserError, match="keep"):
        TrainArgs(keep="worst")
