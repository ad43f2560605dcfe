"""`peftbert monitor`: score a dated text feed with tuned runs and follow the mood over time.

Each text gets its run's label; per period (day, week, month, or `meeting`: each distinct date) the monitor
counts the share of each label and a net index, the mean over texts of +1 (a positive label), -1 (a negative
one) or 0: (positive - negative) / n for sentiment, hawkish - dovish for FOMC runs. Its 95% band comes from a
seeded bootstrap over the period's texts. Written to --output: index.csv (one row per run and period),
scores.csv (every text with its label and probabilities), plot.png, and report.html (the plot embedded, the
table, and each period's most positive and most negative texts), which a browser opens from disk.

Scores are cached in OUTPUT/score-cache.sqlite, keyed by the text's hash and the run's fingerprint (its
metrics.json and weight files: predict.run_fingerprint): re-running on a grown feed scores only the new texts,
and a retrained run is scored afresh.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import sqlite3
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import artifacts
from .errors import UserError

PERIODS = ("day", "week", "month", "meeting")
# label names read as the + and - ends of the index when --positive/--negative are not given
POSITIVE_NAMES = ("positive", "bullish", "hawkish")
NEGATIVE_NAMES = ("negative", "bearish", "dovish")
CACHE_NAME = "score-cache.sqlite"


@dataclass
class MonitorArgs:
    feed: str
    runs: list[str]
    output: str
    date_column: str = "date"
    text_column: str | None = None
    period: str = "day"
    positive: list[str] | None = None
    negative: list[str] | None = None
    bootstrap: int = 1000
    seed: int = 0
    top: int = 3
    engine: str = "auto"
    int8: bool = False
    batch_size: int = 64


def check_args(a: MonitorArgs) -> dict[str, Path]:
    """{run name: directory} once the flags make sense; else one line."""
    if a.period not in PERIODS:
        raise UserError(f"--period must be one of {'|'.join(PERIODS)}, got {a.period!r}")
    for flag, value, low in (("--bootstrap", a.bootstrap, 0), ("--top", a.top, 0), ("--batch-size", a.batch_size, 1)):
        if value < low:
            raise UserError(f"{flag} must be >= {low}, got {value}")
    if not a.runs:
        raise UserError("no run to score with: pass --run DIR (or --run NAME=DIR, repeatable)")
    runs = {}
    for item in a.runs:
        name, sep, path = item.partition("=")
        name, path = (name, path) if sep and name and path else (Path(item).name, item)
        if name in runs:
            raise UserError(f"two runs are named {name!r}; name them: --run NAME=DIR")
        if not (Path(path) / "metrics.json").is_file():
            raise UserError(f"--run {path}: not a finished peftbert run (no metrics.json); pass a `tune --output` dir")
        artifacts.tune_run(Path(path))  # every file it loads, checked before anything is written
        runs[name] = Path(path)
    out = Path(a.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} is a file; pass a directory")
    from .runinfo import check_writable

    check_writable(out)  # before the feed is scored, not at the first write
    if not out.resolve().parent.is_dir():
        raise UserError(f"--output {out}: its parent directory does not exist (create it first)")
    return runs


def read_feed(path: str, date_column: str, text_column: str | None) -> pd.DataFrame:
    """The feed as columns date (datetime64) and text, in file order; one line on anything unusable."""
    from .data.frames import pick_column
    from .data.readers import SUFFIXES, check_file, read_table

    p = Path(path)
    check_file(p, "FEED", SUFFIXES)
    df = read_table(p)
    if date_column not in df.columns:
        raise UserError(f"no date column {date_column!r} in {p} (columns: {', '.join(map(str, df.columns))}); "
                        "pass --date-column")
    text = pick_column(df, text_column, ("text", "sentence"), "text", p)
    if text not in df.columns:
        raise UserError(f"column {text!r} not in {p} (columns: {', '.join(map(str, df.columns))}); pass --text-column")
    raw = df[date_column]
    dates = pd.to_datetime(raw.astype(str).where(raw.astype(str).str.strip() != ""), errors="coerce", utc=True,
                           format="mixed")
    bad = dates.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"{p}: {int(bad.sum())} unparseable date(s) in column {date_column!r}, the first "
                        f"{str(raw.iloc[i])!r} on data row {i + 1}; use ISO dates like 2024-03-20")
    return pd.DataFrame({"date": dates.dt.tz_localize(None), "text": df[text].astype(str)})


def period_start(dates: pd.Series, period: str) -> pd.Series:
    """Each date's period, as the period's first day (weeks start on Monday)."""
    if period in ("day", "meeting"):
        return dates.dt.normalize()
    return dates.dt.to_period("W" if period == "week" else "M").dt.start_time


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class ScoreCache:
    """Probabilities per (run fingerprint, text hash) in SQLite; a run's rows under an older fingerprint are
    dropped when it is scored under a new one (the run was retrained)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (run TEXT, fingerprint TEXT, hash TEXT, probs TEXT, "
                        "PRIMARY KEY (fingerprint, hash))")

    def get(self, run: str, fingerprint: str, hashes: list[str]) -> dict[str, list[float]]:
        self.db.execute("DELETE FROM scores WHERE run = ? AND fingerprint != ?", (run, fingerprint))
        rows = self.db.execute("SELECT hash, probs FROM scores WHERE fingerprint = ?", (fingerprint,))
        wanted = set(hashes)
        return {h: json.loads(p) for h, p in rows if h in wanted}

    def put(self, run: str, fingerprint: str, scored: dict[str, list[float]]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                            [(run, fingerprint, h, json.dumps(p)) for h, p in scored.items()])
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def score_run(run_dir: Path, texts: list[str], cache: ScoreCache, a: MonitorArgs, log) -> tuple[list[str], np.ndarray]:
    """(label names, probabilities per text) for one run; only texts not in the cache reach the model."""
    from .predict import load_engine, predict_proba, run_fingerprint

    fingerprint = f"{run_fingerprint(run_dir)}:{'int8' if a.int8 else 'fp32'}"
    key = str(run_dir.resolve())
    hashes = [text_hash(t) for t in texts]
    known = cache.get(key, fingerprint, hashes)
    new = list(dict.fromkeys(h for h in hashes if h not in known))  # each distinct new text once
    names = run_labels(run_dir)
    if new:
        model, tokenizer, info, _ = load_engine(run_dir, a.engine, int8=a.int8, log=log)
        by_hash = dict(zip(hashes, texts))
        probs = predict_proba(model, tokenizer, [by_hash[h] for h in new], batch_size=a.batch_size,
                              max_length=info.get("max_length") or 512)
        fresh = {h: [round(float(x), 6) for x in p] for h, p in zip(new, probs)}
        cache.put(key, fingerprint, fresh)
        known.update(fresh)
    log(f"{run_dir}: scored {len(new):,} new texts, {len(texts) - len(new):,} from the cache")
    return names, np.array([known[h] for h in hashes], dtype=float).reshape(len(texts), len(names))


