"""Load test on loopback: `peftbert serve RUN` against the same model in a plain transformers pipeline behind
FastAPI, each at 1, 8 and 64 concurrent clients, one text per request.

Each server runs as its own process on a free loopback port; a level sends a fixed number of requests
(bounded: --requests per level), texts drawn in order from --file. Prints a markdown table: requests/s and
p50 / p99 latency per server and level, and writes the rows as JSON to --output.

    python tools/serve_load.py RUN --file texts.csv [--requests 256] [--levels 1,8,64] --output load.json
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

# the reference: what a user writes without peftbert (the run merged into a plain checkpoint first)
REFERENCE_SERVER = '''
import sys
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline
import uvicorn

classify = pipeline("text-classification", model=sys.argv[1], device=-1)
app = FastAPI()

class Item(BaseModel):
    text: str

@app.post("/predict")
def predict(item: Item):
    return classify(item.text, truncation=True)[0]

@app.get("/health")
def health():
    return {"status": "ok"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: the server on port {port} exited with code {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"error: no server answered on port {port} within {timeout:.0f} s")


def load(port: int, texts: list[str], clients: int, requests: int) -> dict:
    """`clients` threads, each with its own keep-alive connection, share `requests` requests."""
    latencies, lock, counter = [], threading.Lock(), iter(range(requests))

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            body = json.dumps({"text": texts[i % len(texts)]})
            t = time.perf_counter()
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"clients": clients, "requests": len(latencies), "requests_per_second": len(latencies) / wall,
            "p50_ms": statistics.median(latencies) * 1000, "p99_ms": pick(0.99)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a tuned run directory")
    p.add_argument("--file", required=True, help="CSV with a text column (the requests' texts)")
    p.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    p.add_argument("--levels", default="1,8,64", help="concurrent clients, comma-separated")
    p.add_argument("--output", required=True, help="JSON file for the rows")
    args = p.parse_args()
    from peftbert.predict import load_run

    texts = pd.read_csv(args.file)["text"].astype(str).tolist()
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model, tok, _ = load_run(Path(args.run), merge=True)
    model.save_pretrained(tmp / "merged")
    tok.save_pretrained(tmp / "merged")
    (tmp / "reference.py").write_text(REFERENCE_SERVER)
    servers = {"peftbert serve": lambda port: [sys.executable, "-m", "peftbert.cli", "serve", args.run,
                                               "--port", str(port)],
               "pipeline behind FastAPI": lambda port: [sys.executable, tmp / "reference.py", tmp / "merged",
                                                        str(port)]}
    rows = []
    for name, command in servers.items():
        port = free_port()
        proc = subprocess.Popen([str(c) for c in command(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        try:
            wait_healthy(port, proc)
            load(port, texts, 1, 8)  # warm-up
            for clients in (int(x) for x in args.levels.split(",")):
                rows.append({"server": name, **load(port, texts, clients, args.requests)})
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(30)
    Path(args.output).write_text(json.dumps(rows, indent=2) + "\n")
    print("| server | clients | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['server']} | {r['clients']} | {r['requests_per_second']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} |")


if __name__ == "__main__":
    main()
