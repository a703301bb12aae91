"""Benchmark of the service's HTTP front against a bare aiohttp server and an in-process call.

What a caller pays for TARS's front: a call through ``runtime.service.front.Front`` and
the router to a jailed worker process, against (a) calling the same function in this
process and (b) a bare aiohttp server of the same library answering the same JSON body
(``{"result", "version", "colour"}``) by calling the function on its own loop.  The
front runs with the node's metrics attached (``Metrics.on_request``), as a node does.

Both servers run in this process (as a node's front does) and are driven by the same
client in a child process (as a real caller is), one after the other in alternating rounds
(the machine is shared and noisy, so each ratio is taken within a round and the median
of the rounds is reported):

1. round trip, one request at a time on one keep-alive connection (``http.client``):
   p50 and p99 per server, and the in-process call's time;
2. throughput, 16 requests in flight (``runtime.service.load.drive``, closed loop);
3. where the difference goes: the router alone (``Router.call``, no HTTP: the worker
   hop) and a bare server that hands each call to a thread and back through
   ``call_soon_threadsafe`` (the front's pattern with no process: ``handoff_p50_us``);
4. the floors, in the same rounds as 1: a bare server whose handler sends each call as a
   frame over a pipe to a child and awaits the answer on its loop, as the front does
   with its workers, the child an echo (``pipe_echo``: the process hop alone) or
   ``worker_main.py`` run unjailed (``pipe_worker``: the worker process as it is, four
   threads taking frames in turn, with no router, pool, jail or front code;
   ``pipe_worker_1thread``: the same with one thread, no hand-over between threads); the
   front minus ``pipe_worker`` is what the node's own code and the jail add.

The front starts first and the pool after it, as a node does, so its workers' replies
are read on the front's loop (before, this benchmark started the pool first and so
measured reader threads, a path no node takes).

Goal (issue 11): the front within 1.5x of the bare server.  Also printed: what
``Metrics.on_request`` costs per call, in-process.

The front, router and workers belong to the service's part of the tree; where they are
missing this prints one JSON object saying so and exits 0.

Usage: ``python bench/bench_front.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from evolution.latency import percentile  # noqa: E402
from runtime.metrics import Metrics  # noqa: E402
from runtime.service.load import Request, drive  # noqa: E402

GENOME = "benchsvc"
ARGS = {"a": 2, "b": 40}
MANIFEST = """\
[genome]
name = "benchsvc"
description = "one pure function, for bench/bench_front.py"
sources = ["benchsvc/*.py"]

[commands]
test = ["python", "-c", "pass"]
bench = ["python", "-c", "pass"]

[fitness]
metric = "seconds"
direction = "minimize"

[service]
workers = 2

[service.functions.add]
call = "benchsvc.calc:add"
args = { a = "int", b = "int" }
example = { a = 1, b = 2 }
"""
CALC = "def add(a, b):\n    return a + b\n"
TREE = {"genome.toml": MANIFEST, "benchsvc/__init__.py": "", "benchsvc/calc.py": CALC}


def add(a: int, b: int) -> int:
    """The same function the worker runs, for the in-process and bare-server baselines."""
    return a + b


ECHO = "import os\nwhile (data := os.read(0, 65536)):\n    os.write(1, data)\n"


class BareServer:
    """An aiohttp server on its own loop and thread that answers the contract's body.

    ``handoff``: the handler hands the call to another thread and awaits a future that
    thread resolves with ``call_soon_threadsafe``, as the front does with its workers'
    reader threads, but with no process in between: what the hand-off alone costs.

    ``child``: the handler sends the call as a frame (``runtime.service.frames``) to this
    child process's stdin and awaits its answer, read on the loop (``add_reader``) as the
    front reads its workers: the floor under any front with a process hop. An echo child
    sends the frame back (the sum is then taken here); ``worker_main.py`` run unjailed
    answers it as a worker does.
    """

    def __init__(self, *, handoff: bool = False, child: list[str] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: Any = None
        self.url = ""
        self.handoff = handoff
        self.work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.helper = threading.Thread(target=self._helper, daemon=True)
        self.child = child
        self.proc: subprocess.Popen[bytes] | None = None
        self.waiting: dict[int, asyncio.Future[int]] = {}
        self.ids = 0

    def __enter__(self) -> BareServer:
        from runtime.service.frames import FrameReader

        if self.child is not None:
            self.proc = subprocess.Popen(self.child, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert self.proc.stdout is not None
            os.set_blocking(self.proc.stdout.fileno(), False)
            self.frames = FrameReader(self.proc.stdout.fileno(), 1 << 20, int_keys=True)
        self.thread.start()
        self.helper.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def _readable(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with contextlib.suppress(BlockingIOError):
            for message in self.frames.feed(os.read(self.proc.stdout.fileno(), 1 << 16)):
                result = message["result"] if "result" in message else add(**message["kwargs"])
                self.waiting.pop(message["id"]).set_result(result)

    def _helper(self) -> None:
        while (job := self.work.get()) is not None:
            job()

    async def _result(self, kwargs: dict[str, Any]) -> int:
        if self.proc is not None:
            from runtime.service.frames import encode

            assert self.proc.stdin is not None
            self.ids += 1
            future = self.waiting[self.ids] = self.loop.create_future()
            call = {"op": "call", "id": self.ids, "module": "benchsvc.calc", "function": "add"}
            os.write(self.proc.stdin.fileno(), encode({**call, "kwargs": kwargs}))
            return await future
        if not self.handoff:
            return add(**kwargs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self.work.put(lambda: loop.call_soon_threadsafe(future.set_result, add(**kwargs)))
        return await future

    async def _start(self) -> None:
        from aiohttp import web

        if self.proc is not None:
            assert self.proc.stdout is not None
            self.loop.add_reader(self.proc.stdout.fileno(), self._readable)

        async def call(request: web.Request) -> web.Response:
            kwargs = json.loads(await request.read())
            result = await self._result(kwargs)
            body = {"result": result, "version": "bare", "colour": "blue"}
            return web.Response(body=json.dumps(body).encode(), content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/{genome}/{function}", call)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.work.put(None)
        self.helper.join(10)
        if self.proc is not None:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.close()
            self.proc.wait(10)
            self.proc.stdout.close()


def round_trips(url: str, count: int) -> list[float]:
    """``count`` sequential calls on one keep-alive connection; each one's seconds."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps(ARGS).encode()
    headers = {"Content-Type": "application/json"}
    times: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            conn.request("POST", f"/v1/{GENOME}/add", body, headers)
            reply = conn.getresponse()
            data = reply.read()
            times.append(time.perf_counter() - started)
            if reply.status != 200 or json.loads(data)["result"] != 42:
                raise RuntimeError(f"{url} answered {reply.status}: {data[:200]!r}")
    finally:
        conn.close()
    return times


