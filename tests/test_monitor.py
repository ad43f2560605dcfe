"""`peftbert monitor`: index values against hand-computed ones, the score cache (grown feed, changed run), bad
input in one line, and the HTML report as headless Chromium renders it."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from conftest import data_dir, needs_data, toy_rows
from helpers import make_config
from peftbert.cli import app
from peftbert.monitor import aggregate, bootstrap_band, period_start
from peftbert.predict import load_run, predict_proba
from peftbert.commands.tune import run_tune

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def run_dir(tiny_bert, toy_files, tmp_path_factory):
    """A full fine-tune whose classifier is then sharpened and centred on the toy texts, so that it predicts
    both labels, about half each (a tiny model tuned for seconds may answer one label to everything)."""
    out = tmp_path_factory.mktemp("monitor") / "run"
    run_tune(make_config(tiny_bert, toy_files, "full", out, ["train.epochs=1"]), log=lambda *a: None)
    model, tok, info = load_run(out)
    texts = toy_rows(60, 5)["text"].tolist()
    with torch.no_grad():
        model.classifier.weight.mul_(100)
        enc = tok(texts, padding=True, return_tensors="pt")
        diff = model(**enc).logits @ torch.tensor([-1.0, 1.0])  # positive minus negative
        model.classifier.bias.add_(torch.tensor([0.5, -0.5]) * (diff.median() + 1e-3))
    model.save_pretrained(out)
    return out


def feed(path: Path, n: int = 30, seed: int = 5, days=("2024-01-02", "2024-01-03", "2024-01-09")) -> Path:
    df = toy_rows(n, seed)[["text"]]
    df["date"] = [days[i % len(days)] for i in range(n)]
    df.to_csv(path, index=False)
    return path


def monitor(tmp_path, feed_path, run_dir, *extra):
    r = runner.invoke(app, ["monitor", str(feed_path), "--run", f"toy={run_dir}", "--output", str(tmp_path / "out"),
                            "--bootstrap", "200", *extra])
    assert r.exit_code == 0, r.output
    return pd.read_csv(tmp_path / "out" / "index.csv"), r.output


def test_aggregate_matches_a_hand_computed_index():
    scores = pd.DataFrame({"period": pd.to_datetime(["2024-01-01"] * 4 + ["2024-02-01"] * 2),
                           "label": ["positive", "positive", "negative", "neutral", "negative", "negative"]})
    names = ["negative", "neutral", "positive"]
    t = aggregate(scores, names, ["positive"], ["negative"], "r", reps=500, seed=1)
    assert t["period"].tolist() == ["2024-01-01", "2024-02-01"] and t["n"].tolist() == [4, 2]
    assert t["index"].tolist() == [(2 - 1) / 4, (0 - 2) / 2]  # (positive - negative) / n
    assert t["share_positive"].tolist() == [0.5, 0.0] and t["share_neutral"].tolist() == [0.25, 0.0]
    assert t["index_low"][0] < 0.25 < t["index_high"][0] and t["index_low"][1] == t["index_high"][1] == -1
    again = aggregate(scores, names, ["positive"], ["negative"], "r", reps=500, seed=1)
    assert again.equals(t)  # seeded
    values = np.array([1.0, 0.0, -1.0] * 20 + [1.0] * 7)  # many texts: the band's ends depend on the draw
    assert bootstrap_band(values, 200, "k", 1) == bootstrap_band(values, 200, "k", 1)
    assert bootstrap_band(values, 200, "k", 1) != bootstrap_band(values, 200, "k", 2)


def test_periods():
    d = pd.Series(pd.to_datetime(["2024-01-07 23:00", "2024-01-08 09:30", "2024-02-29 00:00"]))
    assert period_start(d, "week").dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-08", "2024-02-26"]
    assert period_start(d, "month").dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-01", "2024-02-01"]
    assert period_start(d, "meeting").dt.strftime("%Y-%m-%d").tolist() == ["2024-01-07", "2024-01-08", "2024-02-29"]


def test_index_per_day_and_week_by_hand(run_dir, tmp_path):
    """Each day's index is (positive - negative) / n over the labels PyTorch gives the texts, counted here."""
    path = feed(tmp_path / "feed.csv")
    index, _ = monitor(tmp_path, path, run_dir, "--engine", "torch")
    df = pd.read_csv(path)
    model, tok, info = load_run(run_dir, merge=True)
    df["label"] = [["negative", "positive"][i] for i in
                   predict_proba(model, tok, df["text"].tolist(), max_length=info["max_length"]).argmax(-1).tolist()]
    assert df["label"].nunique() == 2, "the toy run should predict both labels"
    for day, g in df.groupby("date"):
        row = index[index["period"] == day].iloc[0]
        pos, neg = (g["label"] == "positive").sum(), (g["label"] == "negative").sum()
        assert row["n"] == len(g) and row["index"] == pytest.approx((pos - neg) / len(g), abs=1e-6)
        assert row["share_positive"] == pytest.approx(pos / len(g), abs=1e-6)
        assert row["index_low"] <= row["index"] <= row["index_high"]
    weekly, _ = monitor(tmp_path, path, run_dir, "--engine", "torch", "--period", "week")
    first_week = df[df["date"] < "2024-01-08"]
    want = ((first_week["label"] == "positive").sum() - (first_week["label"] == "negative").sum()) / len(first_week)
    assert weekly["period"].tolist() == ["2024-01-01", "2024-01-08"]
    assert weekly["index"][0] == pytest.approx(want, abs=1e-6)
    # --positive/--negative swap the ends: the index changes sign
    swapped, _ = monitor(tmp_path, path, run_dir, "--engine", "torch", "--positive", "negative",
                         "--negative", "positive")
    assert np.allclose(swapped["index"], -index["index"])


