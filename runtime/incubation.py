"""Proving one candidate: its tests, then the benchmark against its parent, A B A B.

This is the side-effecting half of the Incubator (the actor is a thin shell around
it): it writes throw-away copies, runs children in the sandbox and reads their output.
Judging the figures is pure and lives in ``evolution.stats`` / ``evolution.policy``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from evolution.manifest import Manifest
from evolution.tree import version_id
from runtime.sandbox import RunResult, Sandbox, SandboxLimits

#: cachegrind without its cache and branch simulation is a plain instruction counter:
#: exact to a few instructions in a billion run to run, and far faster than callgrind.
VALGRIND_FLAGS = (
    "--tool=cachegrind",
    "--cache-sim=no",
    "--branch-sim=no",
    "--cachegrind-out-file=/dev/null",
)
#: how much longer a benchmark may take under the counter than natively (measured 3-5x
#: plus ~3.5 s of start-up here); the manifest's limits are for the native run.
COUNTING_SLOWDOWN = 5
#: a candidate may take this many times its parent's counted run, with the floor below,
#: before it is stopped: it is only there to be faster, and a benchmark that hangs under
#: the counter should cost seconds, not the manifest's limit times COUNTING_SLOWDOWN
CANDIDATE_WALL_FACTOR = 4.0
CANDIDATE_WALL_FLOOR = 20.0
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
_COUNT_CACHE_SIZE = 64


@dataclass(frozen=True)
class IncubationReport:
    """What the sandbox showed about one candidate; the Governor decides from this."""

    candidate: str
    tests_passed: bool
    failure: str | None
    detail: str
    parent_samples: tuple[float, ...] = ()
    candidate_samples: tuple[float, ...] = ()
    child_seconds: float = 0.0
    total_seconds: float = 0.0
    runs: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    #: how the samples were taken: "benchmark" (A/B pairs of the metric) or
    #: "instructions" (one exact count per side)
    measure: str = "benchmark"

    @property
    def overhead_seconds(self) -> float:
        """Time spent outside the genome's own processes: the framework's cost."""
        return max(0.0, self.total_seconds - self.child_seconds)


def read_metric(result: RunResult, metric: str) -> float:
    """The metric from the last JSON line a benchmark printed; ValueError says what was wrong."""
    for line in reversed(result.stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        value = data.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"benchmark printed no number for metric {metric!r} (got {value!r})")
        if value <= 0:
            raise ValueError(f"benchmark metric {metric!r} must be positive, got {value}")
        return float(value)
    raise ValueError(
        f"benchmark printed no JSON line (last output: {result.stdout.strip()[-200:]!r})"
    )


def valgrind() -> str | None:
    """The instruction counter's path, or None where valgrind is not installed."""
    return shutil.which("valgrind")


def effective_measure(manifest: Manifest) -> str:
    """The measure actually used: "instructions" needs valgrind; without it, the A/B benchmark."""
    if manifest.fitness.measure == "instructions" and valgrind() is not None:
        return "instructions"
    return "benchmark"


def bench_env(measure: str) -> dict[str, str]:
    """Tells the benchmark how it is measured, so under the counter it can do one pass, not best-of-N."""
    return {"TARS_MEASURE": measure}


def counting_limits(limits: SandboxLimits) -> SandboxLimits:
    """The manifest's limits stretched for a run under valgrind (slower, with a larger address space)."""
    return replace(
        limits,
        wall_seconds=limits.wall_seconds * COUNTING_SLOWDOWN,
        cpu_seconds=limits.cpu_seconds * COUNTING_SLOWDOWN,
        memory_mb=limits.memory_mb + 512,
    )


def read_instructions(result: RunResult) -> float:
    """The guest instruction count valgrind printed; ValueError says what was wrong."""
    found = _REFS.findall(result.stderr)
    if not found:
        raise ValueError(
            f"valgrind printed no instruction count (last output: {result.stderr.strip()[-200:]!r})"
        )
    count = float(found[-1].replace(",", ""))
    if count <= 0:
        raise ValueError(f"valgrind counted {count:g} instructions")
    return count