def in_process(count: int) -> float:
    """Seconds per call of the function itself, with the JSON a server would do."""
    started = time.perf_counter()
    for _ in range(count):
        kwargs = json.loads(json.dumps(ARGS))
        json.dumps({"result": add(**kwargs), "version": "v", "colour": "blue"})
    return (time.perf_counter() - started) / count


def on_request_cost(count: int) -> float:
    """Seconds per ``Metrics.on_request`` call (the front's per-request metrics)."""
    metrics = Metrics("bench")
    started = time.perf_counter()
    for n in range(count):
        metrics.on_request(GENOME, "add", "v1", "blue", 0.001, n % 50 == 0)
    return (time.perf_counter() - started) / count


def router_calls(router: Any, count: int) -> list[float]:
    """``count`` sequential calls straight to the router (no HTTP): the worker hop alone."""
    times: list[float] = []
    for _ in range(count):
        answered = threading.Event()
        replies: list[Any] = []

        def done(
            reply: Any, answered: threading.Event = answered, replies: list[Any] = replies
        ) -> None:
            replies.append(reply)
            answered.set()

        started = time.perf_counter()
        router.call(GENOME, "add", dict(ARGS), done)
        answered.wait(30)
        times.append(time.perf_counter() - started)
        if not replies or not replies[0].ok or replies[0].result != 42:
            raise RuntimeError(f"the router answered {replies[:1]}")
    return times


def start_front(workdir: Path, metrics: Metrics) -> tuple[Any, Any] | str:
    """The service's router and front serving TREE, or why they cannot run here."""
    try:
        from runtime.sandbox import Sandbox
        from runtime.service.front import Front
        from runtime.service.router import Router
    except ImportError as exc:
        return f"the service's front is not in this tree ({exc})"
    router = Router(Sandbox(workdir / "sandbox"))
    front = Front(router, "bench", on_request=metrics.on_request, render=metrics.render)
    try:  # as a node does it: the front first, so the workers' replies are read on its loop
        front.start()
        router.add(GENOME, "bench-v1", TREE, ready_timeout=60)
    except Exception:
        front.stop()
        router.stop()
        raise
    return router, front


def run(quick: bool) -> dict[str, Any]:
    rounds, calls, seconds = (3, 300, 1.0) if quick else (5, 1000, 3.0)
    metrics = Metrics("bench")
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        started = start_front(Path(tmp), metrics)
        if isinstance(started, str):
            return {"bench": "front", "skipped": started}
        router, front = started
        try:
            worker = [sys.executable, "-I", str(HERE.parent / "runtime/service/worker_main.py"),
                      "--version", "bench-v1", "--root", str(_tree(Path(tmp))), "--threads"]  # fmt: skip
            with (
                BareServer() as bare,
                BareServer(handoff=True) as handoff,
                BareServer(child=[sys.executable, "-c", ECHO]) as echo,
                BareServer(child=[*worker, "4"]) as unjailed,
                BareServer(child=[*worker, "1"]) as unjailed1,
            ):
                floors = {
                    "pipe_echo": echo.url,
                    "pipe_worker": unjailed.url,
                    "pipe_worker_1thread": unjailed1.url,
                }
                out = measure(front.url, bare.url, floors, rounds, calls, seconds, metrics)
                times = sorted(client("rtt", handoff.url, calls))
                out["handoff_p50_us"] = round(percentile(times, 0.5) * 1e6, 1)
            hop = sorted(router_calls(router, calls))
            out["router_p50_us"] = round(percentile(hop, 0.5) * 1e6, 1)
            out["router_p99_us"] = round(percentile(hop, 0.99) * 1e6, 1)
            return out
        finally:
            front.stop()
            router.stop()


