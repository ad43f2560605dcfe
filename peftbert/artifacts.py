"""Every artefact peftbert reads back from disk, checked where it is read: one function per kind.

A run, export, checkpoint, study or grid written by an earlier command can be damaged since (a disk filled up,
a copy cut short, a file edited by hand or deleted). Each reader here checks what it is about to load (files
present, JSON and YAML parse, safetensors headers readable, torch archives whole, the ONNX graph loads, the
study database opens) and turns each failure into a UserError naming the file, what is wrong with it and
the fix, before a library several layers down raises its own error. It also keeps local paths local: peft
and transformers take a directory that lacks a file for a Hub repo id, so a missing file is named here first.

Kinds: `tune_run` (full checkpoint or PEFT adapter, the bottleneck adapter included), `export_dir` (hf or
onnx), `model_dir` (what `--model DIR` loads: an adapt output, an hf export, any checkpoint),
`checkpoint` (what `--resume` loads), `study` (a search's OUTPUT), `bench_cell` (a finished cell of a grid).
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

from .errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spm.model", "sentencepiece.bpe.model",
                   "spiece.model", "tokenizer.model")  # any one makes a tokenizer

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
FULL_FILES = ("config.json", "model.safetensors")
TOKENIZER_CONFIG = "tokenizer_config.json"  # without it a fast tokenizer loses its special tokens (no [PAD])
CHECKPOINT_FILES = ("optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl")
SQLITE_MAGIC = b"SQLite format 3\x00"

RERUN_TUNE = "the run is damaged: train it again (the same `peftbert tune` command with --overwrite)"


def damaged(path: Path, what: str, fix: str) -> UserError:
    return UserError(f"{path}: {what}; {fix}")


def first_line(err: Exception, limit: int = 120) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:limit]


def require(path: Path, fix: str, what: str = "missing") -> Path:
    if not path.is_file():
        raise damaged(path, what, fix)
    if path.stat().st_size == 0:
        raise damaged(path, "empty (0 bytes)", fix)
    return path


def read_json(path: Path, fix: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON object holding `keys`, or one line naming the file."""
    require(path, fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not a text file (not UTF-8)", fix) from None
    except json.JSONDecodeError as e:
        raise damaged(path, f"not valid JSON ({e.msg}, line {e.lineno}: cut short or edited?)", fix) from None
    if not isinstance(data, dict):
        raise damaged(path, f"expected a JSON object, found a {type(data).__name__}", fix)
    missing = [k for k in keys if k not in data]
    if missing:
        raise damaged(path, f"incomplete (no {', '.join(missing)})", fix)
    return data


def cached_json(path: Path) -> dict | None:
    """A cache file (made again when missing): its object if it is whole, else None (so it is made again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: Path, fix: str, keys: tuple[str, ...] = ()) -> dict:
    """A YAML mapping holding `keys`, or one line naming the file."""
    import yaml

    from .yaml_text import yaml_load  # the recipes' own loader (1e-4 is a number, as when they were written)

    require(path, fix)
    try:
        data = yaml_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not a text file (not UTF-8)", fix) from None
    except yaml.YAMLError as e:
        raise damaged(path, f"not valid YAML ({first_line(e)}; cut short or edited?)", fix) from None
    if not isinstance(data, dict):
        raise damaged(path, "not a YAML mapping (cut short or overwritten?)", fix)
    missing = [k for k in keys if k not in data]
    if missing:
        raise damaged(path, f"incomplete (no {', '.join(missing)}; cut short?)", fix)
    return data


def check_safetensors(path: Path, fix: str) -> None:
    """The header is read and checked against the file's size (a cut file fails here, not at load)."""
    from safetensors import SafetensorError, safe_open

    require(path, fix)
    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except (SafetensorError, OSError) as e:
        raise damaged(path, f"not a readable safetensors file ({first_line(e)})", fix) from None


def check_torch_archive(path: Path, fix: str) -> None:
    """torch.save writes a zip archive whose directory is at its end: a cut or overwritten file has none.
    (Checked without unpickling: that happens once, where the file is loaded.)"""
    require(path, fix)
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise damaged(path, f"not a whole torch file ({first_line(e)}; cut short or overwritten?)", fix) from None


def check_json_files(d: Path, fix: str) -> None:
    """Every *.json beside the weights (config, tokenizer) parses: transformers would raise JSONDecodeError."""
    for f in sorted(d.glob("*.json")):
        read_json(f, fix)


def check_tokenizer(d: Path, fix: str) -> None:

    if not any((d / f).is_file() for f in TOKENIZER_FILES):
        raise damaged(d / TOKENIZER_FILES[0], "missing (no tokenizer files in the directory)", fix)
    require(d / TOKENIZER_CONFIG, fix)
    for f in TOKENIZER_FILES:
        if (d / f).is_file():
            require(d / f, fix)


# ---------------------------------------------------------------- the artefact kinds
def model_dir(d: Path, fix: str = "the checkpoint is damaged: save or copy it again (or re-run the peftbert "
                                  "command that wrote it, with --overwrite)") -> None:
    """A transformers checkpoint that `--model DIR` trains from (an adapt output, an hf export, a full run):
    models.check_model_dir's checks (config, safetensors weights, tokenizer files) plus every JSON parsing."""
    check_json_files(d, fix)
    check_tokenizer(d, fix)


def tune_run(run_dir: Path) -> dict:
    """A finished `tune` run, checked: its metrics.json (returned, with the recipe's data settings and length),
    recipe.yaml where present, the tokenizer, and either a full checkpoint or a PEFT adapter."""
    fix = RERUN_TUNE
    info = read_json(run_dir / "metrics.json", fix, ("label_names", "method", "model"))
    if not isinstance(info["label_names"], list) or not info["label_names"]:
        raise damaged(run_dir / "metrics.json", "label_names is not a list of labels", fix)
    recipe = run_dir / "recipe.yaml"
    if recipe.exists():  # the length and columns the run was trained with are the ones to predict with
        info.setdefault("data", read_yaml(recipe, fix, ("data",)).get("data") or {})
        info.setdefault("max_length", info["data"].get("max_length"))
    check_json_files(run_dir, fix)
    check_tokenizer(run_dir, fix)
    if any((run_dir / f).exists() for f in ADAPTER_FILES):  # a PEFT adapter: both files, never a Hub lookup
        require(run_dir / ADAPTER_FILES[0], fix)
        check_safetensors(run_dir / ADAPTER_FILES[1], fix)
    elif any((run_dir / f).exists() for f in FULL_FILES):
        require(run_dir / FULL_FILES[0], fix)
        check_safetensors(run_dir / FULL_FILES[1], fix)
    else:
        raise damaged(run_dir, "no weights (neither model.safetensors nor adapter_model.safetensors)", fix)
    return info


def export_dir(d: Path, int8: bool = False) -> dict:
    """A `peftbert export` directory: export_info.json (returned), config, tokenizer, and its weights or graph."""
    fix = "the export is damaged: export the run again (`peftbert export RUN --output DIR --overwrite`)"
    info = read_json(d / "export_info.json", fix, ("format", "label_names", "method", "model"))
    src = info.get("source_run")
    if src:
        fix = f"the export is damaged: export the run again (`peftbert export {src} --output {d} --overwrite`)"
    check_json_files(d, fix)
    require(d / "config.json", fix)
    check_tokenizer(d, fix)
    if info["format"] == "onnx":
        graph = d / ("model_quantized.onnx" if int8 else "model.onnx")
        if int8 and not graph.is_file():
            raise UserError(f"{graph} not found: export with --int8 for an int8 graph")
        require(graph, fix)
    else:
        check_safetensors(d / "model.safetensors", fix)
    return info


def onnx_session(graph: Path, make):
    """`make()` builds the ONNX Runtime session; a graph it cannot parse is one line (InvalidProtobuf, ...)."""
    try:
        return make()
    except Exception as e:  # onnxruntime raises its own untyped errors (Fail, InvalidProtobuf, InvalidArgument)
        raise damaged(graph, f"not a loadable ONNX graph ({first_line(e.args[0] if e.args else e).split(' : ')[-1]})",
                      "the export is damaged: export the run again with --overwrite") from None


def checkpoint(ckpt: Path, earlier: Path | None = None) -> dict:
    """A checkpoint `--resume` loads: trainer_state.json (returned), the weights' header, and every torch file
    whole (optimizer, scheduler, RNG states, the best weights where the run had evaluated)."""
    fix = (f"the checkpoint is damaged: resume from an earlier one (--resume {earlier})" if earlier
           else "the checkpoint is damaged") + " or start again with --overwrite"
    state = read_json(ckpt / "trainer_state.json", fix, ("step", "epoch", "batches_in_epoch", "history",
                                                         "samples_seen", "best_metric", "best_step", "bad_evals"))
    weights = sorted(ckpt.glob("model*.safetensors"))
    if not weights:
        raise damaged(ckpt / "model.safetensors", "missing", fix)
    for f in weights:
        check_safetensors(f, fix)
    for name in CHECKPOINT_FILES:  # Accelerate reads each (the scheduler is our one registered object)
        require(ckpt / name, fix)
    if state["best_step"] is not None:  # the best weights so far: without them the run would end on others
        require(ckpt / "best_state.pt", fix)
    for f in sorted([*ckpt.glob("*.bin"), *ckpt.glob("*.pkl"), *ckpt.glob("*.pt")]):
        check_torch_archive(f, fix)
    return state


def study(out: Path) -> None:
    """A search's OUTPUT before it continues: study.db is a whole SQLite database (an empty or missing one
    would start a new study silently beside the old trials)."""
    fix = "the study is damaged: start the search again with --overwrite (trials.csv keeps the old results)"
    db = out / "study.db"
    if not db.exists():
        if (out / "trials").is_dir() and any((out / "trials").iterdir()):
            raise damaged(db, "missing, though trials/ holds earlier trials", fix)
        return
    require(db, fix)
    with open(db, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise damaged(db, "not an SQLite database", fix)
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            result = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise damaged(db, f"not a readable SQLite database ({first_line(e)})", fix) from None
    if not result or result[0] != "ok":
        raise damaged(db, f"a damaged SQLite database ({result[0] if result else 'no answer'})", fix)


def trial_recipe(path: Path, method_fields: dict[str, set[str]]) -> dict:
    """A trial's saved recipe, whole. The method's block is written last, so a file cut short lacks it or one of
    its fields (method_fields: each method's config fields), even where what is left still parses as YAML."""
    fix = "the search's trial directory is damaged: start the search again with --overwrite (trials.csv keeps " \
          "the old results)"
    recipe = read_yaml(path, fix, ("method", "train", "data"))
    block = recipe.get(recipe["method"])
    if not (isinstance(block, dict) and method_fields.get(recipe["method"], set()) <= set(block)):
        raise damaged(path, f"cut short (its {recipe['method']} block is missing or incomplete)", fix)
    return recipe


def bench_cell(cell_dir: Path, what: str = "metrics.json") -> dict:
    """A finished cell's metrics.json or recipe.yaml; a damaged one is redone by deleting the cell."""
    fix = f"the grid's cell is damaged: delete {cell_dir} and run the same bench command to redo it"
    if what == "metrics.json":
        return read_json(cell_dir / what, fix, ("validation", "method"))
    return read_yaml(cell_dir / what, fix)
