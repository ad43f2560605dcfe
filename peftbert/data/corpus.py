"""Unlabelled text for masked-LM pretraining: files, directories, tables, hub datasets -> documents.

A document is a list of lines. Plain text (.txt/.text, optionally .gz) has a blank line between
documents; a file with no blank line at all is read as one document per line (one-paragraph-per-line
dumps), so it can still be split by document. A table (CSV/TSV/JSONL/Parquet) gives one document per
row of its text column. The held-out split is drawn per source, by document, so no text is in both.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from .readers import SUFFIXES as TABLE_SUFFIXES, read_table

TEXT_SUFFIXES = (".txt", ".text")
TEXT_COLUMNS = ("text", "sentence", "content", "body")


@dataclass
class Source:
    name: str  # as the user (or the domain recipe) wrote it
    path: str  # resolved file, or hub:<id> / task:<name>
    documents: list[list[str]] = field(repr=False)
    heldout_documents: int = 0  # set by split_documents

    def stats(self) -> dict:
        return {"source": self.name, "path": self.path, "documents": len(self.documents),
                "lines": sum(len(d) for d in self.documents), "heldout_documents": self.heldout_documents}


def load_corpus(specs: list[str], *, data_dir: Path | None, text_column: str | None = None) -> list[Source]:
    """Read every source; a missing path or a source without text is the user's to fix, said in one line."""
    sources = [s for spec in specs for s in read_source(spec, data_dir=data_dir, text_column=text_column)]
    for s in sources:
        if not s.documents:
            raise UserError(f"corpus source {s.path} has no text (empty file, or only blank lines)")
    return sources


def read_source(spec: str, *, data_dir: Path | None, text_column: str | None = None) -> list[Source]:
    path = resolve_path(spec, data_dir)
    if path is None:
        looks_like_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and _kind(Path(spec)) is None
        if looks_like_hub_id:  # owner/name; a missing data/file.txt is reported as a missing file
            return [read_hub(spec, text_column)]
        where = f" or under the data directory {data_dir}" if data_dir else " (no data directory set)"
        raise UserError(f"corpus source not found: {spec} (looked relative to the current directory{where})")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
        if not files:
            raise UserError(f"corpus directory {path} has no .txt/.txt.gz/.csv/.jsonl/.parquet files")
        return [_read_file(f, f"{spec}/{f.relative_to(path)}", text_column) for f in files]
    return [_read_file(path, spec, text_column)]


def resolve_path(spec: str, data_dir: Path | None) -> Path | None:
    """A path as given (relative to the current directory), else relative to the data directory."""
    p = Path(spec).expanduser()
    if p.exists():
        return p.resolve()
    if data_dir is not None and not p.is_absolute() and (data_dir / p).exists():
        return (data_dir / p).resolve()
    return None


def _kind(p: Path) -> str | None:
    name = p.name.lower().removesuffix(".gz")
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    if name.endswith(TABLE_SUFFIXES):
        return "table"
    return None


def _read_file(path: Path, name: str, text_column: str | None) -> Source:
    kind = _kind(path)
    if kind is None:
        raise UserError(f"cannot read corpus file {path}: expected .txt/.text (optionally .gz) or "
                        f"{'/'.join(TABLE_SUFFIXES)}")
    if kind == "table":
        return Source(name, str(path), table_documents(read_table(path), text_column, str(path)))
    return Source(name, str(path), text_documents(path))


def text_documents(path: Path) -> list[list[str]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            raw = [line.strip() for line in f]
    except (OSError, EOFError) as e:  # a truncated or mislabelled .gz
        raise UserError(f"cannot read corpus file {path}: {e}") from None
    docs, cur, saw_break = [], [], False
    for line in raw:
        if line:
            cur.append(line)
        elif cur:
            docs.append(cur)
            cur, saw_break = [], True
    if cur:
        docs.append(cur)
    if not saw_break and len(docs) == 1:  # no document breaks at all: one document per line
        docs = [[line] for line in docs[0]]
    return docs


def table_documents(df, text_column: str | None, where: str) -> list[list[str]]:
    col = text_column or next((c for c in TEXT_COLUMNS if c in df.columns), None)
    if col is None or col not in df.columns:
        raise UserError(f"no text column {'%r ' % col if col else ''}in {where} "
                        f"(columns: {', '.join(map(str, df.columns))}); pass --text-column")
    texts = (str(t).strip() for t in df[col].tolist() if t is not None)
    return [[t] for t in texts if t and t.lower() != "nan"]


def read_hub(dataset_id: str, text_column: str | None) -> Source:
    from ..models import check_hub

    check_hub(f"dataset {dataset_id!r}", "pass a local file or directory")  # one line now, not after retries
    try:
        import datasets
        ds = datasets.load_dataset(dataset_id, split="train")
    except Exception as e:  # offline, unknown id, no train split: all the same to the user
        raise UserError(f"could not load hub dataset {dataset_id!r} ({type(e).__name__}); check the id and "
                        "network, or pass a local file or directory") from None
    return Source(dataset_id, f"hub:{dataset_id}", table_documents(ds.to_pandas(), text_column, dataset_id))


def task_source(task: str, data_dir: str | None, seed: int) -> Source:
    """TAPT: a labelled task's training text (never its validation/test text), one document per example."""
    from ..config import DataArgs
    from .tasks import load_task

    t = load_task(DataArgs(task=task, data_dir=data_dir), seed)
    pairs = t.train["text_pair"].tolist() if t.is_pair else [None] * len(t.train)
    docs = [[a] + ([b] if b else []) for a, b in zip(t.train["text"].tolist(), pairs) if str(a).strip()]
    return Source(f"task:{t.name}", t.source, docs)


def split_documents(sources: list[Source], fraction: float, seed: int) -> tuple[list, list]:
    """(train docs, held-out docs): `fraction` of each source's documents, at least one, drawn by document.

    Per source so a small source still has its share of the held-out set; whole documents so
    no paragraph of a held-out document was seen in training.
    """
    rng = random.Random(seed)
    train, heldout = [], []
    for s in sources:
        if len(s.documents) < 2:  # a one-document source trains only; the others supply the held-out set
            train += s.documents
            continue
        order = list(range(len(s.documents)))
        rng.shuffle(order)
        k = min(max(1, round(fraction * len(order))), len(order) - 1)
        heldout += [s.documents[i] for i in order[:k]]
        s.heldout_documents = k
        train += [s.documents[i] for i in order[k:]]
    if not heldout:
        raise UserError("the corpus has too few documents for a held-out split: need at least 2 documents "
                        "(separate documents with a blank line)")
    # interleave sources, so a token budget (see mlm.tokenize_documents) samples all of them
    rng.shuffle(train)
    rng.shuffle(heldout)
    return train, heldout
