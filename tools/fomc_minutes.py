"""The FOMC minutes corpus as a dated feed for `peftbert monitor`: one row per sentence, dated by its meeting.

The corpus (finance-corpus/fomc_minutes_1996_2024.txt.gz) holds one document per meeting, in order, paragraphs
one per line, a blank line between documents, and no date field. Each meeting's date is read from the text:
  1. the previous minutes' closing line, "the next meeting of the Committee would be held on Tuesday-Wednesday,
     June 18-19, 2019" (or "... confirmed for ..."): the last day named is the decision day;
  2. else its own account of the desk's operations "during the period March 26 through May 20, 1996": the
     day after the period (the period runs up to the meeting).
A document repeated verbatim (the compilation has a few) is kept once; a document neither rule dates is left
out and named on stderr; dates must increase, or the document is left out too.

    python tools/fomc_minutes.py [--corpus PATH] --output fomc_minutes.csv [--documents N]
    peftbert monitor fomc_minutes.csv --run FOMC_RUN --period meeting --output runs/fomc-monitor
"""

import argparse
import gzip
import os
import re
import sys
from datetime import date, timedelta
from pathlib import Path

MONTHS = ("January February March April May June July August September October November December").split()
MONTH = "(" + "|".join(MONTHS) + ")"
DASHES = re.compile("[\u2013\u2014\u0096\u200d-]+")
# the sentence announcing the next meeting, up to its date
NEXT = re.compile(r"next (?:FOMC )?meeting(?: of the Committee)?,? (?:would|will|was scheduled to|is scheduled to)?"
                  r"\s*(?:be held on|be held|confirmed for)([^.]{0,80})")
PERIOD = re.compile(r"period(?: from)? " + MONTH + r" (\d{1,2})(?:, (\d{4}))?,? through " + MONTH + r" (\d{1,2}), (\d{4})")
DAY = re.compile(MONTH + r"\s+(\d{1,2})")
SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z\"(])")
MIN_WORDS = 4  # shorter fragments ("The meeting") carry no stance


def documents(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [d.strip() for d in f.read().split("\n\n") if d.strip()]


def next_meeting(doc: str, last: date | None) -> date | None:
    """The date the document gives for the next meeting: the last day named (the decision day of a two-day
    meeting). A phrase without a year ("July 29-30") takes the first year that puts it after `last`."""
    found = NEXT.findall(doc)
    if not found:
        return None
    phrase = DASHES.sub(" - ", found[-1])
    named = list(re.finditer(MONTH + r"\s+(\d{1,2})(?:\s*-\s*(\d{1,2})\b)?", phrase))
    if not named:
        return None
    month, first, second = named[-1].groups()
    year = re.search(r"\b(\d{4})\b", phrase[named[-1].end():])
    day = int(second or first)
    if year:
        return date(int(year.group(1)), MONTHS.index(month) + 1, day)
    if last is None:
        return None
    when = date(last.year, MONTHS.index(month) + 1, day)
    return when if when > last else date(last.year + 1, when.month, when.day)


def after_period(doc: str) -> date | None:
    """The day after the period the desk's report covers, which ends the day before the meeting."""
    m = PERIOD.search(doc[:4000])
    if not m:
        return None
    return date(int(m.group(6)), MONTHS.index(m.group(4)) + 1, int(m.group(5))) + timedelta(days=1)


def dated_documents(docs: list[str]) -> tuple[list[tuple[date, int, str]], list[str]]:
    """(date, document number from 1, text) for each datable document, and a note per document left out."""
    dated, notes, seen, last = [], [], set(), None
    for i, doc in enumerate(docs):
        if doc in seen:
            notes.append(f"document {i + 1}: a verbatim repeat of an earlier one, kept once")
            continue
        seen.add(doc)
        when = (next_meeting(docs[i - 1], last) if i else None) or after_period(doc)
        if when is None:
            notes.append(f"document {i + 1}: no date in its text or its predecessor's; left out")
        elif last is not None and when <= last:
            notes.append(f"document {i + 1}: date {when} is not after the previous meeting's {last}; left out")
        else:
            dated.append((when, i + 1, doc))
            last = when
    return dated, notes


def sentences(doc: str) -> list[str]:
    out = []
    for paragraph in doc.splitlines():
        out += [s.strip() for s in SENTENCE.split(paragraph) if len(s.split()) >= MIN_WORDS]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("PEFTBERT_DATA_DIR", "../shared/data"))
    p.add_argument("--corpus", type=Path, default=data / "finance-corpus" / "fomc_minutes_1996_2024.txt.gz",
                   help="the minutes corpus (default: $PEFTBERT_DATA_DIR/finance-corpus/...)")
    p.add_argument("--output", type=Path, required=True, help="CSV to write: date, document, text")
    p.add_argument("--documents", type=int, default=0, help="only the first N documents (0: all)")
    args = p.parse_args()
    if not args.corpus.is_file():
        sys.exit(f"error: corpus not found: {args.corpus} (pass --corpus or set PEFTBERT_DATA_DIR)")
    import pandas as pd

    docs = documents(args.corpus)
    dated, notes = dated_documents(docs[:args.documents] if args.documents else docs)
    for note in notes:
        print(note, file=sys.stderr)
    rows = [{"date": d.isoformat(), "document": n, "text": s} for d, n, doc in dated for s in sentences(doc)]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    tmp.replace(args.output)
    print(f"wrote {args.output}: {len(rows):,} sentences from {len(dated)} dated meetings "
          f"({dated[0][0]} to {dated[-1][0]}); {len(notes)} documents left out", file=sys.stderr)


if __name__ == "__main__":
    main()
