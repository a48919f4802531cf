"""minigpt-serve: the runs behind OpenAI's completions API, and a playground page.

    from minigpt.server import create_app
    app = create_app(["runs"])  # any ASGI server; minigpt-serve runs it with uvicorn

Every run folder is a model, named by its folder, loaded on first use, with a decoding thread of its
own (worker.py, scheduler.py: the requests that overlap in time are decoded together). Requests and answers have
OpenAI's shapes, so its clients work; errors too: {"error": {"message", "type", "param", "code"}}, with
400, 404, 413, 422 or 429, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import AsyncIterator, Callable, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .checkpoint import RunFolder, open_run
from .data.vocab import Vocab
from . import signals
from .errors import Interrupted, UserError
from .runs import read_run, run_folders
from .worker import DecodeProcess, QueueFull

MAX_BODY_BYTES = 1 << 20  # a request larger than this is refused (413): a prompt is cut to the window anyway
MAX_STOPS = 4  # OpenAI's limit on stop strings


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, **headers):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    kind = {429: "rate_limit_error", 503: "server_error"}.get(status, "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class StreamOptions(BaseModel):
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """POST /v1/completions: OpenAI's fields that minigpt can honour, and minigpt-sample's own (top_k,
    stop_at_eot, allow_unk). Defaults are minigpt-sample's."""

    model: str
    prompt: Union[str, list[str]] = ""
    max_tokens: int = Field(200, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=1)
    seed: Optional[int] = Field(None, ge=0, lt=2**63)
    stop: Union[str, list[str], None] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(1, ge=1, le=16)
    echo: bool = False
    stop_at_eot: bool = False
    allow_unk: bool = False
    # OpenAI's fields that minigpt cannot honour: refused when set, rather than ignored
    logprobs: Optional[int] = None
    suffix: Optional[str] = None
    best_of: Optional[int] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[dict] = None

    @property
    def text(self) -> str:
        """The prompt: a string, or the one string of a list."""
        return self.prompt[0] if isinstance(self.prompt, list) else self.prompt

    @property
    def stops(self) -> tuple[str, ...]:
        """`stop` as a tuple of strings (a string alone, a list, or none)."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


@dataclass
class Served:
    vocab: Vocab
    decoder: DecodeProcess


class Models:
    """The run folders served, by name, each loaded on first use (one load at a time per run), each
    decoded by a process of its own (worker.py)."""

    def __init__(self, paths: list[Path] | None, outbox: "Outbox", device: str, slots: int, queue: int, threads: int):
        self.paths, self.outbox, self.device = paths, outbox, device
        self.slots, self.queue, self.threads = slots, queue, threads
        self.loaded: dict[Path, Served] = {}
        self.locks: dict[Path, asyncio.Lock] = {}

    def table(self) -> dict[str, Path]:
        """Name -> folder, read afresh (a run trained since start-up is served too); the first of two
        folders with one name wins (minigpt-serve refuses such a pair at start-up)."""
        found: dict[str, Path] = {}
        try:
            paths = run_folders(self.paths)
        except UserError:  # no runs (yet) under runs/
            return found
        for p in paths:
            found.setdefault(p.name, p)
        return found

    def path(self, name: str) -> Path:
        table = self.table()
        if name not in table:
            known = ", ".join(sorted(table)[:10]) or "none"
            raise APIError(404, f"no model {name!r} here (models: {known})", "model", "model_not_found")
        return table[name]

    async def get(self, name: str) -> Served:
        """The model, loaded if it is not (or if its decoding process has ended)."""
        path = self.path(name)
        async with self.locks.setdefault(path, asyncio.Lock()):
            if path not in self.loaded or not self.loaded[path].decoder.alive:
                self.loaded[path] = await run_in_threadpool(self._load, path)
        return self.loaded[path]

    def _load(self, path: Path) -> Served:
        try:
            vocab = open_run(path).vocab
            decoder = DecodeProcess(path, self.device, self.slots, self.queue, self.threads, self.outbox.post)
        except UserError as e:
            raise APIError(422, f"the run {path.name} cannot be loaded: {e}", "model", "model_unloadable") from None
        return Served(vocab, decoder)

    def close(self) -> None:
        for served in self.loaded.values():
            served.decoder.close()


def check_request(req: CompletionRequest, max_tokens: int) -> None:
    """The settings minigpt-serve refuses, each with the field it is about (400)."""
    if req.max_tokens > max_tokens:
        raise APIError(
            400,
            f"max_tokens {req.max_tokens} is more than this server's limit of {max_tokens} (minigpt-serve --max-tokens)",
            "max_tokens",
        )
    if isinstance(req.prompt, list) and len(req.prompt) != 1:
        raise APIError(400, f"prompt: one prompt per request (got a list of {len(req.prompt)})", "prompt")
    if len(req.stops) > MAX_STOPS or not all(req.stops):
        raise APIError(400, f"stop: at most {MAX_STOPS} strings, none empty", "stop")
    unsupported = {
        "logprobs": req.logprobs is not None,
        "suffix": bool(req.suffix),
        "best_of": (req.best_of or 1) > 1,
        "presence_penalty": req.presence_penalty != 0,
        "frequency_penalty": req.frequency_penalty != 0,
        "logit_bias": bool(req.logit_bias),
    }
    for name, set_ in unsupported.items():
        if set_:
            raise APIError(400, f"{name} is not supported by minigpt-serve; leave it out", name)


def encode(vocab: Vocab, prompt: str, allow_unk: bool) -> list[int]:
    """<eot> (a document start) and the prompt's tokens, as Engine.encode_prompt gives them; characters
    outside the run's vocabulary are named (400)."""
    unknown = vocab.outside(prompt)
    if unknown and not allow_unk:
        raise APIError(
            400,
            f"the prompt has {len(unknown)} character(s) outside the vocabulary of this run: {vocab.listed(unknown)}; "
            "remove them, "
            'or send "allow_unk": true to map them to <unk>',
            "prompt",
            "unknown_characters",
        )
    return [vocab.eot] + vocab.encode(prompt)


