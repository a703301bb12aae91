"""A stand-in for the service's HTTP front (docs/contracts.md), for the client tests.

It speaks the contract's routes and error bodies exactly, serves one genome ``calc`` from
plain functions (no workers), splits requests between a blue and a green version by a
weight, reports each served request to an ``on_request`` callable, and counts what it
saw, so a test can compare a client's report with the server's own count.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

GENOME = "calc"
VERSIONS = {"blue": "v-blue-1", "green": "v-green-2"}


def _boom() -> None:
    raise ValueError("boom on purpose")


async def _nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


#: name -> (argument types, example, function); "?" marks an optional argument
FUNCTIONS: dict[str, tuple[dict[str, str], dict[str, Any], Callable[..., Any]]] = {
    "add": ({"a": "int", "b": "int"}, {"a": 2, "b": 3}, lambda a, b: a + b),
    "echo": ({"text": "str", "times": "int?"}, {"text": "hi"}, lambda text, times=1: text * times),
    "boom": ({}, {}, _boom),
    "nap": ({"seconds": "float"}, {"seconds": 0.001}, _nap),
}
TYPES = {"int": int, "str": str, "float": (int, float)}


class StandInFront:
    """The contract's routes on 127.0.0.1, in a thread with its own event loop."""

    def __init__(
        self,
        node: str = "n1",
        *,
        green_weight: float = 0.0,
        ready: bool = True,
        on_request: Callable[[str, str, str, str, float, bool], None] | None = None,
        render: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.node, self.green_weight, self.ready = node, green_weight, ready
        self.on_request, self.render = on_request, render
        #: (function, status) -> requests answered
        self.seen: Counter[tuple[str, int]] = Counter()
        self.request_ids: list[str] = []
        self._served = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.url = ""

    def __enter__(self) -> StandInFront:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/{genome}", self._describe)
        app.router.add_post("/v1/{genome}/{function}", self._call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _health(self, request: web.Request) -> web.Response:
        blue, green = VERSIONS["blue"], VERSIONS["green"] if self.green_weight else None
        genomes = {GENOME: {"blue": blue, "green": green, "weight": self.green_weight}}
        return web.json_response({"node": self.node, "genomes": genomes})

    async def _metrics(self, request: web.Request) -> web.Response:
        if self.render is None:
            return web.Response(status=404, text="no metrics")
        body, content_type = self.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _describe(self, request: web.Request) -> web.Response:
        if request.match_info["genome"] != GENOME:
            return _error(404, f"no genome {request.match_info['genome']!r}", "genomes: calc")
        functions = {n: {"args": a, "example": e} for n, (a, e, _) in FUNCTIONS.items()}
        body = {"genome": GENOME, "version": VERSIONS["blue"], "functions": functions}
        return web.json_response(body)

    async def _call(self, request: web.Request) -> web.Response:
        genome, function = request.match_info["genome"], request.match_info["function"]
        answer = await self._answer(request, genome, function)
        self.seen[(function, answer.status)] += 1
        echoed = request.headers.get("X-Tars-Request")
        if echoed is not None:
            answer.headers["X-Tars-Request"] = echoed
            self.request_ids.append(echoed)
        return answer

    async def _answer(self, request: web.Request, genome: str, function: str) -> web.Response:
        if genome != GENOME:
            return _error(404, f"no genome {genome!r} on {self.node}", "genomes served: calc")
        if function not in FUNCTIONS:
            return _error(
                400,
                f"{genome} serves no function {function!r}",
                f"functions: {', '.join(FUNCTIONS)}",
            )
        try:
            args = json.loads(await request.read())
        except ValueError as exc:
            return _error(400, f"the body is not JSON: {exc}", "send a JSON object of arguments")
        if not isinstance(args, dict):
            return _error(400, "the body is not a JSON object", "send a JSON object of arguments")
        types, _, func = FUNCTIONS[function]
        problem = _check(types, args)
        if problem:
            wanted = ", ".join(f"{k}: {v}" for k, v in types.items()) or "none"
            return _error(400, problem, f"{function} takes {wanted}")
        if not self.ready:
            return _error(
                503, f"no worker of {genome} is ready on {self.node}", "retry in a moment"
            )
        self._served += 1
        colour = "green" if (self._served % 10) >= 10 - self.green_weight * 10 else "blue"
        started = time.perf_counter()
        try:
            result = func(**args)
            if asyncio.iscoroutine(result):
                result = await result
        except Exception as exc:
            self._report(genome, function, colour, started, True)
            body = {"error": f"{type(exc).__name__}: {exc}", "kind": "exception"}
            return web.json_response(body, status=500)
        self._report(genome, function, colour, started, False)
        return web.json_response({"result": result, "version": VERSIONS[colour], "colour": colour})

    def _report(self, genome: str, function: str, colour: str, started: float, error: bool) -> None:
        if self.on_request is not None:
            seconds = time.perf_counter() - started
            self.on_request(genome, function, VERSIONS[colour], colour, seconds, error)


def _check(types: dict[str, str], args: dict[str, Any]) -> str | None:
    extra = sorted(set(args) - set(types))
    if extra:
        return f"unexpected argument(s) {', '.join(extra)}"
    for name, kind in types.items():
        if name not in args:
            if kind.endswith("?"):
                continue
            return f"missing argument {name}"
        if not isinstance(args[name], TYPES[kind.rstrip("?")]) or isinstance(args[name], bool):
            return f"argument {name} is not {kind.rstrip('?')}"
    return None


def _error(status: int, error: str, hint: str) -> web.Response:
    return web.json_response({"error": error, "hint": hint}, status=status)