def run_labels(run_dir: Path) -> list[str]:
    return artifacts.tune_run(run_dir)["label_names"]


def index_labels(names: list[str], positive, negative, run: str) -> tuple[list[str], list[str]]:
    """The labels at the + and - ends of the index: as given, else the usual names (positive/bullish/hawkish
    against negative/bearish/dovish)."""
    lower = {n.lower(): n for n in names}
    pos = list(positive) if positive else [lower[n] for n in POSITIVE_NAMES if n in lower]
    neg = list(negative) if negative else [lower[n] for n in NEGATIVE_NAMES if n in lower]
    for flag, labels in (("--positive", pos), ("--negative", neg)):
        unknown = [x for x in labels if x not in names]
        if unknown or not labels:
            what = f"label {unknown[0]!r} is not one of" if unknown else "no label to put at that end among"
            raise UserError(f"run {run!r}: {what} its labels ({', '.join(names)}); pass {flag} LABEL")
    if set(pos) & set(neg):
        raise UserError(f"label(s) {', '.join(sorted(set(pos) & set(neg)))} given as both --positive and --negative")
    return pos, neg


def bootstrap_band(values: np.ndarray, reps: int, seed_key: str, seed: int) -> tuple[float, float]:
    """95% percentile band of the mean, resampling the period's texts; the generator is seeded by --seed and
    the run and period, so a period's band does not move when other periods are added to the feed."""
    if reps == 0 or len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng([seed, zlib.crc32(seed_key.encode())])
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def aggregate(scores: pd.DataFrame, names: list[str], pos, neg, run: str, reps: int, seed: int) -> pd.DataFrame:
    """One row per period: n, the share of each label, the net index and its bootstrap band.
    `scores` has columns period and label (the predicted label name)."""
    rows = []
    for period, g in scores.groupby("period", sort=True):
        value = g["label"].isin(pos).astype(float).to_numpy() - g["label"].isin(neg).astype(float).to_numpy()
        low, high = bootstrap_band(value, reps, f"{run}|{period.date().isoformat()}", seed)
        rows.append({"run": run, "period": period.date().isoformat(), "n": len(g),
                     **{f"share_{n}": float((g["label"] == n).mean()) for n in names},
                     "index": float(value.mean()), "index_low": low, "index_high": high})
    return pd.DataFrame(rows)


