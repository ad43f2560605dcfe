"""`peftbert export --format onnx`: a run as an ONNX graph for ONNX Runtime, checked against PyTorch.

The graph comes from torch's dynamo exporter (`torch.onnx.export(dynamo=True)`), batch and sequence length
dynamic. Measured once by hand on the embedded MiniLM (3 texts of different lengths, padded): logits within
3e-8 of PyTorch, against 3e-2 for the older TorchScript exporter (`dynamo=False`); experiments/export-check shows
~1e-6 on tuned runs. optimum's exporter is not used: optimum-onnx 0.1
requires transformers < 4.58 (installing it downgraded transformers 5 here). The directory holds
model.onnx (and model_quantized.onnx with --int8), config.json with the label names and the tokenizer:
the layout optimum's ORTModelForSequenceClassification reads.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from pathlib import Path

import torch

from .errors import UserError
from .onnx_runtime import OnnxClassifier, check_onnx_installed
from .scoring import predict_proba

PARITY_ATOL = 1e-4  # largest |logit difference| to PyTorch an export may have
# texts of very different lengths, so the check pads: padding is where exporters go wrong
PROBE_TEXTS = ["Shares rose.", "The central bank kept rates unchanged and signalled patience on further moves, "
               "citing moderating inflation and a cooling labour market.", "Revenue missed estimates by 4%.",
               "ok"]


class LogitsOnly(torch.nn.Module):
    """The classifier with positional inputs and one output, as the exporter wants it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def input_names(tokenizer) -> list[str]:
    return [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]


@contextlib.contextmanager
def quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_onnx(model, tokenizer, path: Path) -> None:
    names = input_names(tokenizer)
    enc = tokenizer(PROBE_TEXTS[:2], padding=True, return_tensors="pt")  # batch 2: the batch dim stays dynamic
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        # the exporter prints progress and warns about internals; the user gets our one line instead
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(LogitsOnly(model), tuple(enc[n] for n in names), str(path), input_names=names,
                              output_names=["logits"], dynamic_shapes={n: {0: batch, 1: seq} for n in names},
                              dynamo=True, external_data=False)
    except Exception as e:  # the exporter raises many kinds; the first line names the unsupported operation
        raise UserError(f"ONNX export failed: {str(e).strip().splitlines()[0][:200]} "
                        "(export --format hf and convert that, or report the model type)") from None


def quantize(src: Path, dst: Path) -> None:
    """ONNX Runtime's dynamic int8 quantisation: int8 weights, activations quantised per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), quiet(""):  # it logs to the root
        warnings.simplefilter("ignore")
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def parity(model, onnx_model, tokenizer) -> float:
    enc = tokenizer(PROBE_TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        ref = model(**enc).logits.float()
    return (onnx_model(**enc).logits - ref).abs().max().item()


def compare_on_file(engines: dict, tokenizer, file: str, info: dict, log) -> dict:
    """Accuracy and texts/s of each engine on a labelled file with the run's columns; the first engine is the
    reference. Each engine classifies a few texts first, so none pays another's start-up costs."""
    from .data.frames import map_labels, pick_column
    from .data.readers import read_table

    data = info.get("data") or {}
    df = read_table(file)
    text = pick_column(df, data.get("text_column"), ("text", "sentence", "sentence1"), "text", file)
    label = pick_column(df, data.get("label_column"), ("label",), "label", file)
    pair_col = data.get("text_pair_column")
    if pair_col and pair_col not in df.columns:
        raise UserError(f"column {pair_col!r} (the run's text pair) not in {file}; columns: {', '.join(df.columns)}")
    texts, gold = df[text].astype(str).tolist(), map_labels(df[label], info["label_names"], file)
    pairs = df[pair_col].astype(str).tolist() if pair_col else None
    max_length = info.get("max_length") or 512
    report, reference = {}, None
    for name, model in engines.items():
        predict_proba(model, tokenizer, texts[:64], pairs and pairs[:64], max_length=max_length)  # warm-up
        t = time.perf_counter()
        preds = predict_proba(model, tokenizer, texts, pairs, max_length=max_length).argmax(-1).tolist()
        speed = len(texts) / (time.perf_counter() - t)
        reference = reference or preds
        acc = sum(p == g for p, g in zip(preds, gold)) / len(gold)
        agree = sum(p == r for p, r in zip(preds, reference)) / len(gold)
        report[name] = {"accuracy": acc, "texts_per_second": round(speed, 1), "agreement_with_pytorch": agree}
        log(f"{name}: accuracy {acc:.4f}, {speed:,.0f} texts/s, same label as PyTorch on {agree:.2%} of "
            f"{len(gold):,} rows")
    return report


def write_onnx(model, tokenizer, tmp: Path, info: dict, *, int8: bool, eval_file: str | None, log) -> dict:
    """Export into `tmp`, check parity, optionally quantise and score: the export_info fields."""
    check_onnx_installed("--format onnx")
    if eval_file and not Path(eval_file).is_file():
        raise UserError(f"file not found: {eval_file} (check the path given to --eval-file)")
    tmp.mkdir(parents=True)
    export_onnx(model, tokenizer, tmp / "model.onnx")
    model.config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    fp32 = OnnxClassifier(tmp / "model.onnx", model.config)
    diff = parity(model, fp32, tokenizer)
    if diff > PARITY_ATOL:
        raise UserError(f"the ONNX graph differs from PyTorch by {diff:.2e} in the logits (limit {PARITY_ATOL:g}); "
                        "not written. Export --format hf instead and report the model type")
    log(f"ONNX parity: largest logit difference to PyTorch {diff:.1e} (limit {PARITY_ATOL:g})")
    engines = {"pytorch": model, "onnx": fp32}
    if int8:
        quantize(tmp / "model.onnx", tmp / "model_quantized.onnx")
        engines["onnx-int8"] = OnnxClassifier(tmp / "model_quantized.onnx", model.config)
    extra = {"parity_max_abs_logit_diff": diff, "int8": int8}
    if eval_file:
        extra["eval_file"] = str(Path(eval_file).resolve())
        extra["on_eval_file"] = compare_on_file(engines, tokenizer, eval_file, info, log)
    return extra
