"""Hot reload under load: the longest pause a caller sees, against a call with no reload.

Several threads call the counter genome (``tests/data/counter``) through one
:class:`runtime.service.slots.VersionSlots`, half stateful (``store.bump``) and half
stateless (``api.which``), in two phases of the same run:

1. steady: no reload, every call's latency recorded;
2. reload: the same load while the main thread loads v2 and v3 in turn (each load
   migrates the state through ``code_change``), every ``--every`` seconds.

A call "sees a reload" when its time overlaps a ``load()``. The pause such a caller sees
is its latency; the figures compare it with the steady phase's calls (ratio), and with a
direct in-process call of the same function (the floor). ``suspension`` is the window
in which stateful calls could not start, as VersionSlots measures it. Goal: the longest
pause a caller sees ≤ 5 ms. Every call is counted: ``lost`` must be 0.

Both phases run twice: "paced" (each caller rests ``--pace`` s between calls, as a
worker's thread pool serving network requests does) and "saturated" (callers never rest:
every thread wants the GIL all the time, so any thread, the loader included, may wait
several of CPython's 5 ms switch intervals whatever VersionSlots does).

    python bench/bench_reload.py [--threads 4] [--seconds 2] [--every 0.05] [--pace 0.0005]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.service.slots import VersionSlots  # noqa: E402

DATA = ROOT / "tests" / "data" / "counter"
Call = tuple[float, float, bool]  # start, end, stateful


def drive(
    slots: VersionSlots, threads: int, pace: float, stop: threading.Event
) -> tuple[list[Call], list[str]]:
    """Call from ``threads`` threads until ``stop``, each resting ``pace`` s between calls."""
    calls: list[list[Call]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def caller(i: int) -> None:
        clock, mine = time.perf_counter, calls[i]
        stateful = i % 2 == 0
        while not stop.is_set():
            started = clock()
            try:
                if stateful:
                    slots.call("counter.store", "bump", {"key": f"k{i}"})
                else:
                    slots.call("counter.api", "which", {})
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            mine.append((started, clock(), stateful))
            if pace:
                time.sleep(pace)

    workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    return_calls: list[Call] = []
    try:
        stop.wait()
    finally:
        for worker in workers:
            worker.join()
    for mine in calls:
        return_calls.extend(mine)
    return return_calls, errors


def ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered) * 1e3, 4),
        "p99": round(ordered[int(0.99 * (len(ordered) - 1))] * 1e3, 4),
        "max": round(ordered[-1] * 1e3, 4),
    }


def direct_call_seconds(root: Path, rounds: int = 20_000) -> float:
    """The floor: the same stateful function called in-process, no slots."""
    sys.path.insert(0, str(root))
    try:
        from counter import store  # type: ignore[import-not-found]

        best = float("inf")
        for _ in range(5):  # the best of five: a preemption on 2 shared cores is not the cost
            state = store.initial()
            started = time.perf_counter()
            for _ in range(rounds):
                _, state = store.bump(state, "k0")
            best = min(best, (time.perf_counter() - started) / rounds)
        return best
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.split(".")[0] == "counter"]:
            del sys.modules[name]


def run(
    threads: int, seconds: float, every: float, pace: float, trees: dict[str, Path]
) -> dict[str, Any]:
    slots = VersionSlots(purge_timeout=5.0, suspend_timeout=5.0)
    try:
        slots.load("v1", trees["v1"])
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set)
        timer.start()
        steady, steady_errors = drive(slots, threads, pace, stop)

        stop = threading.Event()
        loads: list[tuple[float, float]] = []
        suspensions: list[float] = []
        out: list[tuple[list[Call], list[str]]] = []
        driver = threading.Thread(target=lambda: out.append(drive(slots, threads, pace, stop)))
        driver.start()
        try:
            end = time.perf_counter() + seconds
            n = 0
            while time.perf_counter() < end:
                time.sleep(every)
                n += 1
                name = "v2" if n % 2 else "v3"
                started = time.perf_counter()
                slots.load(f"{name}#{n}", trees[name])
                loads.append((started, time.perf_counter()))
                suspensions.append(slots.status().last_pause)
        finally:
            stop.set()
            driver.join()
        reloading, reload_errors = out[0]
        bumped = sum(1 for c in steady + reloading if c[2])
        total = sum(
            slots.call("counter.store", "read", {"key": f"k{i}"}) for i in range(0, threads, 2)
        )
    finally:
        slots.close()

    during = [c for c in reloading if any(c[0] < b and c[1] > a for a, b in loads)]
    steady_ms = ms([c[1] - c[0] for c in steady])
    steady_stateful = ms([c[1] - c[0] for c in steady if c[2]])
    during_ms = ms([c[1] - c[0] for c in during])
    floor = direct_call_seconds(trees["v1"])
    longest = during_ms.get("max", 0.0)
    return {
        "threads": threads,
        "pace_s": pace,
        "seconds_per_phase": seconds,
        "loads": len(loads),
        "calls": {"steady": len(steady), "reload": len(reloading), "saw_a_reload": len(during)},
        "errors": steady_errors + reload_errors,
        # every stateful call returned and its bump is in the migrated state
        "lost": bumped - total,
        "steady_ms": steady_ms,
        "steady_stateful_ms": steady_stateful,
        "during_reload_ms": during_ms,
        "during_reload_stateful_ms": ms([c[1] - c[0] for c in during if c[2]]),
        "load_ms": ms([b - a for a, b in loads]),
        "suspension_ms": ms(suspensions),
        "direct_call_us": round(floor * 1e6, 3),
        # the same stateful function through the slots (lock, lookup, state) vs called directly
        "stateful_call_over_direct": round(steady_stateful["p50"] / 1e3 / floor, 2),
        "longest_pause_ms": longest,
        "longest_pause_over_steady_max": round(longest / steady_ms["max"], 2),
        "longest_pause_over_steady_p50": round(longest / steady_ms["p50"], 1),
        "p99_during_over_steady": round(during_ms.get("p99", 0.0) / steady_ms["p99"], 2),
        "goal_ms": 5.0,
        "met": longest <= 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--pace", type=float, default=0.0005)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        trees = {}
        for name in ("v1", "v2", "v3"):
            trees[name] = Path(work) / name
            shutil.copytree(DATA / name, trees[name])
        out = {
            # callers resting between calls, as a worker's pool serving requests does
            "paced": run(args.threads, args.seconds, args.every, args.pace, trees),
            # callers never resting: every thread wants the GIL all the time
            "saturated": run(args.threads, args.seconds, args.every, 0.0, trees),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