class Outbox:
    """Events from the decoding processes' reader threads into the event loop's queues, with one wake-up
    of the loop for all that a step sends (not one per row)."""

    def __init__(self):
        self.items: list[tuple[asyncio.Queue, tuple]] = []
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    def bind(self) -> None:
        """At start-up, in the event loop: the loop the queues belong to."""
        self.loop = asyncio.get_running_loop()

    def post(self, events: list[tuple[asyncio.Queue, tuple]]) -> None:
        with self.lock:
            waiting = bool(self.items)  # a wake-up is already on its way
            self.items += events
        if events and not waiting:
            try:
                self.loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop has closed: the server is stopping
                pass

    def _deliver(self) -> None:
        with self.lock:
            items, self.items = self.items, []
        for queue, event in items:
            queue.put_nowait(event)


@dataclass
class Pending:
    """A request being decoded: what its events arrive in, and how to cancel it."""

    events: asyncio.Queue
    cancel: Callable[[], None]
    n: int
    seed: int


def submit(served: Served, outbox: Outbox, req: CompletionRequest, ids: list[int]) -> Pending:
    """The request sent to its model's decoding process."""
    events = asyncio.Queue()
    seed = req.seed if req.seed is not None else secrets.randbits(63)
    spec = (ids, req.max_tokens, (req.temperature, req.top_k, req.top_p), seed, req.n, req.stop_at_eot, req.stops)
    try:
        i = served.decoder.submit(spec, events)
    except QueueFull as e:
        raise APIError(429, f"the server is full: {e}; try again shortly", None, "queue_full", **{"Retry-After": "1"})
    return Pending(events, lambda: served.decoder.cancel(i), req.n, seed)


async def batches(events: asyncio.Queue) -> AsyncIterator[list[tuple]]:
    """A request's events as they come, each time all that has arrived (under load, several tokens at once)."""
    while True:
        got = [await events.get()]
        while not events.empty():
            got.append(events.get_nowait())
        yield got
        if got[-1][0] in ("done", "error"):
            return


