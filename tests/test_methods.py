"""Every registered method: analytic parameter count, its own parameters learn, save -> load -> identical
logits, learns the toy task; then method specifics (AdaLoRA's schedule and regulariser, budgets)."""

import dataclasses
import json
import random
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

from conftest import FILLER, NEG, POS, toy_rows
from helpers import make_config
from peftbert.errors import UserError
from peftbert.methods import METHODS, Context, get_method
from peftbert.methods.budget import KNOBS, parse_budget, size_for_budget
from peftbert.models import ARCHS, arch_of, count_params, head_modules, load_classifier
from peftbert.predict import load_run
from peftbert.commands.tune import run_tune

H, L, FF, LABELS = 32, 2, 64, 2  # the tiny BERT of conftest


@pytest.fixture(scope="module")
def word_aware_bert(tiny_bert, tmp_path_factory):
    """conftest's tiny BERT after a short full fine-tune to name a sentence's keyword (16-way), head dropped.

    The random tiny BERT's [CLS] hardly depends on the input (its spread across sentences is ~0.3% of its
    size), so methods that only nudge a frozen encoder (BitFit, (IA)^3, prefixes, adapters) cannot learn
    anything from it, at any lr. This stands in for a pretrained encoder: it knows which word a sentence
    has, never that word's polarity, which the methods below must learn.
    """
    rng, keywords, texts, labels = random.Random(7), POS + NEG, [], []
    for i in range(320):
        words = rng.sample(FILLER, 4) + [keywords[i % 16]]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 16)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    enc, y = tok(texts, padding=True, return_tensors="pt"), torch.tensor(labels)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        for idx in torch.randperm(len(y)).split(16):
            model(**{k: v[idx] for k, v in enc.items()}, labels=y[idx]).loss.backward()
            opt.step()
            opt.zero_grad()
    path = tmp_path_factory.mktemp("word-aware-bert")
    model.bert.save_pretrained(path)  # encoder and pooler; the 16-way head is dropped
    tok.save_pretrained(path)
    return path


def analytic_trainable(method: str, cfg, vocab: int) -> int:
    # the tiny BERT was saved as an MLM: its pooler is new, so it trains (and is saved) with the head
    head = H * LABELS + LABELS + H * H + H
    all_linear = [(H, H)] * 4 + [(H, FF), (FF, H)]  # (in, out): q, k, v, attention output, FFN in, FFN out
    if method == "full":
        emb = (vocab + 64 + 2) * H + 2 * H
        layer = 4 * (H * H + H) + 2 * H + (H * FF + FF) + (FF * H + H) + 2 * H
        return emb + L * layer + head
    targets = all_linear if getattr(cfg, "target_modules", None) == "all-linear" else [(H, H)] * 2  # or q and v
    if method in ("lora", "dora", "rslora", "lora-all"):
        per_target = [cfg.r * (i + o) + (o if cfg.use_dora else 0) for i, o in targets]  # A: r x in, B: out x r
        return L * sum(per_target) + head  # (DoRA adds a magnitude per output)
    if method == "adalora":  # P (r x in), Q (out x r) and r singular values, at init_r, per matrix
        return L * sum(cfg.init_rank * (i + o + 1) for i, o in targets) + head
    if method == "adapter":
        m = cfg.bottleneck or round(H / cfg.reduction_factor)
        adapters = 2 if cfg.placement == "houlsby" else 1
        per_adapter = (H * m + m) + (m * H + H)  # down and up projections with biases
        layernorms = 2 * 2 * H if cfg.train_layernorm else 0
        return L * (adapters * per_adapter + layernorms) + head
    if method == "bitfit":  # per layer: q, k, v, attention out, FFN out (H each), FFN in (FF), 2 LayerNorms (H each)
        layernorms = H + L * 2 * H  # the embeddings' and the layers' LayerNorm biases
        return L * (5 * H + FF) + (layernorms if cfg.layernorm else 0) + head
    if method == "ia3":  # key and value outputs (H each), the FFN output layer's input (FF)
        return L * (2 * H + (FF if cfg.target_modules == "kv+ffn" else 0)) + head
    if method == "prefix":  # a key and a value vector per virtual token per layer
        n, table = cfg.num_virtual_tokens, L * 2 * H
        if cfg.prefix_projection:  # token embeddings, then an MLP H -> E -> table (E = H by default)
            e = cfg.encoder_hidden_size or H
            return n * H + (H * e + e) + (e * table + table) + head
        return n * table + head
    if method == "probe":  # the output layer alone, fitted by a logistic regression
        return H * LABELS + LABELS
    raise AssertionError(f"add the formula for {method}")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trainable_params_match_formula(tiny_bert, method):
    cfg = make_config(tiny_bert, {"train": "x", "validation": "x", "test": "x"}, method=method)
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    vocab = model.config.vocab_size
    head = head_modules(model, ARCHS["bert"])
    assert head == ("classifier", "bert.pooler.dense")
    model = get_method(method).apply(model, cfg.method_args, Context(ARCHS["bert"], 10, 2, head))
    counts = count_params(model, head)
    assert counts["trainable_params"] == analytic_trainable(method, cfg.method_args, vocab)
    head_params = H * LABELS + LABELS + (0 if method == "probe" else H * H + H)  # probe: the new pooler unread
    assert counts["trainable_params"] - counts["trainable_params_no_head"] == head_params