def plot_png(index: pd.DataFrame, a: MonitorArgs) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    for run, g in index.groupby("run", sort=False):
        x = pd.to_datetime(g["period"])
        ax.plot(x, g["index"], marker="o" if len(g) <= 60 else None, markersize=3, label=run)
        if a.bootstrap:
            ax.fill_between(x, g["index_low"], g["index_high"], alpha=0.2)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("net index (+ minus -) / n")
    ax.set_title(f"net index per {a.period}" + (" with 95% bootstrap bands" if a.bootstrap else ""))
    ax.legend(loc="best")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def extremes(scores: pd.DataFrame, top: int) -> dict[tuple[str, str], tuple[list, list]]:
    """Per (run, period): the `top` texts with the highest and the lowest score (p(+) - p(-))."""
    out = {}
    for (run, period), g in scores.groupby(["run", "period"], sort=False):
        ranked = g.sort_values("score", kind="stable")
        pick = lambda r: [(row.text, row.score) for row in r.itertuples()]  # noqa: E731
        out[(run, period.date().isoformat())] = (pick(ranked.iloc[::-1].head(top)), pick(ranked.head(top)))
    return out


def report_html(index: pd.DataFrame, scores: pd.DataFrame, png: bytes, a: MonitorArgs, labels: dict) -> str:
    e = html.escape
    top = extremes(scores, a.top)
    share_cols = [c for c in index.columns if c.startswith("share_")]

    def texts(items):
        return "".join(f"<li><span class=s>{s:+.2f}</span> {e(t)}</li>" for t, s in items)

    sections = []
    for run, g in index.groupby("run", sort=False):
        pos, neg = labels[run]
        head = "".join(f"<th>{e(c)}</th>" for c in ["period", "n", "index", "95% band", *share_cols,
                                                    "most +", "most -"])
        body = []
        for r in g.itertuples(index=False):
            row = r._asdict()
            most_pos, most_neg = top.get((run, row["period"]), ([], []))
            band = "" if np.isnan(row["index_low"]) else f"[{row['index_low']:+.3f}, {row['index_high']:+.3f}]"
            body.append(f"<tr><td>{row['period']}</td><td>{row['n']}</td><td>{row['index']:+.3f}</td><td>{band}</td>"
                        + "".join(f"<td>{row[c]:.3f}</td>" for c in share_cols)
                        + f"<td><ul>{texts(most_pos)}</ul></td><td><ul>{texts(most_neg)}</ul></td></tr>")
        sections.append(f"<h2>{e(run)}</h2><p>index = share of {e(' + '.join(pos))} minus share of "
                        f"{e(' + '.join(neg))}; score of a text = p(+) - p(-)</p>"
                        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    data = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>peftbert monitor: {e(Path(a.feed).name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}} ul{{margin:0;padding-left:1em}}
.s{{font-family:monospace;color:#555}} img{{max-width:100%}}</style></head>
<body><h1>Net index per {e(a.period)}: {e(Path(a.feed).name)}</h1>
<p>{len(scores):,} scored texts; {a.bootstrap} bootstrap resamples (seed {a.seed}).</p>
<img id="plot" alt="net index over time" src="data:image/png;base64,{data}">
{''.join(sections)}
</body></html>
"""


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    (tmp.write_bytes if isinstance(data, bytes) else lambda d: tmp.write_text(d, encoding="utf-8"))(data)
    tmp.replace(path)


def run_monitor(a: MonitorArgs, log=None) -> pd.DataFrame:
    log = log or (lambda msg: print(msg, file=sys.stderr))
    runs = check_args(a)
    feed = read_feed(a.feed, a.date_column, a.text_column)
    feed["period"] = period_start(feed["date"], a.period)
    # every run's + and - labels before anything is scored or written
    labels = {run: index_labels(run_labels(d), a.positive, a.negative, run) for run, d in runs.items()}
    out = Path(a.output)
    out.mkdir(exist_ok=True)
    cache = ScoreCache(out / CACHE_NAME)
    tables, frames = [], []
    try:
        for run, run_dir in runs.items():
            names, probs = score_run(run_dir, feed["text"].tolist(), cache, a, log)
            pos, neg = labels[run]
            idx = lambda labs: [names.index(x) for x in labs]  # noqa: E731
            scores = feed.assign(run=run, label=[names[i] for i in probs.argmax(1)],
                                 score=probs[:, idx(pos)].sum(1) - probs[:, idx(neg)].sum(1),
                                 **{f"p_{n}": probs[:, j] for j, n in enumerate(names)})
            frames.append(scores)
            tables.append(aggregate(scores, names, pos, neg, run, a.bootstrap, a.seed))
    finally:
        cache.close()
    index = pd.concat(tables, ignore_index=True)
    scores = pd.concat(frames, ignore_index=True)
    png = plot_png(index, a)
    write_atomic(out / "index.csv", index.to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "scores.csv", scores.assign(date=scores["date"].dt.strftime("%Y-%m-%d %H:%M:%S"),
                                                   period=scores["period"].dt.date.astype(str))
                 .to_csv(index=False, float_format="%.6g"))
    write_atomic(out / "plot.png", png)
    write_atomic(out / "report.html", report_html(index, scores, png, a, labels))
    log(f"wrote {out}: index.csv ({len(index)} rows), scores.csv, plot.png, report.html")
    return index
