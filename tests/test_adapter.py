"""Bottleneck adapters as a PEFT method, on every supported layout: placement, near-identity start,
parameter count, training moves them, and save -> PeftModel.from_pretrained -> identical logits."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import (AutoModelForSequenceClassification, BertConfig, DebertaV2Config, DistilBertConfig,
                          ElectraConfig, RobertaConfig)

from peftbert.methods import Context, get_method
from peftbert.methods.bottleneck import BottleneckConfig, BottleneckLayer
from peftbert.models import arch_of, count_params, head_modules, load_classifier

H, L, FF, V = 32, 2, 64, 60
SIZES = dict(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2, intermediate_size=FF,
             max_position_embeddings=64)
CONFIGS = {
    "bert": lambda: BertConfig(**SIZES),
    "roberta": lambda: RobertaConfig(**SIZES, pad_token_id=1),
    "electra": lambda: ElectraConfig(**SIZES, embedding_size=H),
    "deberta-v2": lambda: DebertaV2Config(**SIZES, relative_attention=True, pos_att_type=["c2p", "p2c"]),
    "distilbert": lambda: DistilBertConfig(vocab_size=V, dim=H, n_layers=L, n_heads=2, hidden_dim=FF,
                                           max_position_embeddings=64),
}
# where the adapters must sit: (attention output projection, FFN output projection) per layer
SITES = {"distilbert": ("attention.out_lin", "ffn.lin2")}
BERT_SITES = ("attention.output.dense", "output.dense")


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def base(request, tmp_path_factory):
    """A tiny random classifier of one architecture, saved so it can be reloaded bit for bit."""
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(CONFIGS[request.param]())  # 2 labels by default
    path = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(path)
    return request.param, path


def load(path):
    return load_classifier(str(path), {0: "negative", 1: "positive"}).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def adapt(model, **settings):
    m = get_method("adapter")
    arch = arch_of(model.config)
    return m.apply(model, m.config_cls(**settings), Context(arch, 10, 2, head_modules(model, arch)))


def head_size(model):
    head = head_modules(model, arch_of(model.config))
    return sum(p.numel() for n, p in model.named_parameters() if any(f".{h}." in f".{n}" for h in head))


def test_houlsby_adapters_sit_after_both_output_projections(base):
    kind, path = base
    model = load(path)
    with torch.no_grad():
        before = model(**inputs()).logits
    n_head = head_size(model)
    peft_model = adapt(model, bottleneck=4).eval()

    sites = sorted(n for n, m in peft_model.named_modules() if isinstance(m, BottleneckLayer))
    attn, ffn = SITES.get(kind, BERT_SITES)
    assert len(sites) == 2 * L
    for i in range(L):
        layer = [s for s in sites if f".layer.{i}." in s]
        assert sorted(s.split(f".layer.{i}.")[1] for s in layer) == sorted([attn, ffn])

    with torch.no_grad():  # the up-projection starts at zero: exactly the pretrained function
        assert torch.equal(peft_model(**inputs()).logits, before)
    per_adapter = (H * 4 + 4) + (4 * H + H)
    layernorms = 2 * 2 * H  # weight and bias of the two LayerNorms of each layer
    assert count_params(peft_model)["trainable_params"] == L * (2 * per_adapter + layernorms) + n_head


def test_pfeiffer_is_ffn_only_and_layernorms_are_optional(base):
    kind, path = base
    model = load(path)
    n_head = head_size(model)
    peft_model = adapt(model, bottleneck=4, placement="pfeiffer", train_layernorm=False)
    sites = [n for n, m in peft_model.named_modules() if isinstance(m, BottleneckLayer)]
    assert len(sites) == L and all(s.endswith(SITES.get(kind, BERT_SITES)[1]) for s in sites)
    assert count_params(peft_model)["trainable_params"] == L * ((H * 4 + 4) + (4 * H + H)) + n_head


def test_trains_saves_and_reloads_identically(base, tmp_path):
    from peft import PeftModel

    kind, path = base
    peft_model = adapt(load(path), bottleneck=4)
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(3):
        peft_model(**inputs(), labels=torch.tensor([0, 1, 1])).loss.backward()
        opt.step()
        opt.zero_grad()
    moved = {n for n, p in peft_model.named_parameters() if p.requires_grad and not torch.equal(p, trainable[n])}
    assert any("bottleneck_up" in n for n in moved) and any("bottleneck_down" in n for n in moved)

    peft_model.eval()
    with torch.no_grad():
        trained = peft_model(**inputs()).logits
    peft_model.save_pretrained(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PEFTBERT_BOTTLENECK" and config["bottleneck"] == 4
    saved = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert any("bottleneck_down" in k for k in saved) and any("classifier" in k for k in saved)
    assert sum(v.numel() for v in saved.values()) == count_params(peft_model)["trainable_params"]  # nothing else

    reloaded = PeftModel.from_pretrained(load(path), str(tmp_path / "run")).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs()).logits, trained)


def test_plain_peft_api_and_no_merging(base):
    """After `import peftbert.methods` the config works with peft's own get_peft_model; merging is refused."""
    from peft import get_peft_model

    kind, path = base
    if kind != "bert":
        pytest.skip("API check: one layout is enough")
    model = load(path)
    with torch.no_grad():
        before = model(**inputs()).logits
    config = BottleneckConfig(task_type="SEQ_CLS", target_modules=["output.dense"], bottleneck=8)
    peft_model = get_peft_model(model, config)
    assert sum(isinstance(m, BottleneckLayer) for m in peft_model.modules()) == 2 * L  # both output.dense suffixes
    with pytest.raises(ValueError, match="cannot be merged"):
        peft_model.merge_and_unload()
    with torch.no_grad():
        assert torch.equal(peft_model.unload().eval()(**inputs()).logits, before)


PLAIN_PEFT_LOAD = """
import sys
from peft import PeftConfig
try:
    PeftConfig.from_pretrained(sys.argv[1])
except Exception as e:
    print(type(e).__name__, e)
"""

CLASH = """
import peft.mapping
from peft.utils import PeftType
import peftbert.methods.bottleneck as b  # registers, then: pretend peft's own method took the name
peft.mapping.PEFT_TYPE_TO_TUNER_MAPPING[b.BOTTLENECK] = type("TheirModel", (), {})
import importlib
try:
    importlib.reload(b)
except ImportError as e:
    print(e)
"""


def test_plain_peft_names_peftbert_and_a_name_clash_is_an_error(base, tmp_path):
    import subprocess
    import sys

    kind, path = base
    if kind != "bert":
        pytest.skip("one layout is enough")
    adapt(load(path), bottleneck=4).save_pretrained(tmp_path / "run")
    r = subprocess.run([sys.executable, "-c", PLAIN_PEFT_LOAD, str(tmp_path / "run")], capture_output=True,
                       text=True, timeout=120)
    assert "PEFTBERT_BOTTLENECK" in r.stdout, r.stdout + r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-c", CLASH], capture_output=True, text=True, timeout=120)
    assert "already has a method named 'peftbert_bottleneck'" in r.stdout and "would clash" in r.stdout, \
        r.stdout + r.stderr[-2000:]
