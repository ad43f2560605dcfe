"""`adapt --decontaminate TASK`: drop corpus text that repeats a task's validation or test text.

Continued pretraining on a sentence the task later scores would be a leak: the model could have learned that very
sentence's words in context. Matching is on normalised text (lower case, letters and digits only, single spaces),
so case, punctuation and spacing changes still match. A corpus line is dropped when it equals a held-out text;
inside a longer line (a paragraph of minutes), a sentence equal to one is cut out and the rest kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .corpus import Source

_WORDS = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def normalise(text: str) -> str:
    return " ".join(_WORDS.findall(str(text).lower()))


def held_out_texts(task: str, data_dir: str | None, seed: int) -> set[str]:
    """Normalised validation and test texts of `task` (every published split of FOMC), as a run with `seed`
    would carve them."""
    from ..config import DataArgs
    from .tasks import ALIASES, FOMC_SPLITS, load_task

    base = task.lower().partition("@")[0]
    is_fomc = ALIASES.get(base, base) == "fomc-hawkish-dovish"  # its splits share one pool: every test set counts
    names = [f"fomc-hawkish-dovish@{s}" for s in FOMC_SPLITS] if is_fomc else [task]
    texts: set[str] = set()
    for n in names:
        t = load_task(DataArgs(task=n, data_dir=data_dir), seed)
        for frame in (t.validation, t.test):
            if frame is not None:
                texts |= {normalise(x) for x in frame["text"].tolist()}
                if "text_pair" in frame:
                    texts |= {normalise(x) for x in frame["text_pair"].tolist() if x}
    texts.discard("")
    return texts


@dataclass
class Dropped:
    lines: int = 0
    sentences: int = 0

    def as_dict(self) -> dict:
        return {"dropped_lines": self.lines, "dropped_sentences": self.sentences}


def decontaminate(sources: list[Source], texts: set[str]) -> Dropped:
    """Remove `texts` (normalised) from every source's documents, in place; documents left empty go too."""
    dropped = Dropped()
    for source in sources:
        kept_docs = []
        for doc in source.documents:
            kept = [line for line in (_clean_line(line, texts, dropped) for line in doc) if line]
            if kept:
                kept_docs.append(kept)
        source.documents = kept_docs
    return dropped


def _clean_line(line: str, texts: set[str], dropped: Dropped) -> str:
    if normalise(line) in texts:
        dropped.lines += 1
        return ""
    sentences = _SENTENCE_END.split(line)
    if len(sentences) == 1:
        return line
    kept = [s for s in sentences if normalise(s) not in texts]
    dropped.sentences += len(sentences) - len(kept)
    return " ".join(kept)