class _CountCache:
    """(instructions, wall seconds) by (tree, command): exact, so a parent is counted once per version.

    Shared by the incubator pool (actors are threads of one process), hence the lock.
    """

    def __init__(self, size: int = _COUNT_CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._counts: OrderedDict[tuple[str, tuple[str, ...]], tuple[float, float]] = OrderedDict()

    def get(self, key: tuple[str, tuple[str, ...]]) -> tuple[float, float] | None:
        with self._lock:
            value = self._counts.get(key)
            if value is not None:
                self._counts.move_to_end(key)
            return value

    def put(self, key: tuple[str, tuple[str, ...]], value: tuple[float, float]) -> None:
        with self._lock:
            self._counts[key] = value
            self._counts.move_to_end(key)
            while len(self._counts) > self._size:
                self._counts.popitem(last=False)


_counts = _CountCache()


def forget_counts() -> None:
    """Empty the count cache (a test that compares two runs must count each afresh)."""
    global _counts
    _counts = _CountCache()


def run_counted(
    sandbox: Sandbox, workdir: Path, manifest: Manifest, wall_limit: float | None = None
) -> RunResult:
    """The benchmark command under valgrind's instruction counter, in ``workdir``.

    ``wall_limit`` tightens the (stretched) manifest wall limit, never loosens it.
    """
    counter = valgrind()
    if counter is None:
        raise ValueError(
            'valgrind is not installed: install it (apt-get install valgrind) or set [fitness] measure = "benchmark"'
        )
    bench = manifest.commands.bench
    command = [
        counter,
        *VALGRIND_FLAGS,
        sys.executable if bench[0] == "python" else bench[0],
        *bench[1:],
    ]
    limits = counting_limits(SandboxLimits.from_manifest(manifest.limits))
    if wall_limit is not None and wall_limit < limits.wall_seconds:
        limits = replace(limits, wall_seconds=wall_limit)
    return sandbox.run(workdir, command, limits, env=bench_env("instructions"))


def count_instructions(sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest) -> float:
    """Instructions the benchmark executes on ``tree`` (cached per version); ValueError when it fails."""
    count, _, _, failure = _count(sandbox, tree, manifest)
    if count is None:
        raise ValueError(
            f"benchmark failed under the instruction counter: {failure[1] if failure else '?'}"
        )
    return count


def _count(
    sandbox: Sandbox,
    tree: Mapping[str, str],
    manifest: Manifest,
    workdir: Path | None = None,
    wall_limit: float | None = None,
) -> tuple[float | None, float, float, tuple[str, str] | None]:
    """(count, seconds spent now, seconds the counted run takes, (failure, detail)).

    A version counted before costs nothing now; its run's duration comes from the cache.
    """
    key = (version_id(dict(tree)), tuple(manifest.commands.bench))
    cached = _counts.get(key)
    if cached is not None:
        return cached[0], 0.0, cached[1], None
    with contextlib.ExitStack() as stack:
        where = workdir if workdir is not None else stack.enter_context(sandbox.workspace(tree))
        result = run_counted(sandbox, where, manifest, wall_limit)
    wall = result.wall_seconds
    if not result.ok:
        return None, wall, wall, (result.failure or "exit", result.detail)
    try:
        count = read_instructions(result)
    except ValueError as exc:
        return None, wall, wall, ("bench-output", str(exc))
    _counts.put(key, (count, wall))
    return count, wall, wall, None


def run_tests(sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest) -> RunResult:
    """Run the genome's own tests on a copy of ``tree``."""
    limits = SandboxLimits.from_manifest(manifest.limits)
    with sandbox.workspace(tree) as workdir:
        return sandbox.run(workdir, manifest.commands.test, limits)


def measure(
    sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest, repeats: int = 1
) -> list[float]:
    """Run the benchmark ``repeats`` times on one copy; raise ValueError when it fails."""
    limits = SandboxLimits.from_manifest(manifest.limits)
    samples: list[float] = []
    with sandbox.workspace(tree) as workdir:
        for _ in range(repeats):
            result = sandbox.run(
                workdir, manifest.commands.bench, limits, env=bench_env("benchmark")
            )
            if not result.ok:
                raise ValueError(f"benchmark failed: {result.detail}")
            samples.append(read_metric(result, manifest.fitness.metric))
    return samples


def incubate(
    sandbox: Sandbox,
    manifest: Manifest,
    candidate: str,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    rounds: int | None = None,
    *,
    max_rounds: int | None = None,
    undecided: Callable[[Sequence[float], Sequence[float]], bool] | None = None,
    measure: str | None = None,
) -> IncubationReport:
    """Tests first (all must pass), then ``rounds`` interleaved benchmark pairs (A B B A A B …).

    Parent and candidate run alternately so that slow drifts of the machine (another
    process, thermal state) hit both equally; pairing them is what lets the statistics
    cancel the noise instead of averaging it.

    ``measure`` overrides the manifest's ("benchmark" times an A/B even for a genome
    judged by instruction counts, as the demo's final report does).

    Sequential testing: after ``rounds`` pairs, while ``undecided(parent, candidate)``
    says the evidence straddles the decision (and up to ``max_rounds``), more pairs are
    run.  Clear cases stop early; only close calls pay for more runs, and a close call
    decided on more data is what keeps two runs with the same seed deciding alike.
    """
    started = time.perf_counter()
    child = 0.0
    runs = 0
    limits = SandboxLimits.from_manifest(manifest.limits)
    rounds = rounds or manifest.fitness.rounds
    parent_samples: list[float] = []
    candidate_samples: list[float] = []

    def report(tests_passed: bool, failure: str | None, detail: str) -> IncubationReport:
        return IncubationReport(
            candidate,
            tests_passed,
            failure,
            detail,
            tuple(parent_samples) if failure is None else (),
            tuple(candidate_samples) if failure is None else (),
            child_seconds=child,
            total_seconds=time.perf_counter() - started,
            runs=runs,
        )

    with sandbox.workspace(candidate_tree) as cand_dir:
        tests = sandbox.run(cand_dir, manifest.commands.test, limits)
        child += tests.wall_seconds
        runs += 1
        if not tests.ok:
            return report(False, tests.failure or "exit", f"tests failed: {tests.detail}")
        if (measure or effective_measure(manifest)) == "instructions":
            return _counted(
                sandbox,
                manifest,
                candidate,
                parent_tree,
                candidate_tree,
                cand_dir,
                started,
                child,
                runs,
            )
        with sandbox.workspace(parent_tree) as parent_dir:
            pair = (
                (parent_dir, parent_samples, "parent"),
                (cand_dir, candidate_samples, "candidate"),
            )
            limit = max(rounds, max_rounds or rounds)
            index, target = 0, rounds
            while index < target:
                # A B, then B A: alternating the order cancels drift inside a pair too.
                for workdir, samples, who in pair if index % 2 == 0 else pair[::-1]:
                    result = sandbox.run(
                        workdir, manifest.commands.bench, limits, env=bench_env("benchmark")
                    )
                    child += result.wall_seconds
                    runs += 1
                    if not result.ok:
                        return report(
                            True,
                            result.failure or "exit",
                            f"{who} benchmark failed: {result.detail}",
                        )
                    try:
                        samples.append(read_metric(result, manifest.fitness.metric))
                    except ValueError as exc:
                        return report(True, "bench-output", f"{who} {exc}")
                index += 1
                if (
                    index == target < limit
                    and undecided is not None
                    and undecided(parent_samples, candidate_samples)
                ):
                    target = min(limit, target + 2)  # two more: one A B and one B A
    return report(True, None, "ok")


def _counted(
    sandbox: Sandbox,
    manifest: Manifest,
    candidate: str,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    cand_dir: Path,
    started: float,
    child: float,
    runs: int,
) -> IncubationReport:
    """One exact count per side; a side counted before (the parent, mostly) comes from the cache.

    The candidate's run is stopped at CANDIDATE_WALL_FACTOR times its parent's (at least
    CANDIDATE_WALL_FLOOR seconds), so a benchmark that hangs fails in seconds.
    """

    def failed(kind: str, detail: str) -> IncubationReport:
        return IncubationReport(
            candidate,
            True,
            kind,
            detail,
            child_seconds=child,
            total_seconds=time.perf_counter() - started,
            runs=runs,
            measure="instructions",
        )

    parent, spent, parent_wall, failure = _count(sandbox, parent_tree, manifest)
    child += spent
    runs += 1 if spent else 0
    if parent is None:
        kind, detail = failure or ("exit", "?")
        return failed(kind, f"parent benchmark failed under the instruction counter: {detail}")
    limit = max(CANDIDATE_WALL_FLOOR, CANDIDATE_WALL_FACTOR * parent_wall)
    count, spent, _, failure = _count(sandbox, candidate_tree, manifest, cand_dir, wall_limit=limit)
    child += spent
    runs += 1 if spent else 0
    if count is None:
        kind, detail = failure or ("exit", "?")
        return failed(
            kind,
            f"candidate benchmark failed under the instruction counter: {detail} "
            f"(a candidate may take {CANDIDATE_WALL_FACTOR:g}× its parent's {parent_wall:.1f} s, at least {CANDIDATE_WALL_FLOOR:g} s)",
        )
    return IncubationReport(
        candidate,
        True,
        None,
        "ok",
        (parent,),
        (count,),
        child_seconds=child,
        total_seconds=time.perf_counter() - started,
        runs=runs,
        measure="instructions",
    )
