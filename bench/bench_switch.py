"""Benchmark of a blue/green switch under load on the real service; prints one JSON object.

One router and HTTP front serve the test genome (tests/data/svc) from jailed workers, in
this process, as a node does. The load comes from a child process, as live callers do
(in this process its event loop would take the GIL from the front's and be stalled by
the switch's own Python work, which is not what a caller sees): an open-loop load at
``--rate`` requests/s, 16 in flight, one request's latency counted from when it was due,
every request's (due, latency, status) kept. The load runs without a break through every
round; each round is three windows of ``--window`` seconds back to back:

- ``A`` and ``B``: steady, nothing happens;
- ``S``: at its start green is started on a new version, walked through the default
  steps (1 %, 10 %, 50 %, 100 %) with no hold, and promoted (the old blue drains).

Reported per round and as medians over the rounds:

- ``switch_s``: start of green to promoted, the steps' hold time excluded (issue 11's
  "adoption to 100 % green", goal ≤ 1 s for processes);
- ``lost``: requests of the round with no 200 answer (goal 0), and what they got;
- ``p99_ratio``: p99 of ``S`` over p99 of ``B`` (goal ≤ 1.5);
- ``noise_ratio``: p99 of ``B`` over p99 of ``A``, two steady windows: what the machine's
  noise alone gives the same ratio, so a ``p99_ratio`` is read against it;
- ``load``: "child", or "in-process" with ``--in-process`` (the load on a thread of the
  node's process, as this benchmark did before: its loop then shares the GIL with the
  front and the switch);
- ``raw_process_s``: in the same run, starting and ending a bare ``python -c pass``
  (the floor under starting any worker process);
- with ``--containers``: every pool is a new container of the node image
  (docs/service.md, "Workers in containers"; goal ≤ 3 s to 100 % green), and
  ``raw_container_s`` is, in the same run, creating, starting and removing a bare
  container of the same image through the same engine (the floor under any green
  container).

Usage: ``python bench/bench_switch.py [--rounds N] [--rate R] [--window S] [--containers]``
(``--containers`` needs ``DOCKER_HOST``; it builds the node image unless ``--image TAG``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evolution.latency import percentile  # noqa: E402
from evolution.tree import version_id  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.sandbox import Sandbox  # noqa: E402
from runtime.service.contained import ContainerSpec  # noqa: E402
from runtime.service.front import Front  # noqa: E402
from runtime.service.router import Router  # noqa: E402

SVC = Path(__file__).resolve().parents[1] / "tests" / "data" / "svc"
STEPS = (0.01, 0.10, 0.50, 1.0)
MIX = [("/v1/svc/add", {"a": 2, "b": 3}), ("/v1/svc/words", {"text": "a b c"})]
IN_FLIGHT = 16


def raw_process() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def switch(router: Router, tree: dict[str, str], label: int) -> tuple[float, str]:
    """Green on a new version, the steps with no hold, promote; its seconds and version."""
    child = {**tree, "svc/calc.py": tree["svc/calc.py"] + f"\n# round {label}\n"}
    version = version_id(child)
    started = time.perf_counter()
    router.start_green("svc", version, child, ready_timeout=60)
    for weight in STEPS:
        router.set_weight("svc", weight)
    router.promote("svc")
    return time.perf_counter() - started, version


# -- the load, in a child process --


async def _load(url: str, rate: float, seconds: float, start_at: float) -> list[list[Any]]:
    import aiohttp

    rows: list[list[Any]] = []
    bodies = [(path, json.dumps(args).encode()) for path, args in MIX]
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(index: int, due: float) -> None:
            path, body = bodies[index % len(bodies)]
            async with slots:
                try:
                    headers = {"Content-Type": "application/json"}
                    async with session.post(url + path, data=body, headers=headers) as reply:
                        await reply.read()
                        status: Any = reply.status
                except Exception as exc:  # noqa: BLE001 (counted as lost, by its kind)
                    status = type(exc).__name__
            rows.append([due, time.perf_counter() - due, status])

        while time.perf_counter() < start_at:
            await asyncio.sleep(0.001)
        tasks: list[asyncio.Task[None]] = []
        index = 0
        while (due := start_at + index / rate) < start_at + seconds:
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(index, due)))
            index += 1
        await asyncio.gather(*tasks)
    return rows


def client_main(url: str, rate: float, seconds: float, start_at: float) -> None:
    """The child: the load from ``start_at`` (perf_counter, the system's monotonic clock)."""
    print(json.dumps(asyncio.run(_load(url, rate, seconds, start_at))))


# -- the run --


def _p99(rows: list[list[Any]], since: float, until: float) -> float:
    ordered = sorted(lat for due, lat, status in rows if since <= due < until and status == 200)
    return percentile(ordered, 0.99) if ordered else float("nan")


class _InProcess:
    """The load on a thread of this process (``--in-process``): what a caller sharing the
    node's interpreter would see; shown for comparison with the earlier runs."""

    def __init__(self, url: str, rate: float, seconds: float, start_at: float) -> None:
        self.rows: list[list[Any]] = []
        self.returncode = 0
        self._thread = threading.Thread(target=self._run, args=(url, rate, seconds, start_at))
        self._thread.start()

    def _run(self, url: str, rate: float, seconds: float, start_at: float) -> None:
        self.rows = asyncio.run(_load(url, rate, seconds, start_at))

    def communicate(self, timeout: float) -> tuple[str, str]:
        self._thread.join(timeout)
        return json.dumps(self.rows), ""


def containers(image: str | None) -> tuple[ContainerSpec, Any]:
    """The engine of ``DOCKER_HOST`` and the node image (built unless given)."""
    import docker

    from runtime.docker_image import ensure_image

    engine = docker.from_env()
    tag = image or ensure_image(engine)
    labels = {"tars.cluster": "bench-switch"}
    return ContainerSpec(engine=lambda: engine, image=lambda: tag, labels=labels), engine


def raw_container(engine: Any, image: str) -> float:
    """Create, start and remove a bare container of ``image`` (waiting for it to run)."""
    began = time.perf_counter()
    box = engine.containers.run(image, ["python", "-c", "pass"], detach=True, network_mode="none")
    box.wait(timeout=60)
    box.remove(force=True)
    return time.perf_counter() - began


def run(
    rounds: int, rate: float, window: float, in_process: bool = False, image: str | None = None,
    in_containers: bool = False,
) -> dict[str, Any]:  # fmt: skip
    _, tree = load_genome(SVC)
    period = 3 * window
    results: list[dict[str, Any]] = []
    spec, engine = containers(image) if in_containers else (None, None)
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sandbox") as sandbox:
        router = Router(sandbox, containers=spec)
        front = Front(router, "bench")
        load: Any = None
        try:
            front.start()
            router.add("svc", version_id(tree), tree, ready_timeout=60)
            warm = _client(front.url, rate, 1.0, time.perf_counter() + 0.5)
            warm.communicate(timeout=120)
            start_at = time.perf_counter() + 1.0
            make = _InProcess if in_process else _client
            load = make(front.url, rate, rounds * period + window, start_at)
            switches: list[tuple[float, float, str]] = []
            for number in range(rounds):
                at = start_at + number * period + 2 * window  # S begins
                time.sleep(max(0.0, at - time.perf_counter()))
                seconds, version = switch(router, tree, number)
                switches.append((at, seconds, version))
            out, err = load.communicate(timeout=rounds * period + 120)
            if load.returncode != 0:
                raise RuntimeError(f"the load failed: {err[-2000:]}")
        finally:
            if isinstance(load, subprocess.Popen) and load.poll() is None:  # a switch failed
                load.kill()
                load.communicate()
            front.stop()
            router.stop()
    rows = json.loads(out)
    for number, (at, seconds, _version) in enumerate(switches):
        a, b, s = at - 2 * window, at - window, at
        mine = [r for r in rows if a <= r[0] < s + window]
        bad: dict[str, int] = {}
        for _due, _lat, status in mine:
            if status != 200:
                bad[str(status)] = bad.get(str(status), 0) + 1
        p99_a, p99_b, p99_s = _p99(rows, a, b), _p99(rows, b, s), _p99(rows, s, s + window)
        results.append({
            "switch_s": round(seconds, 4),
            "sent": len(mine),
            "lost": sum(bad.values()),
            "lost_by_kind": bad,
            "p99_A_s": round(p99_a, 5),
            "p99_B_s": round(p99_b, 5),
            "p99_S_s": round(p99_s, 5),
            "p99_ratio": round(p99_s / p99_b, 3),
            "noise_ratio": round(p99_b / p99_a, 3),
        })  # fmt: skip
        print(f"round {number + 1}: {results[-1]}", file=sys.stderr)
    found = {**summary(results, rate, window), "load": "in-process" if in_process else "child"}
    if spec is None:
        return found
    raw = statistics.median(raw_container(engine, spec.image()) for _ in range(3))
    switch_median = found["switch_s_median"]
    return {
        **found, "workers": "containers", "image": spec.image(),
        "raw_container_s": round(raw, 4), "switch_over_raw_container": round(switch_median / raw, 2),
        "goals": {**found["goals"], "switch_s": 3.0},
        "goals_met": {**found["goals_met"], "switch_s": switch_median <= 3.0},
    }  # fmt: skip


def summary(results: list[dict[str, Any]], rate: float, window: float) -> dict[str, Any]:
    raw = statistics.median(raw_process() for _ in range(5))
    switch_median = statistics.median(r["switch_s"] for r in results)
    ratio = statistics.median(r["p99_ratio"] for r in results)
    return {
        "bench": "switch",
        "rate": rate,
        "window_s": window,
        "rounds": results,
        "switch_s_median": round(switch_median, 4),
        "lost_total": sum(r["lost"] for r in results),
        "p99_ratio_median": round(ratio, 3),
        "p99_ratios": [r["p99_ratio"] for r in results],
        "noise_ratio_median": round(statistics.median(r["noise_ratio"] for r in results), 3),
        "noise_ratios": [r["noise_ratio"] for r in results],
        "raw_process_s": round(raw, 4),
        "switch_over_raw_process": round(switch_median / raw, 1),
        "goals": {"switch_s": 1.0, "lost": 0, "p99_ratio": 1.5},
        "goals_met": {
            "switch_s": switch_median <= 1.0,
            "lost": all(r["lost"] == 0 for r in results),
            "p99_ratio": ratio <= 1.5,
        },
    }


def _client(url: str, rate: float, seconds: float, start_at: float) -> Any:
    argv = [sys.executable, __file__, "--client", url, str(rate), str(seconds), repr(start_at)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--window", type=float, default=2.0, help="seconds per window")
    parser.add_argument("--in-process", action="store_true",
                        help="drive the load from a thread of this process (as before)")  # fmt: skip
    parser.add_argument("--client", nargs=4, metavar=("URL", "RATE", "SECONDS", "AT"),
                        help="internal: the load's child process")  # fmt: skip
    parser.add_argument("--containers", action="store_true",
                        help="every pool in a new container of the node image")  # fmt: skip
    parser.add_argument("--image", default=None, help="the node image (default: build it)")
    args = parser.parse_args()
    if args.client:
        url, rate, seconds, at = args.client
        client_main(url, float(rate), float(seconds), float(at))
        return
    found = run(args.rounds, args.rate, args.window, args.in_process, args.image, args.containers)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
