"""Regenerate the small finance-sentiment sample shipped in peftbert/data/sample/.

Sentences are composed from templates written for this project (no external data),
so a fresh install with no data directory still has a labelled task to tune on.
Run: python tools/make_sample.py
"""

import csv
import random
from pathlib import Path

COMPANIES = ["Acme Corp", "Northwind Bank", "Globex", "Initech", "Umbrella Energy", "Stark Motors",
             "Wayne Foods", "Hooli", "Vandelay Imports", "Soylent Health", "Cyberdyne", "Tyrell Mining"]
BULLISH = [
    "{c} shares jump after earnings beat expectations",
    "{c} raises full-year guidance on strong demand",
    "{c} stock hits record high as revenue surges",
    "Analysts upgrade {c} to buy, citing margin growth",
    "{c} announces bigger buyback and dividend increase",
    "{c} rallies after landing a major government contract",
    "Profit at {c} doubles, beating every estimate",
    "{c} climbs as sales growth accelerates",
]
BEARISH = [
    "{c} shares slump after profit warning",
    "{c} cuts outlook as demand weakens",
    "{c} stock falls to a multi-year low on weak sales",
    "Analysts downgrade {c} to sell over mounting debt",
    "{c} suspends dividend after quarterly loss",
    "{c} tumbles as regulators open an investigation",
    "Revenue at {c} misses estimates and shares sink",
    "{c} announces layoffs as losses widen",
]
NEUTRAL = [
    "{c} to report quarterly results on Thursday",
    "{c} names a new chief financial officer",
    "{c} schedules its annual shareholder meeting",
    "{c} will present at an industry conference next week",
    "{c} completes previously announced office move",
    "{c} files its annual report with regulators",
    "{c} board to review governance policies",
    "{c} publishes its sustainability report",
]


def main(out=Path(__file__).resolve().parents[1] / "peftbert" / "data" / "sample"):
    rng = random.Random(0)
    rows = [(t.format(c=c), label) for label, temps in (("bearish", BEARISH), ("bullish", BULLISH), ("neutral", NEUTRAL))
            for t in temps for c in COMPANIES]
    rng.shuffle(rows)
    n_test = len(rows) // 5
    for name, part in (("test", rows[:n_test]), ("train", rows[n_test:])):
        with open(out / f"finance_sentiment_{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(part)
    print(f"wrote {len(rows) - n_test} train / {n_test} test rows to {out}")


if __name__ == "__main__":
    main()