def create_app(
    paths: list[Path] | None = None,
    device: str = "auto",
    slots: int = 64,
    queue: int = 256,
    max_tokens: int = 4096,
    threads: int = 1,
) -> FastAPI:
    """The app over the run folders in `paths` (None: every run under runs/); slots: requests decoded
    together per model; queue: how many more may wait; threads: each decoding process's torch threads."""
    outbox = Outbox()
    models = Models(paths, outbox, device, slots, queue, threads)
    app = FastAPI(title="minigpt-serve", docs_url="/docs", redoc_url=None)
    app.state.models = models
    app.router.add_event_handler("startup", outbox.bind)
    app.router.add_event_handler("shutdown", models.close)
    install_errors(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            return JSONResponse(
                error_body(413, f"the request is {int(size):,} bytes, more than {MAX_BODY_BYTES:,}"), status_code=413
            )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("minigpt").joinpath("playground.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "loaded": {p.name: s.decoder.busy() for p, s in models.loaded.items()}}

    @app.get("/v1/models")
    def list_models() -> dict:
        data = [
            {"id": name, "object": "model", "created": int(read_run(p).modified), "owned_by": "minigpt"}
            for name, p in sorted(models.table().items())
        ]
        return {"object": "list", "data": data}

    @app.get("/api/runs")
    def runs() -> dict:
        return {"runs": [{"id": name, **read_run(p).to_json()} for name, p in sorted(models.table().items())]}

    @app.get("/api/runs/{name}/metrics")
    def metrics(name: str) -> dict:
        try:
            rows, _ = RunFolder(models.path(name)).metrics()
        except UserError as e:
            raise APIError(422, str(e), "name", "damaged_metrics") from None
        return {"id": name, "rows": rows}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        check_request(req, max_tokens)
        return await complete(await models.get(req.model), outbox, req, request)

    return app


async def complete(served: Served, outbox: Outbox, req: CompletionRequest, request: Request):
    """POST /v1/completions, once checked and its model loaded: the answer, whole or as a stream."""
    prompt = req.text
    ids = encode(served.vocab, prompt, req.allow_unk)
    pending = submit(served, outbox, req, ids)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time())}
    head |= {"model": req.model, "seed": pending.seed}
    echo = prompt if req.echo else ""
    if req.stream:
        usage = req.stream_options is not None and req.stream_options.include_usage
        return StreamingResponse(
            stream(pending, head, echo, len(ids), usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    return await whole(pending, head, echo, len(ids), request)


def usage_of(prompt_tokens: int, completion_tokens: int) -> dict:
    total = prompt_tokens + completion_tokens
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": total}


async def whole(pending: Pending, head: dict, echo: str, prompt_tokens: int, request: Request):
    """The non-streaming answer; a client that goes away first cancels its request."""
    texts, reasons, used = [echo] * pending.n, [None] * pending.n, 0

    async def collect():
        nonlocal used
        async for got in batches(pending.events):
            for event in got:
                if event[0] == "text":
                    texts[event[1]] += event[2]
                elif event[0] == "end":
                    reasons[event[1]], used = event[2], used + event[3]
                elif event[0] == "error":
                    raise APIError(422, event[1], None, "decoding_failed")

    async def gone():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(collect()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            pending.cancel()
            work.cancel()
    work.result()  # its APIError, if any
    choices = [
        {"text": t, "index": i, "logprobs": None, "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons))
    ]
    return {**head, "choices": choices, "usage": usage_of(prompt_tokens, used)}


async def stream(pending: Pending, head: dict, echo: str, prompt_tokens: int, usage: bool):
    """Server-sent events: one chunk per choice for what arrived together, the finish reason in the
    chunk that ends a choice, then [DONE]. Closed early (a client gone), it cancels the request."""

    start = "data: " + json.dumps(head)[:-1] + ', "choices": [{"text": '  # the fields every chunk repeats, once

    def chunk(index: int, text: str, reason: str | None = None) -> str:
        return f'{start}{json.dumps(text)}, "index": {index}, "logprobs": null, "finish_reason": {json.dumps(reason)}}}]}}\n\n'

    used = 0
    try:
        if echo:
            for i in range(pending.n):
                yield chunk(i, echo)
        async for got in batches(pending.events):
            out, texts = [], {}
            for event in got:
                if event[0] == "text":
                    texts[event[1]] = texts.get(event[1], "") + event[2]
                elif event[0] == "end":
                    out.append(chunk(event[1], texts.pop(event[1], ""), event[2]))
                    used += event[3]
                elif event[0] == "error":
                    out.append(f"data: {json.dumps(error_body(422, event[1], None, 'decoding_failed'))}\n\n")
            yield "".join([chunk(i, t) for i, t in texts.items()] + out)
        if usage:
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage_of(prompt_tokens, used)})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        pending.cancel()  # a no-op once it is done


def install_errors(app: FastAPI) -> None:
    """Every error in OpenAI's shape: ours, FastAPI's validation (broken JSON, a field out of range: 400),
    Starlette's (no such route: 404; wrong method: 405), and anything unforeseen (500, no traceback)."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError):
        return JSONResponse(error_body(e.status, e.message, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        if first.get("type") == "json_invalid":
            message, param = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'cannot parse')})", None
        else:
            loc = [str(part) for part in first.get("loc", ()) if part != "body"]
            param = loc[0] if loc else None
            message = f"{'.'.join(loc) or 'the body'}: {first.get('msg', 'invalid')}"
            if "input" in first and loc:
                message += f" (got {json.dumps(first['input'], default=str)[:80]})"
        return JSONResponse(error_body(400, message, param, "invalid_value"), status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = {404: f"no such endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}
        body = error_body(e.status_code, message.get(e.status_code, str(e.detail)))
        return JSONResponse(body, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unforeseen(request: Request, e: Exception):
        return JSONResponse(error_body(500, f"internal error ({type(e).__name__}: {e})"), status_code=500)


def served_runs(paths: list[Path] | None) -> list[str]:
    """The names minigpt-serve will serve, checked once at start-up: every folder given exists, no two share a name."""
    for p in paths or []:
        if not Path(p).is_dir():
            raise UserError(f"{p}: no such folder", "name run folders written by minigpt-train, or a folder of them")
    seen: dict[str, Path] = {}
    for p in run_folders(paths):
        if p.name in seen:
            raise UserError(
                f"two runs are named {p.name} ({seen[p.name]} and {p}): a model is named by its folder",
                "serve one of them, or rename a folder",
            )
        seen[p.name] = p
    if not seen:
        raise UserError(
            f"no run folders in {', '.join(map(str, paths or []))}", "train one first (minigpt-train --preset tiny)"
        )
    return list(seen)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear message."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them (its default backlog)
    except OSError as e:
        hint = (
            "pick another with --port (0: any free one), or stop what holds it"
            if e.errno == errno.EADDRINUSE
            else ("give an address of this machine with --host (127.0.0.1: this machine only)")
        )
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}", hint) from None
    return sock


def run_server(sock: socket.socket, paths: list[Path] | None, names: list[str], **options) -> None:
    """Serve until Ctrl-C (uvicorn handles it: requests under way get a few seconds to finish)."""
    import uvicorn

    Server = _uvicorn_server()
    host, port = sock.getsockname()[:2]
    app = create_app(paths, **options)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"minigpt-serve: {len(names)} run(s) ({', '.join(names[:8])}{' ...' if len(names) > 8 else ''}) at "
        f"http://{shown}:{port}/ (the playground; the API under /v1); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3))
    signals.say_first("{signal}: stopping the server (Ctrl-C again to stop at once)")
    server.run(sockets=[sock])
    if server.stopped_by:
        raise Interrupted(server.stopped_by)


def _uvicorn_server():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, Ctrl-C and SIGTERM left to minigpt's signals.py: the first stops the server
        (uvicorn's graceful shutdown), a second exits at once, and the command exits 130 or 143."""

        stopped_by: int | None = None

        @contextmanager
        def capture_signals(self):
            def stop(signum, frame):
                self.stopped_by, self.should_exit = self.stopped_by or signum, True

            before = {sig: signal.signal(sig, stop) for sig in signals.SIGNALS}
            try:
                yield
            finally:
                for sig, handler in before.items():
                    signal.signal(sig, handler)

    return Server
