"""Packed batches (data/packing.py) are the padded random batch without the padding: same outputs, same gradients."""

import pytest
import torch
from transformers import (AutoTokenizer, DataCollatorWithPadding, ElectraConfig, ElectraForSequenceClassification,
                          RobertaConfig, RobertaForSequenceClassification)

from peftbert.data.packing import PackedCollator, packed_forward, packing_problem
from peftbert.models import load_classifier

TEXTS = ["good", "bad bad bad", "good profit rises " * 3, "neutral", "loss " * 20, "good bad", "profit " * 9]


def features(tok, pairs=False):
    enc = [tok(t, t[::-1] if pairs else None) for t in TEXTS]
    return [{**{k: list(v) for k, v in e.items()}, "labels": i % 3} for i, e in enumerate(enc)]


def outputs_and_grads(model, forward, batch):
    model.zero_grad()
    out = forward(model, batch)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def check_same_as_padded(model, tok, feats, collator, train_mode=False):
    if not train_mode:
        model.eval()  # no dropout: the two layouts draw different masks
    packed = collator([dict(f) for f in feats])
    padded = DataCollatorWithPadding(tok)([dict(f) for f in feats])
    ref, ref_grads = outputs_and_grads(model, lambda m, b: m(**b), padded)
    out, grads = outputs_and_grads(model, packed_forward(model), packed)
    order = packed_order(packed, feats)  # packed rows hold the texts in an order of their own
    torch.testing.assert_close(out.logits, ref.logits[order], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-6, rtol=1e-5)
    assert grads.keys() == ref_grads.keys() and len(grads) >= 10
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-6, rtol=1e-4, msg=name)
    return packed


def packed_order(packed, feats):
    """Which feature each packed text is: read back from the first token's row and position."""
    width = packed["input_ids"].shape[1]
    order = []
    for flat in packed["first_token"].tolist():
        r, at = divmod(flat, width)
        n = int(packed["attention_mask"][r, 0, at].sum())
        ids = packed["input_ids"][r, at:at + n].tolist()
        order.append(next(i for i, f in enumerate(feats) if f["input_ids"] == ids and i not in order))
    return order


@pytest.mark.parametrize("pairs", [False, True])
def test_packed_bert_matches_the_padded_batch(tiny_bert, pairs):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = load_classifier(str(tiny_bert), {0: "a", 1: "b", 2: "c"})
    assert packing_problem(model) is None
    feats = features(tok, pairs)
    packed = check_same_as_padded(model, tok, feats, PackedCollator(tok.pad_token_id, row_tokens=24))
    assert packed["input_ids"].shape[0] < len(feats)  # several texts share a row
    if pairs:
        assert packed["token_type_ids"].sum() == sum(sum(f["token_type_ids"]) for f in feats)


def test_packed_roberta_counts_positions_from_the_padding_index(tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=80, num_labels=3, pad_token_id=0,
                           type_vocab_size=1)
    model = RobertaForSequenceClassification(config)
    feats = [{k: v for k, v in f.items() if k != "token_type_ids"} for f in features(tok)]
    collator = PackedCollator.for_model(model, tok.pad_token_id)
    assert collator.start == 1
    check_same_as_padded(model, tok, feats, collator)


def test_packed_electra_matches_the_padded_batch(tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=len(tok), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=80, num_labels=3)
    model = ElectraForSequenceClassification(config)
    assert packing_problem(model) is None
    check_same_as_padded(model, tok, features(tok, pairs=True), PackedCollator.for_model(model, tok.pad_token_id))


def test_packed_lora_model_matches_the_padded_batch(tiny_bert):
    """Through peft's wrappers (LoRA layers, the head as modules_to_save), gradients reach the same adapter weights."""
    from peft import LoraConfig, get_peft_model

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = get_peft_model(load_classifier(str(tiny_bert), {0: "a", 1: "b", 2: "c"}),
                           LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"], init_lora_weights=False))
    assert packing_problem(model) is None
    check_same_as_padded(model, tok, features(tok), PackedCollator.for_model(model, tok.pad_token_id))


def test_packed_training_attention_masks_like_the_padded_batch(tiny_bert, monkeypatch):
    """While training on CPU the loop swaps in fast_dropout's eager attention; with its dropout made the identity,
    packed rows through that attention (4-D boolean mask) give the padded batch's outputs and gradients."""
    from peftbert import fast_dropout

    monkeypatch.setattr(fast_dropout, "fast_dropout", lambda x, p: x)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = load_classifier(str(tiny_bert), {0: "a", 1: "b", 2: "c"})
    used = []
    real = fast_dropout.attention
    monkeypatch.setattr(fast_dropout, "attention", lambda *a, **kw: used.append(kw.get("dropout")) or real(*a, **kw))
    with fast_dropout.cpu_fast_dropout(model):
        model.train()
        check_same_as_padded(model, tok, features(tok), PackedCollator(tok.pad_token_id, row_tokens=24),
                             train_mode=True)
    assert used and all(d > 0 for d in used)  # the eager path ran, not SDPA


def test_rows_hold_whole_texts_that_see_only_themselves(tiny_bert):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    feats = features(tok)
    packed = PackedCollator(tok.pad_token_id, row_tokens=16)(feats)
    lengths = [len(f["input_ids"]) for f in feats]
    assert sorted(packed_order(packed, feats)) == list(range(len(feats)))
    assert packed["input_ids"].shape[1] == max(16, *lengths)  # only a longer text widens a row
    mask = packed["attention_mask"][:, 0]
    assert packed["attention_mask"].dtype == torch.bool and mask.any(-1).all()  # every slot attends somewhere
    real = (packed["input_ids"] != tok.pad_token_id) | (packed["position_ids"] > 0)
    assert int(real.sum()) == sum(lengths)
    # a text's tokens attend to exactly its own tokens, and its positions count 0, 1, 2, ...
    width = packed["input_ids"].shape[1]
    for flat, f in zip(packed["first_token"].tolist(), [feats[i] for i in packed_order(packed, feats)]):
        r, at = divmod(flat, width)
        n = len(f["input_ids"])
        assert packed["position_ids"][r, at:at + n].tolist() == list(range(n))
        assert mask[r, at].nonzero().squeeze(1).tolist() == list(range(at, at + n))
        assert packed["labels"].tolist()[packed["first_token"].tolist().index(flat)] == f["labels"]


def test_prompt_methods_and_eager_attention_are_not_packed(tiny_bert):
    from peft import PrefixTuningConfig, get_peft_model

    model = load_classifier(str(tiny_bert), {0: "a", 1: "b"})
    prefix = get_peft_model(model, PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    assert "virtual tokens" in packing_problem(prefix)
    eager = load_classifier(str(tiny_bert), {0: "a", 1: "b"})
    eager.set_attn_implementation("eager")
    assert "SDPA" in packing_problem(eager)
