"""`peftbert serve`: tuned runs behind HTTP (FastAPI + uvicorn), with dynamic micro-batching.

POST /predict (or /predict/{name} with several runs) takes {"text": "..."} or {"texts": [...]} and answers each
text's label and class probabilities; GET /health and GET /metadata say what is served. Requests that arrive
together are scored together: each run has a queue, and its worker takes every request waiting (those that
arrived during the previous forward pass), optionally waits --max-wait-ms for more, up to --max-batch texts,
and scores them in one forward pass (padding by length, as predict does): 64 concurrent one-text clients cost
a few forward passes rather than 64, and a lone client never waits. Forward passes of all runs go through one
thread: they share the cores instead of fighting over them, and the event loop stays free to accept requests
meanwhile. Models load through predict.load_engine (ONNX Runtime from the run's cached export by default).
Bad requests get a 4xx whose body is one line: {"error": "..."}.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request, imported inside
# build_app so that importing this module does not need fastapi) as live objects.
import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

MAX_TEXTS = 1024  # per request: a bigger job belongs to `peftbert predict --file`
DEFAULT = "default"  # the name of the run given as the positional RUN


@dataclass
class Served:
    """One run being served: its model and the queue of requests waiting for a forward pass."""
    name: str
    model: object
    tokenizer: object
    info: dict
    engine: str
    queue: asyncio.Queue | None = field(default=None, repr=False)

    def metadata(self) -> dict:
        return {"labels": self.info["label_names"], "method": self.info.get("method"),
                "model": self.info.get("model"), "task": self.info.get("task"), "engine": self.engine,
                "max_length": self.info.get("max_length")}

    def score(self, texts: list[str]) -> list[list[float]]:
        from .predict import predict_proba

        return predict_proba(self.model, self.tokenizer, texts, batch_size=len(texts),
                             max_length=self.info.get("max_length") or 512).tolist()


def parse_runs(run: Path | None, named: list[str] | None) -> dict[str, Path]:
    """`RUN` and `--run name=DIR` (repeatable) as {name: directory}; the first is what POST /predict serves."""
    runs = {DEFAULT: Path(run)} if run else {}
    for item in named or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--run {item!r}: expected NAME=DIR, e.g. --run twitter=runs/twitter")
        if name in runs:
            raise UserError(f"--run {name!r} is given twice; give each run its own name")
        runs[name] = Path(path)
    if not runs:
        raise UserError("nothing to serve: pass a run directory (RUN) or --run NAME=DIR")
    return runs


def load_runs(runs: dict[str, Path], engine: str, int8: bool, log) -> dict[str, Served]:
    from .predict import load_engine

    served = {}
    for name, path in runs.items():
        model, tokenizer, info, used = load_engine(path, engine, int8=int8, log=log)
        served[name] = Served(name, model, tokenizer, info, used)
    return served


async def batch_worker(run: Served, executor, max_batch: int, max_wait: float) -> None:
    """Take the first waiting request and every request already queued behind it (those that arrived during
    the previous forward pass), then wait up to `max_wait` seconds for more, to at most `max_batch` texts;
    score them all in one forward pass and hand each request its rows. With `max_wait` 0 a lone client never
    waits, and under load the batches grow by themselves."""
    loop = asyncio.get_running_loop()
    while True:
        batch = [await run.queue.get()]
        n, deadline = len(batch[0][0]), loop.time() + max_wait
        while n < max_batch and not run.queue.empty():
            batch.append(run.queue.get_nowait())
            n += len(batch[-1][0])
        while n < max_batch and (left := deadline - loop.time()) > 0:
            try:
                batch.append(await asyncio.wait_for(run.queue.get(), left))
            except asyncio.TimeoutError:
                break
            n += len(batch[-1][0])
        texts = [t for item in batch for t in item[0]]
        try:
            probs = await loop.run_in_executor(executor, run.score, texts)
        except Exception as e:  # one bad batch fails its requests, not the server
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            continue
        start = 0
        for item_texts, future in batch:
            if not future.done():  # a client that went away leaves a cancelled future
                future.set_result(probs[start:start + len(item_texts)])
            start += len(item_texts)


def request_texts(body) -> tuple[list[str], bool]:
    """The texts of a request body and whether it was a single text; ValueError names what is wrong."""
    if not isinstance(body, dict) or ("text" in body) == ("texts" in body):
        raise ValueError('the body must be a JSON object with "text": "..." or "texts": ["...", ...]')
    if "text" in body:
        if not isinstance(body["text"], str):
            raise ValueError('"text" must be a string')
        return [body["text"]], True
    texts = body["texts"]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError('"texts" must be a non-empty list of strings')
    if len(texts) > MAX_TEXTS:
        raise OverflowError(f"{len(texts)} texts in one request; at most {MAX_TEXTS} (use `peftbert predict --file`)")
    return texts, False


def build_app(served: dict[str, Served], max_batch: int = 64, max_wait_ms: float = 0.0):
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from .version import __version__

    default = next(iter(served))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forward")

    @asynccontextmanager
    async def lifespan(app):
        workers = []
        for run in served.values():
            run.queue = asyncio.Queue()
            workers.append(asyncio.create_task(batch_worker(run, executor, max_batch, max_wait_ms / 1000)))
        yield
        for w in workers:
            w.cancel()
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="peftbert", version=__version__, lifespan=lifespan)
    error = lambda status, message: JSONResponse({"error": message}, status_code=status)  # noqa: E731

    @app.get("/health")
    async def health():
        return {"status": "ok", "runs": list(served)}

    @app.get("/metadata")
    async def metadata():
        return {**served[default].metadata(), "version": __version__, "default": default,
                "runs": {name: run.metadata() for name, run in served.items()}}

    async def answer(name: str, request: Request):
        if name not in served:
            return error(404, f"unknown run {name!r}; served: {', '.join(served)}")
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            return error(400, f"malformed JSON: {str(e).splitlines()[0]}")
        try:
            texts, single = request_texts(body)
        except OverflowError as e:
            return error(413, str(e))
        except ValueError as e:
            return error(422, str(e))
        run = served[name]
        future = asyncio.get_running_loop().create_future()
        await run.queue.put((texts, future))
        probs = await future
        labels = run.info["label_names"]
        rows = [{"label": labels[max(range(len(p)), key=p.__getitem__)],
                 "probabilities": {lab: round(x, 6) for lab, x in zip(labels, p)}} for p in probs]
        return {"run": name, **rows[0]} if single else {"run": name, "predictions": rows}

    @app.post("/predict")
    async def predict_default(request: Request):
        return await answer(default, request)

    @app.post("/predict/{name}")
    async def predict_named(name: str, request: Request):
        return await answer(name, request)

    return app


def check_port(host: str, port: int) -> None:
    """A port already taken ends in one line now, not in uvicorn's log after the models have loaded."""
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pass another --port or --host") from None


def run_serve(run: Path | None, named: list[str] | None, *, host: str = "127.0.0.1", port: int = 8000,
              engine: str = "auto", int8: bool = False, max_batch: int = 64, max_wait_ms: float = 0.0,
              log=print) -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"peftbert serve needs {' and '.join(missing)}: pip install 'peftbert[serve]'")
    import uvicorn

    if max_batch <= 0:
        raise UserError(f"--max-batch must be > 0, got {max_batch}")
    if max_wait_ms < 0:
        raise UserError(f"--max-wait-ms must be >= 0, got {max_wait_ms}")
    runs = parse_runs(run, named)
    check_port(host, port)
    served = load_runs(runs, engine, int8, log)
    for name, r in served.items():
        log(f"serving {name!r}: {runs[name]} ({r.info.get('method')}, labels {', '.join(r.info['label_names'])}, "
            f"{r.engine})")
    uvicorn.run(build_app(served, max_batch, max_wait_ms), host=host, port=port, log_level="warning")
