"""What every request of `vlmt serve` passes through, outermost first:

- `Observe`: one structured access-log line per request (JSON, logger `vlmt.access`) and the
  Prometheus metrics served at `GET /metrics` (requests, latency, errors by status, queue depth);
- `KeyCheck`: with an API key, `/api/*` and `/metrics` need `Authorization: Bearer KEY` (only
  `/api/health` and `/api/ready` stay open, for probes); the page has its own login (Gradio's);
- `UploadCheck`: a picture the page uploads passes the API's checks (size, format allow-list,
  pixels) before Gradio stores it;
- `Loading`: the server answers while its models load: `/api/health` says so, `/api/ready` and
  everything else answer 503 until the app is built.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from typing import Any, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlmt.serve.inputs import InputError, Limits, decode_image

ACCESS_LOG = logging.getLogger("vlmt.access")
OPEN_PATHS = ("/api/health", "/api/ready")
API_ROUTES = ("answer", "ground", "retrieve", "recognize", "choose", "health", "ready", "docs", "openapi.json")
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")


def route_of(path: str) -> str:
    """A bounded label for a path (metrics must not grow with the paths clients invent)."""
    if path.startswith("/api/"):
        name = path[len("/api/"):].rstrip("/")
        return f"/api/{name}" if name in API_ROUTES else "/api/other"
    if path == "/metrics":
        return path
    if path.rstrip("/") in UPLOAD_PATHS:
        return "page_upload"
    return "page"


async def send_json(send: Send, body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> None:
    response = JSONResponse(body, status_code=status, headers=headers)
    await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app, so tests can build many)."""

    def __init__(self, queue_depth: Callable[[], float] | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("vlmt_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.errors = Counter("vlmt_errors", "HTTP requests answered with a 4xx or 5xx status", ["route", "status"],
                              registry=self.registry)
        self.latency = Histogram("vlmt_request_seconds", "Time from request to the end of the answer", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.in_flight = Gauge("vlmt_in_flight", "HTTP requests being answered", registry=self.registry)
        self.queue = Gauge("vlmt_queue_depth", "Model calls waiting for a worker", registry=self.registry)
        self.queue.set_function(queue_depth or (lambda: 0.0))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Observe:
    """Access log and metrics around every HTTP request; `GET /metrics` answered here (with the
    API key when the server has one)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, *, key: str | None = None):
        self.app, self.metrics, self.key = app, metrics, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path, method = scope["path"], scope["method"]
        route = route_of(path)
        status = 500
        sent = 0

        async def watched(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if path == "/metrics" and self.key and not authorized(scope, self.key):
                await refuse(watched)
            elif path == "/metrics" and method == "GET":
                body, kind = self.metrics.render()
                await Response(body, media_type=kind)(scope, receive, watched)
            else:
                await self.app(scope, receive, watched)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - start
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            if status >= 400:
                self.metrics.errors.labels(route, str(status)).inc()
            client = scope.get("client") or ("-", 0)
            ACCESS_LOG.info(json.dumps({"time": round(time.time(), 3), "client": client[0], "method": method,
                                        "path": path[:200], "status": status, "ms": round(seconds * 1000, 1),
                                        "bytes": sent}))


def key_matches(given: str | None, key: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def authorized(scope: Scope, key: str) -> bool:
    """Whether the request carries `Authorization: Bearer KEY`."""
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and key_matches(token.strip(), key)


async def refuse(send: Send) -> None:
    await send_json(send, {"error": "this server needs an API key: send the header 'Authorization: Bearer KEY'"},
                    401, headers={"WWW-Authenticate": "Bearer"})


class KeyCheck:
    """`Authorization: Bearer KEY` on the API and the metrics (the probes' two routes stay open)."""

    def __init__(self, app: ASGIApp, key: str):
        self.app, self.key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        guarded = path.startswith("/api/") or path == "/api" or path == "/metrics"
        if scope["type"] != "http" or not guarded or path.rstrip("/") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if authorized(scope, self.key):
            return await self.app(scope, receive, send)
        await refuse(send)


class UploadCheck:
    """The page's upload route takes pictures only, by the API's rules: the body is read (bounded
    by the body limit outside), each file decoded by `decode_image`, and only then handed to
    Gradio; anything else is answered with the API's 4xx JSON error and never stored."""

    def __init__(self, app: ASGIApp, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") not in UPLOAD_PATHS:
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self._check(Request(scope, replay))
        except InputError as e:
            return await send_json(send, {"error": str(e)}, e.status)
        sent = False

        async def once() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, once, send)

    async def _check(self, request: Request) -> None:
        from starlette.datastructures import UploadFile

        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InputError("upload a picture as a multipart form", status=415)
        try:
            form = await request.form(max_files=4, max_fields=8)
        except Exception as e:  # malformed multipart bodies
            raise InputError(f"the upload could not be read: {e}") from None
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise InputError("the upload holds no file")
        try:
            for upload in files:
                decode_image(await upload.read(self.limits.max_upload_bytes + 1), self.limits, field="files")
        finally:
            await form.close()


class Loading:
    """The server while it loads its models: `/api/health` answers (alive, loading), `/api/ready`
    and every other request 503 with a JSON error, until `build()` (run in a thread at startup)
    returns the app; then that app answers everything, its own lifespan run as if it had started
    with the server."""

    def __init__(self, build: Callable[[], ASGIApp], *, version: str, on_error: Callable[[BaseException], None]):
        self.build, self.version, self.on_error = build, version, on_error
        self.app: ASGIApp | None = None
        self.failed: str | None = None
        self._lifespan: tuple[asyncio.Queue[Message], asyncio.Task[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._serve_lifespan(receive, send)
        if self.app is not None:
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        state = "failed" if self.failed else "loading"
        if path == "/api/health":
            return await send_json(send, {"status": state, "version": self.version, "ready": False,
                                          **({"error": self.failed} if self.failed else {})}, 200)
        await send_json(send, {"error": f"the server is {state} its models" if not self.failed else
                               f"the models could not be loaded: {self.failed}"}, 503, headers={"Retry-After": "5"})

    async def _serve_lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                threading.Thread(target=self._load, args=(loop,), name="vlmt-load", daemon=True).start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._lifespan is not None:
                    queue, task = self._lifespan
                    await queue.put({"type": "lifespan.shutdown"})
                    await asyncio.wait_for(task, timeout=10)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            app = self.build()
            asyncio.run_coroutine_threadsafe(self._start(app), loop).result()
        except BaseException as e:  # the server stays up to say so; the reason (it may name paths) goes to the log
            self.failed = f"{type(e).__name__}; the server's log has the details"
            self.on_error(e)

    async def _start(self, app: ASGIApp) -> None:
        """Run `app`'s lifespan startup; its shutdown waits for the server's."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        started = asyncio.get_running_loop().create_future()

        async def send(message: Message) -> None:
            if message["type"].startswith("lifespan.startup") and not started.done():
                started.set_result(message["type"])

        async def run() -> None:
            try:
                await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)
            finally:
                if not started.done():  # an app without lifespan support
                    started.set_result("lifespan.startup.complete")

        await queue.put({"type": "lifespan.startup"})
        task = asyncio.create_task(run())
        outcome = await started
        if outcome != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start ({outcome})")
        self._lifespan = (queue, task)
        self.app = app
