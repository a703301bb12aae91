"""Benchmark of the web dashboard on a log of 10,000 versions, against a bare aiohttp page.

A SQLite store is filled with one genome of N versions (``--versions``, 10,000 by
default): each adoption comes with the candidate evaluation that chose it, as a cycle
writes them, so the log holds 2N events.  The dashboard reads it the way a node's own
dashboard does (``runtime.dashboard.Dashboard`` over a ``LocalSource`` answering the
admin channel's ops with ``consensus.admin_reads``; ``status`` is a fixed node status,
since no Raft runs here) and is served by ``DashboardServer`` on 127.0.0.1.

Measured, each the median of ``--rounds`` rounds, each against a bare aiohttp server of
the same library in the same process answering a page of the same size (the ratio):

1. ``first_page``: ``GET /dashboard/`` with a session (the swarm, genomes, rollouts and
   the latest events), goal <= 1 s;
   (``cold_seconds``: the very first request, templates compiled on the way);
2. ``genome_page``: ``GET /dashboard/genome/G`` (its lineage, the newest 300 of N
   versions shown) and ``plot``: its SVG plot over N versions (first draw, not cached);
3. ``live_update``: the time from an adoption's commit to the store to its event read
   from ``GET /dashboard/events`` by an HTTP client (the page's stream; a browser adds
   its own event dispatch), goal <= 0.5 s; the dashboard polls the log every 0.1 s. Its
   other side: a bare aiohttp stream told of the commit right after it (a push, no
   poll: the floor of any design).

Usage: ``python bench/bench_dashboard.py [--versions N] [--rounds R]`` from the repo root.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import web  # noqa: E402
from rich.progress import Progress  # noqa: E402

from consensus.admin_reads import read_ops  # noqa: E402
from events.records import Adoption, CandidateRecord  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402
from runtime.dashboard import Dashboard, DashboardServer  # noqa: E402
from runtime.dashboard.auth import Logins  # noqa: E402
from runtime.dashboard.sources import LocalSource  # noqa: E402

SECRET = "bench-secret"
PHASE = random.Random(12)
MANIFEST = """[genome]
name = "g"
sources = ["g/*.py"]

[commands]
test = ["python", "-c", "pass"]
bench = ["python", "-c", "pass"]

[fitness]
metric = "seconds"
direction = "minimize"

