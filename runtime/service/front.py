"""The node's HTTP front (aiohttp): the contract's routes, JSON in and out.

``POST /v1/{genome}/{function}`` (a JSON object of keyword arguments) → 200 ``{"result",
"version", "colour"}``; 400 bad JSON, missing/extra/ill-typed argument, unknown
function; 404 unknown genome; 413 a body over ``max_body``; 500 the genome raised
(``{"error": "ValueError: ...", "kind": "exception"}``); 503 no worker ready; 504 no
answer in time. ``GET /v1/health``, ``GET /v1/{genome}``, ``GET /metrics`` (the
``render`` callable's body and content type), and ``/dashboard…``, handed to the
node's web dashboard when it has one (docs/dashboard.md). ``X-Tars-Request`` is echoed back.

The server runs on its own thread with its own event loop. A call never blocks the
loop: the router hands it to a worker without waiting (non-blocking pipe writes), and
the worker's reader thread resolves the request's future through
``call_soon_threadsafe``. Every routed call is reported to ``on_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from evolution.errors import BadCallError, ServiceError, TarsError, UnknownGenomeError
from runtime.service.loop_thread import serve_on_thread
from runtime.service.router import Router
from runtime.service.worker import Reply

__all__ = ["MAX_BODY", "Front", "Mounted", "OnRequest", "Render"]

#: the largest request body accepted (bigger: 413)
MAX_BODY = 4 << 20
OnRequest = Callable[[str, str, str, str, float, bool], None]
Render = Callable[[], tuple[bytes, str]]


class Mounted(Protocol):
    """What the front hands ``/dashboard…`` to (``runtime.dashboard.Dashboard``)."""

    async def handle(self, request: web.Request) -> web.StreamResponse: ...

    def close(self) -> None: ...


_STATUS = {"exception": 500, "result": 500, "crash": 500, "unavailable": 503, "timeout": 504}
_HINTS = {
    "unavailable": "the genome's workers are starting or restarting: retry shortly",
    "timeout": "the call took longer than the service's call timeout",
    "crash": "the worker running this call died twice; the call was not retried again",
    "result": "the function's answer is not JSON-like (msgpack could not carry it)",
}
_HEADER = "X-Tars-Request"


def _empty_render() -> tuple[bytes, str]:
    return b"", "text/plain; version=0.0.4; charset=utf-8"


def _json(status: int, body: dict[str, Any], request_id: str | None) -> web.Response:
    headers = {_HEADER: request_id} if request_id is not None else None
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json",
        headers=headers,
    )  # fmt: skip


def _error(status: int, exc: TarsError, request_id: str | None) -> web.Response:
    return _json(status, {"error": exc.message, "hint": exc.hint or ""}, request_id)


class Front:
    """The HTTP server of one node; :meth:`start` returns once it listens."""

    def __init__(
        self,
        router: Router,
        node_id: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_request: OnRequest | None = None,
        render: Render | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        self.router, self.node_id, self.host, self.port = router, node_id, host, port
        self.on_request = on_request
        self.render = render or _empty_render
        self.max_body = max_body
        #: the node's web dashboard, answering ``/dashboard…`` (set before or after start)
        self.dashboard: Mounted | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._loop_thread = -1
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle --

    def start(self) -> None:
        """Bind and serve on a thread of its own; a taken port raises ServiceError here."""
        try:
            self._loop, self._thread = serve_on_thread(self._listen, f"front-{self.node_id}")
        except Exception as exc:
            raise ServiceError(
                f"{self.node_id}: cannot serve HTTP on {self.host}:{self.port}: {exc}",
                hint="give the node a free `http` port in cluster.yml (or leave it out)",
            ) from exc
        self._loop_thread = self._thread.ident or -1
        if self.router.loop is None:
            self.router.loop = self._loop  # workers started from now on reply on this loop

    async def _listen(self) -> None:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._errors])
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/dashboard{tail:.*}", self._dashboard)
        app.router.add_get("/v1/{genome}", self._describe)
        app.router.add_post("/v1/{genome}/{function}", self._call)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def stop(self) -> None:
        """Stop listening, end the loop, join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if self.dashboard is not None:  # its live streams end now, not at the shutdown timeout
            loop.call_soon_threadsafe(self.dashboard.close)
        if self._runner is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):  # stopping anyway
                done.result(timeout=10)
        if self.router.loop is loop:
            self.router.loop = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    # -- handlers --

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """aiohttp's own errors (404 no route, 405, 413) as JSON with a hint."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            hints = {
                404: "routes: POST /v1/{genome}/{function}, GET /v1/{genome}, GET /v1/health, GET /metrics",
                405: "calls are POST /v1/{genome}/{function} with a JSON object body",
                413: f"send at most {self.max_body} bytes",
            }
            body = {"error": exc.reason, "hint": hints.get(exc.status, "")}
            return _json(exc.status, body, request.headers.get(_HEADER))

    async def _health(self, request: web.Request) -> web.Response:
        body = {"node": self.node_id, "genomes": self.router.health()}
        return _json(200, body, request.headers.get(_HEADER))

    async def _dashboard(self, request: web.Request) -> web.StreamResponse:
        if self.dashboard is None:
            raise web.HTTPNotFound(reason="this node serves no dashboard")
        return await self.dashboard.handle(request)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _describe(self, request: web.Request) -> web.Response:
        rid = request.headers.get(_HEADER)
        try:
            return _json(200, self.router.describe(request.match_info["genome"]), rid)
        except UnknownGenomeError as exc:
            return _error(404, exc, rid)

    async def _call(self, request: web.Request) -> web.Response:
        rid = request.headers.get(_HEADER)
        genome, function = request.match_info["genome"], request.match_info["function"]
        raw = await request.read()
        try:
            kwargs = json.loads(raw) if raw else {}
        except ValueError as exc:
            return _error(400, BadCallError(f"the body is not JSON: {exc}",
                                            hint="send a JSON object of keyword arguments"), rid)  # fmt: skip
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()

        def done(reply: Reply) -> None:
            if threading.get_ident() == self._loop_thread:  # a worker read on this loop
                _resolve(future, reply)
            else:
                loop.call_soon_threadsafe(_resolve, future, reply)

        started = time.perf_counter()
        try:
            self.router.call(genome, function, kwargs, done)
        except UnknownGenomeError as exc:
            return _error(404, exc, rid)
        except BadCallError as exc:
            return _error(400, exc, rid)
        except ServiceError as exc:
            return _error(503, exc, rid)
        reply = await future
        return self._answer(genome, function, reply, time.perf_counter() - started, rid)

    def _answer(
        self, genome: str, function: str, reply: Reply, seconds: float, rid: str | None
    ) -> web.Response:
        if reply.ok:
            try:
                body = json.dumps(
                    {"result": reply.result, "version": reply.version, "colour": reply.colour},
                    allow_nan=False,
                ).encode()
            except (TypeError, ValueError) as exc:
                reply = reply._replace(ok=False, kind="result", error=f"not JSON: {exc}")
            else:
                self._report(genome, function, reply, seconds)
                headers = {_HEADER: rid} if rid is not None else None
                return web.Response(body=body, content_type="application/json", headers=headers)
        self._report(genome, function, reply, seconds)
        status = _STATUS.get(reply.kind, 500)
        error: dict[str, Any] = {"error": reply.error, "kind": reply.kind}
        if reply.kind in _HINTS:
            error["hint"] = _HINTS[reply.kind]
        error.update(version=reply.version, colour=reply.colour)
        return _json(status, error, rid)

    def _report(self, genome: str, function: str, reply: Reply, seconds: float) -> None:
        if self.on_request is not None:
            self.on_request(genome, function, reply.version, reply.colour, seconds, not reply.ok)


def _resolve(future: asyncio.Future[Reply], reply: Reply) -> None:
    if not future.done():
        future.set_result(reply)