VARIANTS = [("adapter", ["adapter.placement=pfeiffer", "adapter.bottleneck=4"]),
            ("adapter", ["adapter.train_layernorm=false", "adapter.reduction_factor=4"]),
            ("adalora", ["adalora.target_r=4", "adalora.target_modules=qv"]),
            ("bitfit", ["bitfit.layernorm=true"]), ("ia3", ["ia3.target_modules=kv"]),
            ("prefix", ["prefix.num_virtual_tokens=5", "prefix.prefix_projection=true"]),
            ("lora", ["lora.use_dora=true", "lora.target_modules=all-linear", "lora.r=2"])]


@pytest.mark.parametrize("method,sets", VARIANTS)
def test_trainable_params_of_variants_match_formula(tiny_bert, method, sets):
    cfg = make_config(tiny_bert, {"train": "x", "validation": "x", "test": "x"}, method=method, sets=sets)
    model = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    vocab, head = model.config.vocab_size, head_modules(model, ARCHS["bert"])
    model = get_method(method).apply(model, cfg.method_args, Context(ARCHS["bert"], 10, 2, head))
    assert count_params(model, head)["trainable_params"] == analytic_trainable(method, cfg.method_args, vocab)


# lr for training only a method's own parameters (the head frozen): 3e-2, but these two diverge at it
OWN_LR = {"full": 1e-3, "lora-all": 1e-2}


@pytest.mark.parametrize("method", sorted(m for m in METHODS if not METHODS[m].fit_head))  # probe: the head only
def test_own_parameters_learn(word_aware_bert, method):
    """With the head frozen at its random init, the method's parameters alone must lower the loss and beat
    chance: the end-to-end test below could pass on the head alone."""
    df = toy_rows(160, 0)
    tok = AutoTokenizer.from_pretrained(str(word_aware_bert))
    enc = tok(list(df.text), padding=True, return_tensors="pt")
    y = torch.tensor((df.label == "positive").to_numpy().astype(int))
    torch.manual_seed(0)
    model = load_classifier(str(word_aware_bert), {0: "negative", 1: "positive"})
    arch = arch_of(model.config)
    head = head_modules(model, arch)
    m = get_method(method)
    model = m.apply(model, m.config_cls(), Context(arch, 40, 2, head))
    in_head = lambda n: any(f".{h}." in f".{n}" for h in head)  # noqa: E731
    own = [p for n, p in model.named_parameters() if p.requires_grad and not in_head(n)]
    assert own, "the method trains nothing but the head"
    for n, p in model.named_parameters():
        p.requires_grad = p.requires_grad and not in_head(n)
    opt = torch.optim.Adam(own, lr=OWN_LR.get(method, 3e-2))
    model.eval()  # no dropout: a clean, deterministic loss curve (gradients still flow)
    losses = []
    for step in range(1, 41):
        loss = model(**enc, labels=y).loss
        loss.backward()
        opt.step()
        if m.on_optimizer_step:
            m.on_optimizer_step(model, step)
        opt.zero_grad()
        losses.append(loss.item())
    with torch.no_grad():
        accuracy = (model(**enc).logits.argmax(-1) == y).float().mean().item()
    assert losses[-1] < losses[0] - 0.01, losses
    assert accuracy > 0.6, accuracy  # on the 160 training sentences; chance is 0.5