def test_cache_scores_only_new_rows_and_a_changed_run_afresh(run_dir, tmp_path):
    """A grown feed: only its new texts are scored. The run retrained (here: its classifier pushed to answer
    'negative'): everything is scored again, through a rebuilt ONNX cache, and the index follows."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("onnx-cache*"))
    small, _ = monitor(tmp_path, feed(tmp_path / "a.csv", n=20), run)
    _, out = monitor(tmp_path, feed(tmp_path / "b.csv", n=30), run)
    assert "scored 10 new texts, 20 from the cache" in out
    _, out = monitor(tmp_path, tmp_path / "b.csv", run)
    assert "scored 0 new texts, 30 from the cache" in out

    model, tok, _ = load_run(run)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([50.0, -50.0]))  # label 0: negative
    model.save_pretrained(run)
    index, out = monitor(tmp_path, tmp_path / "b.csv", run)
    assert "scored 30 new texts, 0 from the cache" in out and "exporting the run to ONNX" in out
    assert (index["index"] == -1).all() and (index["share_negative"] == 1).all()


@pytest.mark.parametrize("content, extra, needle", [
    ("text,when\nprofit,2024-01-01\n", [], "no date column 'date'"),
    ("text,date\nprofit,2024-01-01\nloss,yesterday-ish\n", [], "unparseable date(s) in column 'date', the first "
                                                                "'yesterday-ish' on data row 2"),
    ("text,date\n", [], "has no rows"),
    ("", [], "empty"),
    ("body,date\nprofit,2024-01-01\n", [], "no text column"),
    ("text,date\nprofit,2024-01-01\n", ["--period", "hour"], "--period must be one of"),
    ("text,date\nprofit,2024-01-01\n", ["--positive", "bullish"], "label 'bullish' is not one of its labels"),
    ("text,date\nprofit,2024-01-01\n", ["--bootstrap", "-1"], "--bootstrap must be >= 0"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, content, extra, needle):
    (tmp_path / "feed.csv").write_text(content)
    r = runner.invoke(app, ["monitor", str(tmp_path / "feed.csv"), "--run", str(run_dir), "--output",
                            str(tmp_path / "out"), "--engine", "torch", *extra])
    assert r.exit_code == 2 and r.output.startswith("error: "), r.output
    assert len(r.output.strip().splitlines()) == 1 and needle in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_a_run_that_is_not_a_run(tmp_path):
    feed(tmp_path / "feed.csv")
    r = runner.invoke(app, ["monitor", str(tmp_path / "feed.csv"), "--run", str(tmp_path), "--output",
                            str(tmp_path / "out")])
    assert r.exit_code == 2 and "not a finished peftbert run" in r.output


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium not installed (apt-get install chromium)")
def test_report_opens_in_headless_chromium(run_dir, tmp_path):
    """The report from disk, in a browser: its DOM holds the plot as an <img id="plot"> data: URI (the very
    plot.png), and the screenshot shows it: matplotlib's first line colour is on screen, and only the plot has it."""
    monitor(tmp_path, feed(tmp_path / "feed.csv"), run_dir, "--engine", "torch")
    report = (tmp_path / "out" / "report.html").resolve()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,900"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path).stdout
    img = re.search(r'<img id="plot"[^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert img, dom[:500]
    assert base64.b64decode(img.group(1)) == (tmp_path / "out" / "plot.png").read_bytes()
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", report.as_uri()], capture_output=True,
                   timeout=120, cwd=tmp_path)
    import matplotlib.image

    pixels = (matplotlib.image.imread(shot)[..., :3] * 255).round().astype(int)
    assert pixels.std() > 10  # not blank
    c0 = np.array([0x1F, 0x77, 0xB4])  # matplotlib's default first line colour, nowhere in the page's CSS
    assert (np.abs(pixels - c0).sum(-1) < 30).sum() > 50


def fomc_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fomc_minutes", Path(__file__).parents[1] / "tools" / "fomc_minutes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fomc_next_meeting_phrases():
    from datetime import date

    f = fomc_tool()
    said = "It was agreed that the next meeting of the Committee would be held on {}."
    cases = [("Tuesday, March 26, 1996", date(1996, 3, 26)),
             ("Tuesday- Wednesday, January 27-28, 2004", date(2004, 1, 28)),
             ("Tuesday\u2013Wednesday, January 31\u2013February 1, 2023", date(2023, 2, 1)),
             ("Tuesday\u2013Wednesday, September 15\u2013\u200d16, 2020", date(2020, 9, 16)),
             ("Tuesday-Wednesday, July 29-30", date(2014, 7, 30))]  # no year: the one after the last meeting
    for phrase, want in cases:
        assert f.next_meeting(said.format(phrase), last=date(2014, 6, 18)) == want, phrase
    assert f.next_meeting("At the next FOMC meeting, confirmed for January 30-31, 2007, the ...", None) == \
        date(2007, 1, 31)
    assert f.next_meeting("The next meeting of the Committee was postponed.", None) is None


@needs_data
def test_fomc_minutes_first_meetings_get_their_dates():
    """The first eight documents are the 1996 meetings, on the days the Fed's calendar gives (the last day of
    a two-day meeting)."""
    f = fomc_tool()
    docs = f.documents(data_dir() / "finance-corpus" / "fomc_minutes_1996_2024.txt.gz")[:8]
    dated, notes = f.dated_documents(docs)
    assert not notes and [d.isoformat() for d, _, _ in dated] == [
        "1996-01-31", "1996-03-26", "1996-05-21", "1996-07-03", "1996-08-20", "1996-09-24", "1996-11-13",
        "1996-12-17"]
    first = f.sentences(dated[0][2])
    assert len(first) > 50 and all(len(s.split()) >= f.MIN_WORDS for s in first)
