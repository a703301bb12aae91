"""Benchmark of a blue/green switch under load on the real service; prints one JSON object.

One router and HTTP front serve the test genome (tests/data/svc) from jailed workers, as
a node does. ``drive`` (the load of `tars load`) sends a steady open-loop load; each
round first measures a steady window, then a window in which green is started on a new
version, walked through the default steps (1 %, 10 %, 50 %, 100 %) with no hold, and
promoted, the old blue draining. Reported per round, medians over the rounds:

- ``switch_s``: start of green to promoted, the steps' hold time excluded (issue 11's
  "adoption to 100 % green", goal ≤ 1 s for processes);
- ``lost``: requests of the switch window with no 200 answer (goal 0);
- ``p99_ratio``: the switch window's p99 over the steady window's (goal ≤ 1.5);
- ``raw_process_s``: in the same run, starting and ending a bare ``python -c pass``
  (the floor under starting any worker process).

Usage: ``python bench/bench_switch.py [--rounds N] [--rate R] [--seconds S]``.
"""

from __future__ import annotations

import argparse
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

from evolution.tree import version_id  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.sandbox import Sandbox  # noqa: E402
from runtime.service.front import Front  # noqa: E402
from runtime.service.load import Request, drive  # noqa: E402
from runtime.service.router import Router  # noqa: E402

SVC = Path(__file__).resolve().parents[1] / "tests" / "data" / "svc"
STEPS = (0.01, 0.10, 0.50, 1.0)
MIX = [Request("svc", "add", {"a": 2, "b": 3}), Request("svc", "words", {"text": "a b c"})]


def raw_process() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def switch(
    router: Router, tree: dict[str, str], label: int, delay: float, out: dict[str, Any]
) -> None:
    """After ``delay`` seconds: green on a new version, the steps with no hold, promote."""
    time.sleep(delay)
    child = {**tree, "svc/calc.py": tree["svc/calc.py"] + f"\n# round {label}\n"}
    version = version_id(child)
    started = time.perf_counter()
    router.start_green("svc", version, child, ready_timeout=60)
    for weight in STEPS:
        router.set_weight("svc", weight)
    router.promote("svc")
    out["switch_s"] = time.perf_counter() - started
    out["version"] = version


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    _, tree = load_genome(SVC)
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sandbox") as sandbox:
        router = Router(sandbox)
        front = Front(router, "bench")
        try:
            front.start()
            router.add("svc", version_id(tree), tree, ready_timeout=60)
            urls = [front.url]
            drive(urls, MIX, args.rate, 16, 1.0)  # warm-up
            for number in range(args.rounds):
                steady = drive(urls, MIX, args.rate, 16, args.seconds)
                done: dict[str, Any] = {}
                mover = threading.Thread(
                    target=switch, args=(router, tree, number, args.seconds / 4, done)
                )
                mover.start()
                during = drive(urls, MIX, args.rate, 16, args.seconds)
                mover.join(120)
                rounds.append(
                    {
                        "switch_s": round(done.get("switch_s", float("nan")), 4),
                        "lost": sum(during.errors.values()) + during.unsent,
                        "sent": during.sent,
                        "p99_steady_s": round(steady.p99, 5),
                        "p99_switch_s": round(during.p99, 5),
                        "p99_ratio": round(during.p99 / steady.p99, 3) if steady.p99 else None,
                        "steady_lost": sum(steady.errors.values()) + steady.unsent,
                    }
                )
                print(f"round {number + 1}: {rounds[-1]}", file=sys.stderr)
        finally:
            front.stop()
            router.stop()
    raw = statistics.median(raw_process() for _ in range(5))
    ratios = [r["p99_ratio"] for r in rounds if r["p99_ratio"] is not None]
    print(
        json.dumps(
            {
                "bench": "switch",
                "rate": args.rate,
                "rounds": rounds,
                "switch_s_median": round(statistics.median(r["switch_s"] for r in rounds), 4),
                "lost_total": sum(r["lost"] for r in rounds),
                "p99_ratio_median": round(statistics.median(ratios), 3) if ratios else None,
                "raw_process_s": round(raw, 4),
                "switch_over_raw_process": round(
                    statistics.median(r["switch_s"] for r in rounds) / raw, 1
                ),
                "goals": {"switch_s": 1.0, "lost": 0, "p99_ratio": 1.5},
            }
        )
    )


if __name__ == "__main__":
    main()