def _tree(tmp: Path) -> Path:
    """TREE written out for the unjailed worker_main of the ``pipe_worker`` floor."""
    root = tmp / "unjailed" / "bench-v1"
    for rel, text in TREE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def measure(
    front: str,
    bare: str,
    floors: dict[str, str],
    rounds: int,
    calls: int,
    seconds: float,
    metrics: Metrics,
) -> dict[str, Any]:
    """Alternating rounds of both servers (and the floors' round trips); per-round ratios,
    medians reported."""
    for url in (front, bare, *floors.values()):  # warm: connections, the first imports
        client("rtt", url, 50)
    rows: list[dict[str, float]] = []
    for index in range(rounds):
        order: list[tuple[str, str]] = [("front", front), ("bare", bare), *floors.items()]
        if index % 2:
            order.reverse()
        row: dict[str, float] = {}
        for name, url in order:
            times = sorted(client("rtt", url, calls))
            row[f"{name}_p50"] = percentile(times, 0.5)
            row[f"{name}_p99"] = percentile(times, 0.99)
        for name, url in order:
            if name in ("front", "bare"):
                row[f"{name}_rps"] = client("rps", url, seconds)
        rows.append(row)
    return summary(rows, calls, metrics, list(floors))


def client(mode: str, url: str, amount: float) -> Any:
    """The caller runs in a process of its own, as a real caller does: in this one its
    threads would take the GIL from the servers' threads and bias the comparison."""
    argv = [sys.executable, __file__, "--client", mode, url, str(amount)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} client failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def client_main(mode: str, url: str, amount: float) -> None:
    """The child's side: round-trip times, or throughput with 16 in flight."""
    if mode == "rtt":
        print(json.dumps(round_trips(url, int(amount))))
        return
    report = drive([url], [Request(GENOME, "add", ARGS)], 0.0, 16, amount)
    if report.ok != report.sent:
        raise RuntimeError(f"{url}: {report.errors} of {report.sent} failed")
    print(json.dumps(report.throughput))


def summary(
    rows: list[dict[str, float]], calls: int, metrics: Metrics, floors: list[str]
) -> dict[str, Any]:
    def median(key: str | Callable[[dict[str, float]], float]) -> float:
        pick = key if callable(key) else (lambda row: row[key])
        return statistics.median(pick(row) for row in rows)

    def over_bare(name: str) -> float:
        return statistics.median(row[f"{name}_p50"] / row["bare_p50"] for row in rows)

    local = in_process(20_000)
    ratio_p50 = median(lambda r: r["front_p50"] / r["bare_p50"])
    ratio_rps = median(lambda r: r["bare_rps"] / r["front_rps"])
    served = sum(t.requests for c in metrics.figures().get(GENOME, {}).values() for t in c.values())
    return {
        "bench": "front",
        "rounds": len(rows),
        "calls_per_round": calls,
        "in_process_us": round(local * 1e6, 2),
        "bare_p50_us": round(median("bare_p50") * 1e6, 1),
        "bare_p99_us": round(median("bare_p99") * 1e6, 1),
        "front_p50_us": round(median("front_p50") * 1e6, 1),
        "front_p99_us": round(median("front_p99") * 1e6, 1),
        "ratio_front_vs_bare_p50": round(ratio_p50, 2),
        "ratio_front_vs_bare_p99": round(median(lambda r: r["front_p99"] / r["bare_p99"]), 2),
        "ratio_front_vs_in_process_p50": round(median("front_p50") / local, 1),
        "bare_rps": round(median("bare_rps"), 1),
        "front_rps": round(median("front_rps"), 1),
        "ratio_bare_vs_front_rps": round(ratio_rps, 2),
        **{f"{name}_p50_us": round(median(f"{name}_p50") * 1e6, 1) for name in floors},
        **{f"ratio_{name}_vs_bare_p50": round(over_bare(name), 2) for name in floors},
        "on_request_us": round(on_request_cost(50_000) * 1e6, 2),
        "front_requests_in_metrics": served,
        "goal": "front p50 and throughput within 1.5x of the bare aiohttp server",
        "goal_met": ratio_p50 <= 1.5 and ratio_rps <= 1.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--client", nargs=3, metavar=("MODE", "URL", "AMOUNT"), help="internal")
    args = parser.parse_args()
    if args.client:
        client_main(args.client[0], args.client[1], float(args.client[2]))
        return
    print(json.dumps(run(args.quick)))


if __name__ == "__main__":
    main()