# lr and epochs that learn the toy task (chance is 0.5)
TRAIN = {"full": ("1e-3", 8), "rslora": ("5e-3", 15)}  # rslora: every linear layer at scale 4 diverges at 2e-2


@pytest.mark.parametrize("method", sorted(METHODS))
def test_trains_saves_and_reloads_identically(word_aware_bert, toy_files, tmp_path, method):
    lr, epochs = TRAIN.get(method, ("2e-2", 15))
    cfg = make_config(word_aware_bert, toy_files, method=method, output=tmp_path / "run",
                      sets=[f"train.lr={lr}", f"train.epochs={epochs}"])
    metrics = run_tune(cfg, log=lambda *a: None)
    assert metrics["test"]["accuracy"] > 0.75, metrics["test"]  # chance is 0.5
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("method", "model", "task", "seed", "trainable_params", "total_params", "train_seconds",
                "train_samples_per_second", "peak_memory_mb", "versions"):
        assert key in saved
    for split in ("validation", "test"):
        assert {"accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(saved[split])
    if method == "adalora":  # its summary: the rank pattern the saved adapter keeps
        assert saved["adalora"]["final_total_rank"] == saved["adalora"]["target_total_rank"]

    model, tok, _ = load_run(tmp_path / "run")
    model2, _, _ = load_run(tmp_path / "run")
    enc = tok(["the company profit surge", "shares slump on debt"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a, b = model(**enc).logits, model2(**enc).logits
    assert torch.equal(a, b)
    # the reloaded model scores the test set exactly as the trained one did
    from peftbert.predict import run_predict
    scored = run_predict(tmp_path / "run", file=str(toy_files["test"]), output=str(tmp_path / "p.jsonl"))
    assert scored["accuracy"] == pytest.approx(saved["test"]["accuracy"])


def test_lora_artefacts_load_with_plain_peft(tiny_bert, toy_files, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    cfg = make_config(tiny_bert, toy_files, method="lora", output=tmp_path / "run", sets=["train.epochs=1"])
    run_tune(cfg, log=lambda *a: None)
    assert (tmp_path / "run" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    plain = PeftModel.from_pretrained(base, str(tmp_path / "run")).eval()
    ours, tok, _ = load_run(tmp_path / "run")
    enc = tok(["market gain"], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(plain(**enc).logits, ours(**enc).logits)


# ---------------------------------------------------------------- AdaLoRA
def _tiny_batch(path):
    df = toy_rows(32, 3)
    enc = AutoTokenizer.from_pretrained(str(path))(list(df.text), padding=True, return_tensors="pt")
    return enc, torch.tensor((df.label == "positive").to_numpy().astype(int))


def _adalora(path, steps, **over):
    torch.manual_seed(0)
    model = load_classifier(str(path), {0: "negative", 1: "positive"})
    head = head_modules(model, ARCHS["bert"])
    cfg = dataclasses.replace(get_method("adalora").config_cls(), **over)
    return get_method("adalora").apply(model, cfg, Context(ARCHS["bert"], steps, 2, head)), cfg


def test_adalora_loss_carries_the_orthogonal_regulariser(tiny_bert):
    """peft's AdaLoraModel.forward adds gamma x mean ||P P^T - I||_F, ||Q^T Q - I||_F when labels are given."""
    model, cfg = _adalora(tiny_bert, 10, orth_reg_weight=0.1)
    enc, y = _tiny_batch(tiny_bert)
    model.eval()
    out = model(**enc, labels=y)
    penalties = [torch.linalg.norm((p @ p.T if ".lora_A." in n else p.T @ p) - torch.eye(p.shape[0] if ".lora_A." in n
                                                                                       else p.shape[1]))
                 for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n]
    penalty = torch.stack(penalties).mean()
    assert penalty > 0.1  # random P, zero Q: far from orthogonal at the start
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    assert out.loss.item() == pytest.approx((ce + cfg.orth_reg_weight * penalty).item(), rel=1e-5)


def test_adalora_prunes_to_the_budget_and_reloads(tiny_bert, tmp_path):
    from peft import PeftModel

    steps = 30  # tinit 3, ranks pruned every 2 steps until step 21, then fixed for the last 9
    model, cfg = _adalora(tiny_bert, steps, target_r=2, deltaT=2)
    m = get_method("adalora")
    enc, y = _tiny_batch(tiny_bert)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(1, steps + 1):
        model(**enc, labels=y).loss.backward()
        opt.step()
        m.on_optimizer_step(model, step)
        opt.zero_grad()
    info = m.summary(model)["adalora"]
    # a run resumed inside the final phase has no pattern in memory: it is read back from the zeros
    pattern = model.peft_config["default"].rank_pattern
    model.peft_config["default"].rank_pattern = None
    model(**enc, labels=y).loss.backward()
    m.on_optimizer_step(model, steps)
    opt.zero_grad()
    assert model.peft_config["default"].rank_pattern == pattern
    n = len(info["final_ranks"])
    assert n == L * 6 and info["init_r"] == 3 and info["initial_ranks"] == {k: 3 for k in info["final_ranks"]}
    assert info["final_total_rank"] == info["target_total_rank"] == 2 * n  # pruned to the budget ...
    assert len(set(info["final_ranks"].values())) > 1  # ... unevenly: the point of AdaLoRA
    # in + out + 1 per triplet: H x H in attention, H x FF (or FF x H) in the feed-forward block
    cost = {k: 2 * H + 1 if ".attention." in k else H + FF + 1 for k in info["final_ranks"]}
    assert info["initial_params"] == 3 * sum(cost.values())
    assert info["final_params"] == sum(r * cost[k] for k, r in info["final_ranks"].items())
    json.dumps(info)  # goes into metrics.json

    # pruned singular values regrow between reallocations; evaluation must still see what gets saved
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_E." in name:
                p.add_(0.5)
    model.eval()
    with torch.no_grad():
        ours = model(**enc).logits
    model.save_pretrained(tmp_path / "ada")
    base = load_classifier(str(tiny_bert), {0: "negative", 1: "positive"})
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "ada")).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**enc).logits, ours, atol=1e-6)
    assert m.summary(reloaded)["adalora"]["final_ranks"] == info["final_ranks"]


def test_adalora_config_is_validated():
    cls = get_method("adalora").config_cls
    assert cls(target_r=8).init_rank == 12 and cls(target_r=1).init_rank == 2
    for bad in ({"target_r": 8, "init_r": 8}, {"tinit_frac": 0.6, "tfinal_frac": 0.4}, {"deltaT": 0}, {"beta1": 1.0}):
        with pytest.raises(UserError):
            cls(**bad)


# ---------------------------------------------------------------- other method specifics
def test_prefix_refuses_encoders_without_past_key_values():
    from transformers import AutoModelForSequenceClassification, DistilBertConfig

    config = DistilBertConfig(vocab_size=40, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=32)
    model = AutoModelForSequenceClassification.from_config(config)
    with pytest.raises(UserError, match="past key/values"):
        get_method("prefix").apply(model, get_method("prefix").config_cls(), Context(arch_of(config), 10, 2))


BAD = [("adapter", {"placement": "parallel"}), ("adapter", {"bottleneck": 0}), ("adapter", {"non_linearity": "nope"}),
       ("prefix", {"num_virtual_tokens": 0}), ("ia3", {"feedforward_modules": ["output.dense"]})]


@pytest.mark.parametrize("method,values", BAD)
def test_bad_settings_are_user_errors(method, values):
    with pytest.raises(UserError):
        get_method(method).config_cls(**values)


def test_lora_variants_are_lora_with_other_defaults():
    lora = get_method("lora").config_cls()
    assert get_method("dora").config_cls().use_dora and not lora.use_dora
    assert get_method("rslora").config_cls().use_rslora and not lora.use_rslora
    assert get_method("lora-all").config_cls().target_modules == "all-linear"


# ---------------------------------------------------------------- budgets
@pytest.mark.parametrize("text,value", [("0.3M", 300_000), ("150k", 150_000), ("1.2e6", 1_200_000),
                                        ("1_000_000", 1_000_000), (2500, 2500), (" 2.5K ", 2500)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0.3X", "-5", "0"])
def test_parse_budget_rejects(text):
    with pytest.raises(UserError):
        parse_budget(text)


@pytest.mark.parametrize("method", sorted(KNOBS))
@pytest.mark.parametrize("budget", [1000, 3000, 20000])
def test_size_for_budget_picks_the_closest_size(tiny_bert, method, budget):
    """The chosen size is the one whose analytic count (head excluded) is closest to the budget."""
    config = AutoConfig.from_pretrained(str(tiny_bert))
    cls = get_method(method).config_cls
    head = H * LABELS + LABELS + H * H + H
    over = size_for_budget(method, budget, config, ARCHS["bert"])
    knob = KNOBS[method]
    size = over[knob]

    def cost(s):  # AdaLoRA is sized by its final budget: target_r triplets, i.e. the formula at init_r = target_r
        args = SimpleNamespace(init_rank=s, target_modules="all-linear") if method == "adalora" \
            else dataclasses.replace(cls(), **{knob: s})
        return analytic_trainable(method, args, 0) - head

    assert all(abs(cost(size) - budget) <= abs(cost(s) - budget) for s in (size - 1, size + 1) if s >= 1)
    if method == "adalora":
        assert over["init_r"] > size


def test_size_for_budget_is_exact_on_the_lora_grid(tiny_bert):
    config = AutoConfig.from_pretrained(str(tiny_bert))
    assert size_for_budget("lora", 1024, config, ARCHS["bert"]) == {"r": 4}  # 4 x (2 layers x 2 x (32 + 32))
    per_rank = L * (4 * (H + H + 1) + 2 * (H + FF + 1))  # one triplet on each of the 6 matrices of both layers
    assert size_for_budget("adalora", 2 * per_rank, config, ARCHS["bert"]) == {"target_r": 2, "init_r": 3}


def test_apply_budget_resizes_a_run_config(tiny_bert):
    from peftbert.methods.budget import apply_budget

    files = {"train": "x", "validation": "x", "test": "x"}
    cfg = apply_budget(make_config(tiny_bert, files, method="adapter", sets=["adapter.placement=pfeiffer"]), "1.5k")
    assert cfg.method_args.bottleneck == 9 and cfg.method_args.placement == "pfeiffer"  # 2 x (9 x 65 + 32 + 128)
    cfg = apply_budget(make_config(tiny_bert, files, method="adalora"), "2k")
    assert (cfg.method_args.target_r, cfg.method_args.init_r) == (2, 3)


def test_size_for_budget_refuses(tiny_bert):
    config = AutoConfig.from_pretrained(str(tiny_bert))
    with pytest.raises(UserError, match="no size"):
        size_for_budget("bitfit", 1000, config, ARCHS["bert"])
    with pytest.raises(UserError, match="below the smallest"):
        size_for_budget("adapter", 10, config, ARCHS["bert"])  # the LayerNorms alone are 256


@pytest.mark.parametrize("kind", ["distilbert", "deberta-v2"])
def test_ia3_finds_keys_values_and_ffn_output_on_other_layouts(kind):
    from transformers import AutoModelForSequenceClassification, DebertaV2Config, DistilBertConfig

    config = DistilBertConfig(vocab_size=40, dim=H, n_layers=L, n_heads=2, hidden_dim=FF) if kind == "distilbert" \
        else DebertaV2Config(vocab_size=40, hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                             intermediate_size=FF, relative_attention=True, pos_att_type=["c2p", "p2c"])
    model = AutoModelForSequenceClassification.from_config(config)
    arch = arch_of(config)
    model = get_method("ia3").apply(model, get_method("ia3").config_cls(), Context(arch, 10, 2, arch.head))
    assert count_params(model, arch.head)["trainable_params_no_head"] == L * (2 * H + FF)
