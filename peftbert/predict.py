"""`peftbert predict`: load a tuned run (full or PEFT) and classify texts or a file, fast.

Fast because: LoRA-family adapters are merged into the weights first (no adapter matmuls per layer); a file is
read in chunks (constant memory, any size), each chunk is tokenised once and sorted by length so a batch pads
little; batches run under inference_mode; results go back to file order and are written as they come (to a
temporary file renamed at the end: never half an output). By default (`--engine auto`) a run is served through
ONNX Runtime from an export the run caches in RUN/onnx-cache on first use (rebuilt when the run's weights
change; PyTorch when onnxruntime is absent or the graph cannot be exported, and PyTorch on the GPU where there
is one). `--int8` quantises the linear layers dynamically (ONNX Runtime's or torch's quantize_dynamic) and, on a
labelled file, reports the accuracy change against fp32.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from . import artifacts
from .errors import UserError
from .metrics import classification_metrics, headline
from .scoring import predict_proba

CHUNK_ROWS = 8192  # rows read, sorted and scored at a time
ENGINES = ("auto", "torch", "onnx")
TEXT_COLUMNS = ("text", "sentence", "sentence1")  # a --file's text column, unless --text-column names it
ONNX_CACHE = "onnx-cache"  # inside the run directory
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def load_run(run_dir: Path, merge: bool = False, int8: bool = False):
    """(model, tokenizer, info) for a finished run or a `peftbert export` of one; PEFT runs load through plain
    peft.PeftModel, ONNX exports as an ONNX Runtime session (`int8`: its model_quantized.onnx).

    `merge`: fold LoRA-family adapters into the base weights (same predictions, faster); methods that cannot
    merge (bottleneck adapters, prefixes) stay as they are.
    """
    from .models import load_classifier, load_tokenizer, resolve_model

    run_dir = Path(run_dir)
    mpath = run_dir / "metrics.json"
    if not run_dir.exists():
        raise UserError(f"run directory not found: {run_dir} (pass the --output directory of `peftbert tune`)")
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file; pass a run directory (the --output of `peftbert tune`)")
    if (run_dir / "export_info.json").is_file():
        return load_export(run_dir, int8)
    if not mpath.is_file():
        raise UserError(f"{run_dir} is not a finished peftbert run (no metrics.json); pass a `tune --output` dir")
    # every file it loads, checked (one line naming a damaged one), with the recipe's length and columns
    info = artifacts.tune_run(run_dir)
    id2label = dict(enumerate(info["label_names"]))
    tokenizer = load_tokenizer(str(run_dir))
    if (run_dir / "adapter_config.json").is_file():
        from peft import PeftModel

        from .methods import bottleneck  # noqa: F401  (registers the adapter's PEFT type before loading)

        base_path = info["model_path"] if Path(info["model_path"]).exists() else resolve_model(info["model"])
        base = load_classifier(base_path, id2label, info.get("pooling", "cls"))  # the base checkpoint lacks it
        model = PeftModel.from_pretrained(base, str(run_dir))
        if merge:
            try:
                model = model.merge_and_unload()
            except (ValueError, AttributeError, NotImplementedError):  # bottleneck adapters, prompt methods
                pass
    else:
        model = load_classifier(str(run_dir), id2label)
    return model.eval(), tokenizer, info


def load_export(export_dir: Path, int8: bool):
    """An `export --format hf|onnx` directory: a transformers checkpoint, or an ONNX graph served by ONNX Runtime
    (fp32: ~1.5x PyTorch's texts/s on 2 CPU cores, identical labels: experiments/export-check)."""
    from .models import load_classifier, load_tokenizer

    info = artifacts.export_dir(export_dir, int8)  # every file it loads, checked
    id2label = dict(enumerate(info["label_names"]))
    tokenizer = load_tokenizer(str(export_dir))
    if info["format"] != "onnx":
        return load_classifier(str(export_dir), id2label).eval(), tokenizer, info
    from transformers import AutoConfig

    from .onnx_runtime import OnnxClassifier, check_onnx_installed

    check_onnx_installed("serving an ONNX export", ("onnxruntime",))
    graph = export_dir / ("model_quantized.onnx" if int8 else "model.onnx")
    if not graph.is_file():
        raise UserError(f"{graph} not found: " + ("export with --int8 for an int8 graph" if int8 else
                                                 "the export is incomplete; export the run again"))
    return OnnxClassifier(graph, AutoConfig.from_pretrained(export_dir)), tokenizer, info


def run_fingerprint(run_dir: Path) -> str:
    """A short hash of a run's state: metrics.json's bytes and each weight file's name, size and mtime.
    Retraining into the directory changes it; reading the run (or caching beside it) does not."""
    run_dir = Path(run_dir)
    h = hashlib.sha256()
    for name in ("metrics.json", "export_info.json"):
        if (run_dir / name).is_file():
            h.update((run_dir / name).read_bytes())
    for f in sorted(run_dir.iterdir()):
        if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def load_engine(run_dir, engine: str = "auto", int8: bool = False, build: bool = True, log=None):
    """(model, tokenizer, info, engine used) for serving a run: `onnx` through ONNX Runtime from the run's
    cached export (made now if absent or stale and `build`), `torch` through PyTorch with LoRA merged, `auto`
    ONNX when onnxruntime is installed and the graph exports, else PyTorch; PyTorch on the GPU where CUDA is
    available (but int8, which is CPU-only). `int8`: dynamic int8 linear layers."""
    if engine not in ENGINES:
        raise UserError(f"--engine must be one of {'|'.join(ENGINES)}, got {engine!r}")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if engine == "auto" and torch.cuda.is_available() and not int8:
        engine = "torch"  # onnxruntime here is the CPU build: on a GPU machine PyTorch on the GPU serves
    if engine != "torch" and (ready := fresh_onnx(Path(run_dir), int8)):
        return (*ready, "onnx")
    model, tokenizer, info = load_run(Path(run_dir), merge=True)
    if info.get("format") == "onnx":  # an export directory: its own graphs
        return (load_export(Path(run_dir), True)[0] if int8 else model), tokenizer, info, "onnx"
    if engine != "torch" and info.get("format") is None:
        try:
            return cached_onnx(Path(run_dir), model, tokenizer, int8, build, log), tokenizer, info, "onnx"
        except (UserError, OSError) as e:
            if engine == "onnx":
                raise UserError(str(e) if isinstance(e, UserError) else f"cannot cache the ONNX export: {e}") from None
            if build:
                log(f"note: serving with PyTorch ({e})")
    if int8:
        return quantize_int8(model), tokenizer, info, "torch"
    return model.to("cuda") if torch.cuda.is_available() else model, tokenizer, info, "torch"


def fresh_onnx(run_dir: Path, int8: bool):
    """(ONNX session, tokenizer, info) from a cache that matches the run, without loading the PyTorch model
    (the slowest part of start-up); None when there is no such cache or it does not load (load_engine then
    loads the model, and rebuilds the cache)."""
    import importlib.util

    cache = run_dir / ONNX_CACHE
    stamp = cache / "fingerprint.txt"
    if (importlib.util.find_spec("onnxruntime") is None or (run_dir / "export_info.json").exists()
            or not (run_dir / "metrics.json").is_file() or not (cache / "config.json").is_file()
            or not stamp.is_file() or stamp.read_bytes().strip() != run_fingerprint(run_dir).encode()
            or (int8 and not (cache / "model_quantized.onnx").is_file())):
        return None
    from transformers import AutoConfig

    from .models import load_tokenizer
    from .onnx_runtime import OnnxClassifier

    try:
        info = artifacts.tune_run(run_dir)
        session = OnnxClassifier(cached_graph(cache, int8), AutoConfig.from_pretrained(cache))
        return session, load_tokenizer(str(run_dir)), info
    except (UserError, OSError, ValueError):
        return None


def cached_onnx(run_dir: Path, model, tokenizer, int8: bool, build: bool, log):
    """The run's ONNX graph from RUN/onnx-cache, exported (and parity-checked) first when missing or stale."""
    from .onnx_runtime import OnnxClassifier, check_onnx_installed

    check_onnx_installed("--engine onnx", ("onnxruntime",))
    cache, fingerprint = run_dir / ONNX_CACHE, run_fingerprint(run_dir)
    stamp = cache / "fingerprint.txt"
    fresh = stamp.is_file() and stamp.read_bytes().strip() == fingerprint.encode()  # bytes: a damaged stamp is stale
    if not (fresh and (cache / "model.onnx").is_file()):
        if not build:
            raise UserError("no ONNX export cached for this run yet")
        build_onnx_cache(run_dir, fingerprint, model, tokenizer, log)
    if not (cache / "config.json").is_file():  # what fresh_onnx reads to serve without the PyTorch model
        model.config.save_pretrained(cache)
    try:
        return OnnxClassifier(cached_graph(cache, int8), model.config)
    except UserError:  # a damaged cache (a disk error, a copy cut short) is rebuilt once, not reported forever
        if not build:
            raise
        build_onnx_cache(run_dir, fingerprint, model, tokenizer, log)
        return OnnxClassifier(cached_graph(cache, int8), model.config)


def build_onnx_cache(run_dir: Path, fingerprint: str, model, tokenizer, log) -> None:
    """Export into a temporary directory, check parity, rename to RUN/onnx-cache: a concurrent reader sees a
    whole cache or none."""
    from .onnx_export import PARITY_ATOL, export_onnx, parity
    from .onnx_runtime import OnnxClassifier, check_onnx_installed

    check_onnx_installed("exporting the run to ONNX")
    cache = run_dir / ONNX_CACHE
    log(f"exporting the run to ONNX once (cached in {cache}; rebuilt when the run changes)")
    tmp = run_dir / f"{ONNX_CACHE}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        export_onnx(model, tokenizer, tmp / "model.onnx")
        diff = parity(model, OnnxClassifier(tmp / "model.onnx", model.config), tokenizer)
        if diff > PARITY_ATOL:
            raise UserError(f"the ONNX graph differs from PyTorch by {diff:.1e} in the logits")
        model.config.save_pretrained(tmp)
        (tmp / "fingerprint.txt").write_text(fingerprint + "\n")
        shutil.rmtree(cache, ignore_errors=True)
        tmp.rename(cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_graph(cache: Path, int8: bool) -> Path:
    """model.onnx, or its int8 version (quantised on first use, beside it)."""
    if not int8:
        return cache / "model.onnx"
    graph = cache / "model_quantized.onnx"
    if not graph.is_file():
        from .onnx_export import quantize

        part = cache / f"model_quantized.onnx.tmp-{os.getpid()}"
        try:
            quantize(cache / "model.onnx", part)
        except Exception as e:  # onnx's checker raises its own types on a damaged graph
            part.unlink(missing_ok=True)
            raise UserError(f"cannot quantise {cache / 'model.onnx'}: {str(e).splitlines()[0][:120]}") from None
        part.replace(graph)
    return graph


def quantize_int8(model):
    """Dynamic int8 quantisation of every nn.Linear (weights int8, activations quantised on the fly).

    torch.ao's quantize_dynamic warns that its quantised tensor types will move to torchao in a future torch;
    it is what this torch ships, so the warning is not passed on to the user.
    """
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def read_chunks(file: str):
    """DataFrames of at most CHUNK_ROWS rows: CSV/TSV/JSONL stream from disk; other formats are read whole."""
    import pandas as pd

    from .data.readers import check_file, not_utf8, read_table

    p = Path(file)
    name = p.name.lower().removesuffix(".gz")
    check_file(p, "--file")
    try:
        if name.endswith((".csv", ".tsv")):
            chunks = pd.read_csv(p, sep="\t" if name.endswith(".tsv") else ",", chunksize=CHUNK_ROWS,
                                 keep_default_na=False, encoding="utf-8-sig")
        elif name.endswith(".jsonl"):
            chunks = pd.read_json(p, lines=True, chunksize=CHUNK_ROWS)
        else:
            df = read_table(p)
            chunks = (df.iloc[i:i + CHUNK_ROWS] for i in range(0, len(df), CHUNK_ROWS))
        yield from chunks
    except UserError:
        raise
    except UnicodeDecodeError:
        raise not_utf8(p) from None
    except Exception as e:  # pandas raises many types; the user needs only the first line
        raise UserError(f"cannot parse {p}: {str(e).splitlines()[0][:200]}") from None


def check_file_first(run_dir: Path, p: Path, text_column, label_column) -> None:
    """What a --file can get wrong, said before a model loads (or is exported to ONNX for it): for CSV/TSV the
    delimiter, a column named twice, no rows, the text column, and the labels of its first chunk against the
    run's (a later chunk's unknown label is still caught, when it is read)."""
    from .data.frames import map_labels, pick_column
    from .data.readers import check_file, check_header

    check_file(p, "--file")
    name = p.name.lower().removesuffix(".gz")
    if not name.endswith((".csv", ".tsv")):
        return
    sep = "\t" if name.endswith(".tsv") else ","
    check_header(p, sep)
    import pandas as pd

    try:
        first = pd.read_csv(p, sep=sep, nrows=CHUNK_ROWS, encoding="utf-8-sig", keep_default_na=False, dtype=str)
    except Exception:  # noqa: BLE001 (read_chunks reads it again and says what is wrong in one line)
        return
    pick_column(first, text_column, TEXT_COLUMNS, "text", str(p))
    label_col = label_column or "label"
    if label_col in first.columns and (run_dir / "export_info.json").is_file():
        map_labels(first[label_col], artifacts.export_dir(run_dir)["label_names"], str(p))
    elif label_col in first.columns and (run_dir / "metrics.json").is_file():
        map_labels(first[label_col], artifacts.tune_run(run_dir)["label_names"], str(p))


def run_predict(run_dir, *, texts=None, file=None, text_column=None, text_pair_column=None, label_column=None,
                output=None, batch_size=64, int8=False, engine="auto", log=None):
    import pandas as pd
    from tqdm.auto import tqdm

    from .data.frames import map_labels, pick_column

    log = log or (lambda msg: print(msg, file=sys.stderr))
    if not texts and not file:
        raise UserError("nothing to classify: pass --text \"...\" (repeatable) or --file PATH")
    if output and not output.endswith((".jsonl", ".csv")):
        raise UserError(f"--output must end in .jsonl or .csv, got {output}")
    if batch_size <= 0:
        raise UserError(f"--batch-size must be > 0, got {batch_size}")
    if output:  # a directory that can be written in, before the model is loaded
        from .runinfo import check_writable

        check_writable(Path(output), file=True)
    if output and not Path(output).resolve().parent.is_dir():
        raise UserError(f"--output {output}: its directory does not exist (create it first)")
    if file:
        check_file_first(Path(run_dir), Path(file), text_column, label_column)
    t_start = time.perf_counter()
    # a few --text lines would not repay an export's one-off cost: they use a cached one, or PyTorch
    model, tokenizer, info, used = load_engine(run_dir, engine, build=bool(file) or engine == "onnx", log=log)
    fp32_model = model
    if int8:  # the same engine's int8 graph: ONNX Runtime's from the cache or an export, else torch's
        model = load_engine(run_dir, used, int8=True, log=log)[0]
    names = info["label_names"]
    max_length = info.get("max_length") or 512
    chunks = read_chunks(file) if file else [pd.DataFrame({"text": list(texts)})]
    writer = Writer(output, names)
    gold, preds, preds_fp32, n, t_infer = [], [], [], 0, 0.0
    # shown after a second: a file rejected at its first rows ends in the error line alone
    bar = tqdm(desc="predict", unit=" texts", disable=not file, dynamic_ncols=True, delay=1)
    try:
        for df in chunks:
            col = pick_column(df, text_column, TEXT_COLUMNS, "text", file or "--text")
            pairs = None
            if text_pair_column:
                if text_pair_column not in df.columns:
                    raise UserError(f"column {text_pair_column!r} not in {file}; pass --text-pair-column")
                pairs = df[text_pair_column].astype(str).tolist()
            label_col = label_column or ("label" if "label" in df.columns else None)
            if label_col:
                if label_col not in df.columns:
                    raise UserError(f"column {label_col!r} not in {file}; pass --label-column")
                gold += map_labels(df[label_col], names, file)
            chunk_texts = df[col].astype(str).tolist()
            t = time.perf_counter()
            probs = predict_proba(model, tokenizer, chunk_texts, pairs, batch_size, max_length)
            t_infer += time.perf_counter() - t
            preds += probs.argmax(-1).tolist()
            if int8 and label_col:  # the accuracy change needs fp32's answers on the same rows
                preds_fp32 += predict_proba(fp32_model, tokenizer, chunk_texts, pairs, batch_size,
                                            max_length).argmax(-1).tolist()
            writer.write(chunk_texts, probs)
            n += len(chunk_texts)
            bar.update(len(chunk_texts))
        if not n:
            raise UserError(f"{file} has no rows")
        writer.close()
    finally:
        bar.close()
        writer.discard()
    total = time.perf_counter() - t_start
    if file:
        log(f"predicted {n:,} texts in {t_infer:.2f} s ({n / max(t_infer, 1e-9):,.0f} texts/s; "
            f"{total:.2f} s with loading; {'ONNX Runtime' if used == 'onnx' else 'PyTorch'}"
            f"{', int8 linear layers' if int8 else ''})")
    if not gold:
        return None
    m = classification_metrics(gold, preds, names)
    log(f"scored {len(gold)} labelled rows: {headline(m)}")
    if preds_fp32:
        ref = classification_metrics(gold, preds_fp32, names)
        agree = sum(a == b for a, b in zip(preds, preds_fp32)) / len(preds)
        log(f"int8 vs fp32: accuracy {m['accuracy']:.4f} vs {ref['accuracy']:.4f} "
            f"({100 * (m['accuracy'] - ref['accuracy']):+.2f} points), same label on {agree:.2%} of rows")
        m["fp32"] = {"accuracy": ref["accuracy"], "macro_f1": ref["macro_f1"], "agreement": agree}
    return m


class Writer:
    """Rows to stdout, or to `output` (.jsonl/.csv) through a temporary file renamed when complete."""

    def __init__(self, output: str | None, names: list[str]):
        self.output, self.names = output, names
        self.tmp = Path(output).with_name(Path(output).name + ".tmp") if output else None
        self.f = open(self.tmp, "w", encoding="utf-8") if self.tmp else sys.stdout
        self.header = bool(output and output.endswith(".csv"))

    def write(self, texts, probs) -> None:
        rows = [{"text": t, "label": self.names[int(p.argmax())],
                 **{f"p_{n}": round(float(p[j]), 6) for j, n in enumerate(self.names)}} for t, p in zip(texts, probs)]
        if self.output and self.output.endswith(".csv"):
            import pandas as pd
            pd.DataFrame(rows).to_csv(self.f, index=False, header=self.header)
            self.header = False
        else:
            self.f.write("".join(json.dumps(r) + "\n" for r in rows))

    def close(self) -> None:
        if self.tmp:
            self.f.close()
            self.tmp.replace(self.output)
            self.tmp = None

    def discard(self) -> None:  # after an error: no half-written output
        if self.tmp:
            self.f.close()
            self.tmp.unlink(missing_ok=True)
