"""Benchmark: what an MCP tool call costs over the library call the CLI makes for it.

Two operations, each timed three ways in one run, alternating by rounds (the machine is
shared and noisy: each ratio is taken within a round, and the median round reported):

- ``log``: the newest 50 events of a store of ~2,000 events (``read_store`` and
  ``log_tail``, as `tars log ls` does) against the ``log`` tool;
- ``status``: a running swarm of three in-process nodes asked for their status over the
  admin channel (``cli.swarm_requests.statuses``, as `tars cluster status` does) against
  the ``status`` tool of a server started with ``--config``;

each through (1) the library call itself, (2) the SDK's client connected to the server
in memory (the protocol, JSON and the worker thread, no transport) and (3) the SDK's
client over streamable HTTP to uvicorn on 127.0.0.1 behind the bearer-token gate.

Usage: ``python bench/bench_mcp.py [--quick]`` from the repository root; JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import httpx  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.memory import create_connected_server_and_client_session  # noqa: E402
from rich.console import Console  # noqa: E402

from cli.common import read_store  # noqa: E402
from cli.mcp_http import http_app  # noqa: E402
from cli.mcp_ops import Target  # noqa: E402
from cli.mcp_server import build_server  # noqa: E402
from cli.swarm_requests import statuses  # noqa: E402
from runtime.ports import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "tiny"
TOKEN = "bench-token"
err = Console(stderr=True)


def make_store(root: Path, events: int) -> str:
    """The tiny genome registered, then ``events`` cycle records (a real SQLite store)."""
    from events.store import GenomeStore
    from runtime.genome_files import load_genome

    _, tree = load_genome(TINY)
    root.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'store.db'}"
    with GenomeStore.open(url) as store:
        store.register("tiny", tree["genome.toml"], tree, 1.0, "bench")
        for cycle in range(1, events):
            store.record_cycle("tiny", "bench", cycle=cycle)
    return str(root / "store.db")


def timed(fn: Callable[[], Any], reps: int) -> float:
    """Median seconds of ``reps`` calls."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def atimed(fn: Callable[[], Awaitable[Any]], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        result = await fn()
        assert not result.isError, result
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Http:
    """uvicorn serving one MCP server on 127.0.0.1 in a thread (stopped by :meth:`close`)."""

    def __init__(self, target: Target) -> None:
        import uvicorn

        port = free_port()
        app = http_app(build_server(target, port=port), {TOKEN: "bench"}.get)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/mcp"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


async def over_mcp(
    target: Target, http: Http, tool: str, args: dict[str, Any], reps: int
) -> tuple[float, float]:
    """Median seconds of the tool call in memory, then over streamable HTTP."""
    server = build_server(target)
    async with create_connected_server_and_client_session(server) as session:
        await session.call_tool(tool, args)  # warm: imports, the first store open
        memory = await atimed(lambda: session.call_tool(tool, args), reps)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(http.url, http_client=client) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        await session.call_tool(tool, args)
        over_http = await atimed(lambda: session.call_tool(tool, args), reps)
    return memory, over_http


def rounds(
    name: str, direct: Callable[[], Any], target: Target, tool: str, args: dict[str, Any],
    count: int, reps: int,
) -> dict[str, Any]:  # fmt: skip
    """``count`` rounds of the three ways; the median of each and of each round's ratios."""
    http = Http(target)
    rows = []
    try:
        direct()
        for index in range(count):
            err.print(f"{name}: round {index + 1} of {count}")
            plain = timed(direct, reps)
            memory, over_http = anyio.run(over_mcp, target, http, tool, args, reps)
            rows.append((plain, memory, over_http))
    finally:
        http.close()
    return {
        "direct_ms": round(statistics.median(r[0] for r in rows) * 1e3, 3),
        "mcp_memory_ms": round(statistics.median(r[1] for r in rows) * 1e3, 3),
        "mcp_http_ms": round(statistics.median(r[2] for r in rows) * 1e3, 3),
        "ratio_memory": round(statistics.median(r[1] / r[0] for r in rows), 2),
        "ratio_http": round(statistics.median(r[2] / r[0] for r in rows), 2),
    }


def bench_log(root: Path, count: int, reps: int, events: int) -> dict[str, Any]:
    store = make_store(root, events)

    def direct() -> Any:
        with read_store(store) as handle:
            return handle.log_tail(50, genome="tiny")

    result = rounds("log", direct, Target(store=store), "log", {"genome": "tiny"}, count, reps)
    return {"events": events, **result}


def bench_status(root: Path, count: int, reps: int) -> dict[str, Any]:
    from cli.demo import write_cluster
    from node import SwarmNode
    from runtime.config import load_cluster

    config = load_cluster(write_cluster(root, 3, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    nodes = [SwarmNode(config, node_id, evolve=False) for node_id in config.ids]
    try:
        for node in nodes:
            node.start()
        while not any(n.status().get("role") == "leader" for n in nodes):
            time.sleep(0.05)
        target = Target(config_path=config.path)
        return rounds("status", lambda: statuses(config, 2.0), target, "status", {}, count, reps)
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    quick = parser.parse_args().quick
    count, reps, events = (3, 10, 500) if quick else (5, 30, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        log = bench_log(Path(tmp) / "log", count, reps, events)
        (Path(tmp) / "swarm").mkdir()
        status = bench_status(Path(tmp) / "swarm", count, reps)
    print(json.dumps({"bench": "mcp", "rounds": count, "calls_per_round": reps, "log": log,
                      "status": status}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
