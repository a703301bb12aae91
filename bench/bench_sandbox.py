"""Per-run cost of the full jail against a plain child process, in one run.

The same child (``python -c pass``, the node's interpreter) is started two ways,
interleaved A B A B so the machine's drift hits both alike:

* plain: ``subprocess.run([sys.executable, "-c", "pass"])`` in the workspace;
* jail: ``Sandbox.run(workdir, ["python", "-c", "pass"], SandboxLimits())`` with the
  default isolation (bwrap as uid 65534 on an empty root, the workdir copied into a
  quota tmpfs, a memory + pids + cpuacct cgroup made, joined and removed per run).

Goal (issue 9): the jail costs at most +15 ms per run over the plain child (the jail of
``--ro-bind / /`` with a pids cgroup cost +9 to +14 ms).  Also printed, for where the
time goes: the bare bwrap command line alone, without the cgroups and the supervisor.

    python bench/bench_sandbox.py [--runs 60]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.jail import bwrap_args  # noqa: E402
from runtime.sandbox import Sandbox, SandboxLimits  # noqa: E402


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    child = [sys.executable, "-c", "pass"]
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp) / "sb") as sandbox:
        isolation = sandbox.isolation
        iso = sandbox._iso()
        limits = SandboxLimits()
        with sandbox.workspace({"genome.toml": "", "m.py": "X = 1\n"}) as workdir:
            assert iso.bwrap is not None
            bare = [
                *bwrap_args(
                    iso.bwrap, workdir, limits.disk_mb << 20, setpriv=iso.setpriv,
                    etc_dir=iso.etc_dir,
                ),
                *child,
            ]  # fmt: skip
            ways: dict[str, Callable[[], object]] = {
                "plain": lambda: subprocess.run(child, cwd=workdir, check=True),
                "jail": lambda: sandbox.run(workdir, ["python", "-c", "pass"], limits),
                "bwrap_alone": lambda: subprocess.run(bare, cwd=workdir, check=True),
            }
            for run in ways.values():  # warm the page cache and the probe
                run()
            samples: dict[str, list[float]] = {name: [] for name in ways}
            for index in range(args.runs):
                order = list(ways) if index % 2 == 0 else list(reversed(ways))
                for name in order:
                    samples[name].append(timed(ways[name]))
        pool = sandbox._starters  # runs that found a starter waiting in their cgroups
        starters = {"served": pool.served, "missed": pool.missed} if pool is not None else None
    medians = {name: p50(values) for name, values in samples.items()}
    print(
        json.dumps(
            {
                "bench": "sandbox",
                "runs": args.runs,
                "isolation": isolation,
                "p50_ms": medians,
                "p90_ms": {
                    name: round(statistics.quantiles(values, n=10)[-1], 2)
                    for name, values in samples.items()
                },
                "jail_minus_plain_ms": round(medians["jail"] - medians["plain"], 2),
                "bwrap_alone_minus_plain_ms": round(medians["bwrap_alone"] - medians["plain"], 2),
                "starters": starters,
                "goal_ms": 15.0,
                "met": medians["jail"] - medians["plain"] <= 15.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
