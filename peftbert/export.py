"""`peftbert export`: a tuned run as a plain Hugging Face checkpoint (`--format hf`) or an ONNX graph
(`--format onnx`, see onnx_export.py), either needing neither peft nor peftbert.

LoRA-family adapters (LoRA, DoRA, rsLoRA, AdaLoRA, IA3) are merged into the weights; full fine-tuning and
BitFit runs are checkpoints already. Label names are in the config, the tokenizer beside it, so
`transformers.pipeline("text-classification", model=DIR)` gives the run's predictions. Written to a
temporary directory and renamed when complete: a directory named DIR is always a whole export.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import UserError

FORMATS = ("hf", "onnx")


def run_export(run_dir, output: str, fmt: str = "hf", overwrite: bool = False, int8: bool = False,
               eval_file: str | None = None, log=print) -> Path:
    from peft import PeftModel

    from .predict import load_run
    from .runinfo import WRITE_ERRORS, check_writable, io_reason, write_advice

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {'|'.join(FORMATS)}, got {fmt!r}")
    if fmt == "hf" and (int8 or eval_file):
        raise UserError("--int8 and --eval-file apply to --format onnx (int8 in PyTorch: `peftbert predict --int8`)")
    if (Path(run_dir) / "export_info.json").is_file():
        raise UserError(f"{run_dir} is an export, not a run; export its source run (source_run in its "
                        "export_info.json)")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite or not (out / "export_info.json").is_file():
            raise UserError(f"{out} exists and is not an empty directory; choose another --output"
                            + ("" if overwrite else " (or --overwrite an earlier export)"))
    check_writable(out)  # before the run is loaded and exported, not at the first write
    model, tokenizer, info = load_run(Path(run_dir), merge=True)
    if isinstance(model, PeftModel) and fmt == "hf":
        raise UserError(f"{info['method']} runs cannot be merged into plain weights (their modules are not linear "
                        "updates); serve it with `peftbert predict` or `peftbert.load`, or load it with peft after "
                        "`import peftbert.methods.bottleneck`")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if fmt == "onnx":
            from .onnx_export import write_onnx

            extra = write_onnx(model, tokenizer, tmp, info, int8=int8, eval_file=eval_file, log=log)
        else:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            extra = {}
        (tmp / "export_info.json").write_text(json.dumps(
            {"source_run": str(Path(run_dir).resolve()), "method": info["method"], "model": info["model"],
             "task": info["task"], "label_names": info["label_names"], "format": fmt,
             # what `peftbert predict EXPORT` needs to answer as the run does: its length and columns
             "max_length": info.get("max_length"), "data": info.get("data") or {}, **extra}, indent=2) + "\n")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, WRITE_ERRORS):  # a full disk, a lost permission: one line, no half export left behind
            raise UserError(f"could not write {out}: {io_reason(e)}; {write_advice(e)} and export again") from None
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    if fmt == "onnx":
        log(f"wrote {out}: model.onnx{' and model_quantized.onnx' if int8 else ''} for ONNX Runtime, "
            "with config.json and the tokenizer")
    else:
        log(f"wrote {out}: load it with transformers.pipeline(\"text-classification\", model=\"{out}\")")
    return out
