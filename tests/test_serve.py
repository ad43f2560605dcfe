"""`peftbert serve` through real HTTP on loopback: concurrent clients batched together, bad requests as one
line with a 4xx, several runs side by side, and the CLI's own one-line refusals."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from typer.testing import CliRunner

from conftest import toy_rows
from helpers import make_config
from peftbert.cli import app
from peftbert.predict import load_run, predict_proba
from peftbert.serve import build_app, load_runs, parse_runs
from peftbert.commands.tune import run_tune

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def run_dir(tiny_bert, toy_files, tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "run"
    run_tune(make_config(tiny_bert, toy_files, "lora", out, ["train.epochs=1"]), log=lambda *a: None)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_dir):
    """The app under uvicorn in a thread on a free loopback port; every forward pass's batch size recorded."""
    served = load_runs(parse_runs(run_dir, [f"second={run_dir}"]), "auto", False, log=lambda *a: None)
    batches = []
    for run in served.values():
        score = run.score
        run.score = lambda texts, score=score: batches.append(len(texts)) or score(texts)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(build_app(served, max_batch=64, max_wait_ms=50), host="127.0.0.1",
                                        port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", served, batches
    srv.should_exit = True
    thread.join(10)


def call(url: str, body: bytes | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_and_metadata(server, run_dir):
    base, served, _ = server
    assert call(base + "/health") == (200, {"status": "ok", "runs": ["default", "second"]})
    status, meta = call(base + "/metadata")
    info = json.loads((run_dir / "metrics.json").read_text())
    assert status == 200 and meta["labels"] == info["label_names"] == ["negative", "positive"]
    assert meta["method"] == "lora" and meta["model"] == info["model"] and meta["version"]
    assert set(meta["runs"]) == {"default", "second"}


def test_concurrent_clients_get_their_own_answers_in_shared_batches(server, run_dir):
    """32 clients at once, one text each: each answer is that text's own prediction (as predict computes it
    with PyTorch), and the server scored them in fewer forward passes than requests."""
    base, _, batches = server
    texts = toy_rows(32, 7)["text"].tolist()
    model, tok, info = load_run(run_dir, merge=True)
    want = predict_proba(model, tok, texts, max_length=info["max_length"])
    barrier = threading.Barrier(len(texts))

    def client(text):
        barrier.wait()  # all requests in flight together
        return call(base + "/predict", json.dumps({"text": text}).encode())

    before = len(batches)
    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(client, texts))
    for (status, body), p in zip(answers, want):
        assert status == 200 and body["run"] == "default"
        assert body["label"] == ["negative", "positive"][int(p.argmax())]
        got = torch.tensor([body["probabilities"]["negative"], body["probabilities"]["positive"]])
        assert torch.allclose(got, p, atol=1e-4)
    passes = batches[before:]
    assert sum(passes) == len(texts) and len(passes) < len(texts) and max(passes) > 1, passes


def test_a_batch_and_a_named_run(server):
    base, _, _ = server
    status, body = call(base + "/predict/second", json.dumps({"texts": ["profit surge", "debt slump", ""]}).encode())
    assert status == 200 and body["run"] == "second" and len(body["predictions"]) == 3
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in body["predictions"])


@pytest.mark.parametrize("path, body, code, needle", [
    ("/predict", b'{"text": ', 400, "malformed JSON"),
    ("/predict", b"\xff\xfe", 400, "malformed JSON"),
    ("/predict", b'{"txt": "a"}', 422, '"text"'),
    ("/predict", b'{"text": 3}', 422, '"text" must be a string'),
    ("/predict", b'{"texts": []}', 422, "non-empty list"),
    ("/predict", b'["a"]', 422, "JSON object"),
    ("/predict", json.dumps({"texts": ["a"] * 1025}).encode(), 413, "at most 1024"),
    ("/predict/nosuch", b'{"text": "a"}', 404, "unknown run 'nosuch'"),
])
def test_bad_requests_get_a_4xx_with_one_line(server, path, body, code, needle):
    status, answer = call(server[0] + path, body)
    assert status == code and set(answer) == {"error"}, answer
    assert needle in answer["error"] and "\n" not in answer["error"]


def test_the_server_still_answers_after_bad_requests(server):
    assert call(server[0] + "/predict", b'{"text": "shares gain"}')[0] == 200


runner = CliRunner()


@pytest.mark.parametrize("args, needle", [
    ([], "nothing to serve"),
    (["--run", "justapath"], "expected NAME=DIR"),
    (["--run", "a=x", "--run", "a=y"], "given twice"),
    (["/no/such/run", "--port", "0"], "run directory not found"),
    (["--max-batch", "0", "--run", "a=x"], "--max-batch must be > 0"),
])
def test_cli_refuses_in_one_line(args, needle):
    r = runner.invoke(app, ["serve", *args])
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert needle in r.output


def test_cli_refuses_a_port_in_use(run_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = runner.invoke(app, ["serve", str(run_dir), "--port", str(s.getsockname()[1])])
    assert r.exit_code == 2 and "cannot listen on 127.0.0.1" in r.output and "--port" in r.output