[[fitness.limits]]
metric = "peak_memory_mb"
max_change = 0.1
"""


def fill(store: GenomeStore, versions: int) -> dict[str, str]:
    tree = {"genome.toml": MANIFEST, "g/core.py": "VALUE = 0\n"}
    store.register("g", MANIFEST, tree, 1.0, "bench")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"writing {versions:,} versions", total=versions - 1)
        for i in range(1, versions):
            tree = _adopt(store, tree, i)
            progress.advance(task)
    return tree


def _adopt(store: GenomeStore, parent: dict[str, str], i: int) -> dict[str, str]:
    child = {**parent, "g/core.py": f"VALUE = {i}\n"}
    patch, version = make_patch(parent, child), version_id(child)
    fitness = 1.0 / (1 + i / 1000)
    figures = {"seconds": {"parent": fitness * 1.01, "candidate": fitness, "main": True},
               "peak_memory_mb": {"parent": 20.0, "candidate": 20.0 + (i % 7) / 10}}  # fmt: skip
    record = CandidateRecord(version, version_id(parent), patch, "bench", "bench", "adopt", ["faster"],
                             1.01, 1.0, 1.02, True, figures=figures)  # fmt: skip
    adoption = Adoption(version, version_id(parent), patch, "bench", "bench", fitness * 1.01, fitness,
                        1.01, 1.0, 1.02, evidence={"figures": figures})  # fmt: skip
    store.record_cycle("g", "bench", evaluated=[record], adopted=adoption, cycle=i)
    return child


def _handler(store: GenomeStore) -> Any:
    ops = read_ops(store)

    def handle(body: dict[str, Any]) -> Any:
        if body["op"] == "status":
            head = store.head("g")
            return {"node": "bench", "role": "leader", "leader": "bench", "term": 1, "commit_index": 1,
                    "applied_index": 1, "members": ["bench"], "counters": {},
                    "heads": {"g": {"version": head.version, "fitness": head.fitness,
                                    "versions": head.versions_count, "cycles": head.cycles_completed,
                                    "waiting": 0}}}  # fmt: skip
        if body["op"] in ops:
            return ops[body["op"]](body)
        return {"ok": False, "error": "no deployer here"}

    return handle


class Bare:
    """A bare aiohttp server answering one fixed body (the ratio's other side)."""

    def __init__(self) -> None:
        self.body, self.port = b"", 0
        self.pushed: asyncio.Event | None = None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def push(self) -> None:
        """Send the waiting stream its event now (a push server: the live figure's floor)."""
        assert self.pushed is not None
        self.loop.call_soon_threadsafe(self.pushed.set)

    def _run(self, ready: threading.Event) -> None:
        async def page(request: web.Request) -> web.Response:
            return web.Response(body=self.body, content_type="text/html")

        async def events(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            self.pushed = asyncio.Event()
            await self.pushed.wait()
            await response.write(b'event: log\ndata: {"type": "VersionAdopted"}\n\n')
            return response

        async def listen() -> None:
            app = web.Application()
            app.router.add_get("/", page)
            app.router.add_get("/events", events)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = int(runner.addresses[0][1])

        self.loop.run_until_complete(listen())
        ready.set()
        self.loop.run_forever()


def _get(port: int, path: str, cookie: str = "") -> tuple[float, int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    reply = conn.getresponse()
    body = reply.read()
    took = time.perf_counter() - started
    conn.close()
    return took, reply.status, body


def _login(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/dashboard/login", body=f"secret={SECRET}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return str(reply.getheader("Set-Cookie")).split(";", 1)[0]


def _page(server: DashboardServer, bare: Bare, path: str, cookie: str) -> dict[str, float]:
    took, status, body = _get(server.port, path, cookie)
    assert status == 200, (path, status, body[:300])
    bare.body = body
    bare_took = min(_get(bare.port, "/")[0] for _ in range(3))
    return {"seconds": took, "bare_seconds": bare_took, "bytes": len(body)}


def _live(
    port: int, path: str, store: GenomeStore, tree: dict[str, str], i: int, cookie: str,
    pushed: Any = None,
) -> tuple[float, dict[str, str]]:  # fmt: skip
    """Seconds from an adoption's commit to its event read from the stream at ``path``
    (``pushed``: told right after the commit, for a server that pushes); the new tree."""
    seen = threading.Event()
    stamp: list[float] = []

    def listen() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", path, headers={"Cookie": cookie})
        reply = conn.getresponse()
        while not seen.is_set():
            line = reply.fp.readline()
            if line.startswith(b"data: ") and b'"VersionAdopted"' in line:
                stamp.append(time.perf_counter())
                seen.set()
        conn.close()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    # the stream is open and the poller running; a random phase against the poll period
    time.sleep(0.5 + PHASE.uniform(0.0, 0.1))
    child = _adopt(store, tree, i)
    committed = time.perf_counter()
    if pushed is not None:
        pushed()
    seen.wait(30)
    thread.join(5)
    return (stamp[0] - committed if stamp else float("inf")), child


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = GenomeStore.open(f"sqlite:///{folder}/store.db")
        fill_started = time.perf_counter()
        tree = fill(store, args.versions)
        fill_seconds = time.perf_counter() - fill_started
        logins = Logins(SECRET, lambda token: None, lambda name: None)
        dashboard = Dashboard(LocalSource("bench", _handler(store)), logins, title="bench")
        server, bare = DashboardServer(dashboard), Bare()
        server.start()
        try:
            cookie = _login(server.port)
            rounds: dict[str, list[dict[str, float]]] = {"first_page": [], "genome_page": []}
            for _ in range(args.rounds):
                rounds["first_page"].append(_page(server, bare, "/dashboard/", cookie))
                rounds["genome_page"].append(_page(server, bare, "/dashboard/genome/g", cookie))
            plot_took, status, svg = _get(
                server.port, "/dashboard/genome/g/plot.svg?by=version", cookie
            )
            assert status == 200 and svg.startswith(b"<?xml")
            live, floor = [], []
            for r in range(args.rounds):
                after = store.log_tail(1, genome="g")[0][-1][0]
                path = f"/dashboard/events?after={after}"
                took, tree = _live(server.port, path, store, tree, 2 * (args.versions + r), cookie)
                live.append(took)
                took, tree = _live(bare.port, "/events", store, tree, 2 * (args.versions + r) + 1, "", bare.push)  # fmt: skip
                floor.append(took)
        finally:
            server.stop()
            store.close()
    out: dict[str, Any] = {"versions": args.versions, "events": 2 * args.versions - 1,
                           "fill_seconds": round(fill_seconds, 1), "rounds": args.rounds}  # fmt: skip
    for name, found in rounds.items():
        seconds = statistics.median(f["seconds"] for f in found)
        bare_seconds = statistics.median(f["bare_seconds"] for f in found)
        out[name] = {"seconds": round(seconds, 4), "bare_seconds": round(bare_seconds, 5),
                     "ratio": round(seconds / bare_seconds, 1), "bytes": int(found[0]["bytes"]),
                     "cold_seconds": round(found[0]["seconds"], 4)}  # fmt: skip
    out["first_page"]["goal_seconds"], out["first_page"]["met"] = (
        1.0,
        out["first_page"]["seconds"] <= 1.0,
    )
    out["plot"] = {"seconds": round(plot_took, 3), "bytes": len(svg)}
    live_median = statistics.median(live)
    out["live_update"] = {"seconds_median": round(live_median, 3), "seconds_max": round(max(live), 3), "each": [round(x, 3) for x in live],
                          "poll_seconds": 0.1, "goal_seconds": 0.5, "met": max(live) <= 0.5,
                          "bare_push_seconds_median": round(statistics.median(floor), 4),
                          "ratio": round(live_median / max(statistics.median(floor), 1e-6), 1)}  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
