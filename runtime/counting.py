"""Counting the instructions a benchmark executes, under valgrind, once per version.

An instruction count is exact to a few in a billion run to run, so a version counted
once need not be counted again: counts are cached by (tree, command), and two runs with
one seed adopt the same patches even on a noisy machine.  Without valgrind the
incubator falls back to the A/B benchmark (:func:`effective_measure`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from evolution.manifest import Manifest
from evolution.tree import version_id
from runtime.figures import PEAK_MEMORY, read_figures
from runtime.sandbox import RunResult, Sandbox, SandboxLimits
from runtime.sandbox_result import last_line

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
#: before a short count, the tree's Python files are compiled to bytecode natively, in the
#: same jailed run, so the count does not include compiling the genome's own source (40 M
#: of logstats' 270 M short instructions, and a tenth of its seconds under valgrind). A
#: compile is no work of the benchmark, and the short gain multiplies every difference by
#: 1 / short_scale: a candidate that adds ten lines looked worse by ten times their compile.
#: The bytecode is the one the import would compile (same interpreter, same flags), so
#: the count stays exact; a file that does not compile is left for the count to fail on.
_PRECOMPILE = '"$0" -S -m compileall -q . >/dev/null 2>&1; exec "$@"'
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
#: a line valgrind writes itself (``==PID== …``, ``--PID-- …``)
_VALGRIND_LINE = re.compile(r"^(==|--)\d+(==|--)")
_COUNT_CACHE_SIZE = 64


def valgrind() -> str | None:
    """The instruction counter's path, or None where valgrind is not installed."""
    return shutil.which("valgrind")


#: valgrind's tool names per machine (``platform.machine()`` -> the tools' suffix)
_TOOL_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
#: runs inside the jail before the counter: the counted run is one process (its docstring)
_GUARD = Path(__file__).with_name("_count_guard.py").read_text(encoding="utf-8")


def counter_tool(launcher: str) -> tuple[str, dict[str, str]]:
    """valgrind's cachegrind tool binary and the environment the launcher would give it.

    The count runs the tool directly, not through the ``valgrind`` launcher (a script and
    a binary that ``execve`` the tool): the guard allows one ``execve`` only
    (:mod:`runtime._count_guard`).  ValueError says where it looked.
    """
    machine = _TOOL_ARCH.get(os.uname().machine)
    if machine is None:
        raise ValueError(f"no guarded instruction count on a {os.uname().machine} machine")
    real = Path(launcher).resolve()
    prefix = real.parent.parent
    places = [Path(os.environ["VALGRIND_LIB"])] if os.environ.get("VALGRIND_LIB") else []
    places += [prefix / "libexec" / "valgrind", prefix / "lib" / "valgrind",
               prefix / "lib64" / "valgrind", prefix / "lib" / f"{os.uname().machine}-linux-gnu" / "valgrind"]  # fmt: skip
    for place in places:
        tool = place / f"cachegrind-{machine}-linux"
        if tool.is_file():
            return str(tool), {"VALGRIND_LIB": str(place), "VALGRIND_LAUNCHER": str(real)}
    raise ValueError(
        "valgrind's cachegrind tool was not found in " + ", ".join(str(p) for p in places)
    )


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


#: (instructions, wall seconds, the figures the counted run printed, CPU seconds)
_Counted = tuple[float, float, dict[str, float], float]


class _CountCache:
    """(instructions, wall seconds, figures) by (tree, command): exact, so a parent is counted once per version.

    Shared by the incubator pool (actors are threads of one process), hence the lock.
    One count per key is in flight at a time (:meth:`flight`): two incubators judging
    candidates of one uncounted parent would otherwise both count it, each paying a full
    run under valgrind for the same figure.
    """

    def __init__(self, size: int = _COUNT_CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._counts: OrderedDict[tuple[str, tuple[str, ...]], _Counted] = OrderedDict()
        self._flights: dict[tuple[str, tuple[str, ...]], threading.Lock] = {}

    @contextlib.contextmanager
    def flight(self, key: tuple[str, tuple[str, ...]]) -> Iterator[None]:
        """Held while ``key`` is counted; a second counter of it waits, then reads the cache."""
        with self._lock:
            lock = self._flights.setdefault(key, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._lock:
                if self._flights.get(key) is lock and not lock.locked():
                    del self._flights[key]

    def get(self, key: tuple[str, tuple[str, ...]]) -> _Counted | None:
        with self._lock:
            value = self._counts.get(key)
            if value is not None:
                self._counts.move_to_end(key)
            return value

    def drop(self, key: tuple[str, tuple[str, ...]]) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def put(self, key: tuple[str, tuple[str, ...]], value: _Counted) -> None:
        with self._lock:
            self._counts[key] = value
            self._counts.move_to_end(key)
            while len(self._counts) > self._size:
                self._counts.popitem(last=False)


_counts = _CountCache()


class QuickTimes:
    """The parent's native quick-run figures per (version, command), from earlier pairs.

    A later candidate of the same version runs once against their median and, at or
    above the floor, passes on one run instead of a pair; below it, that single run
    proves nothing (the machine may have slowed since) and the pairs decide.  Shared by
    the incubator pool's threads, hence the lock.
    """

    def __init__(self, size: int = 16, keep: int = 5) -> None:
        self._size, self._keep = size, keep
        self._lock = threading.Lock()
        self._figures: OrderedDict[tuple[str, tuple[str, ...]], list[tuple[float, float]]] = (
            OrderedDict()
        )

    def get(self, key: tuple[str, tuple[str, ...]]) -> tuple[float, float] | None:
        """(median figure, median wall seconds) of the parent's last runs, or None."""
        with self._lock:
            runs = self._figures.get(key)
            if not runs:
                return None
            return statistics.median(f for f, _ in runs), statistics.median(w for _, w in runs)

    def clear(self) -> None:
        with self._lock:
            self._figures.clear()

    def add(self, key: tuple[str, tuple[str, ...]], figure: float, wall: float) -> None:
        with self._lock:
            runs = self._figures.setdefault(key, [])
            runs[:] = [*runs, (figure, wall)][-self._keep :]
            self._figures.move_to_end(key)
            while len(self._figures) > self._size:
                self._figures.popitem(last=False)


#: the evaluation cascade's parent figures (``runtime.incubation``), per version like the counts
quick_times = QuickTimes()


def forget_counts() -> None:
    """Empty the count cache (a test that compares two runs must count each afresh)."""
    global _counts
    _counts = _CountCache()
    quick_times.clear()


def forget_count(tree: Mapping[str, str], manifest: Manifest, short: Short = None) -> None:
    """Drop ``tree``'s cached count (a benchmark that counts one candidate two ways)."""
    _counts.drop(_key(tree, manifest, short))


def is_counted(tree: Mapping[str, str], manifest: Manifest, short: Short = None) -> bool:
    """Whether ``tree``'s count is cached (then counting it again costs nothing)."""
    return _counts.get(_key(tree, manifest, short)) is not None


#: how a benchmark runs short (arguments appended, environment added:
#: ``evolution.cascade.short_run``); None is its full run
Short = tuple[tuple[str, ...], Mapping[str, str]] | None


def _key(tree: Mapping[str, str], manifest: Manifest, short: Short) -> tuple[str, tuple[str, ...]]:
    """The cache key of a count: the version, the command, and how it ran short if it did."""
    command = tuple(manifest.commands.bench)
    if short is not None:
        args, env = short
        command = (*command, *args, "#short", *(f"{k}={v}" for k, v in sorted(env.items())))
    return version_id(dict(tree)), command


def run_counted(
    sandbox: Sandbox,
    workdir: Path,
    manifest: Manifest,
    wall_limit: float | None = None,
    short: Short = None,
    precompile: bool = True,
    cpu_limit: float | None = None,
) -> RunResult:
    """The benchmark command under valgrind's instruction counter, in ``workdir``.

    ``wall_limit`` and ``cpu_limit`` tighten the (stretched) manifest limits, never loosen them;
    ``short`` runs it on its short input (the cascade's short count), the tree compiled
    natively first (:data:`_PRECOMPILE`); ``precompile`` False counts the compile too.
    """
    counter = valgrind()
    if counter is None:
        raise ValueError(
            'valgrind is not installed: install it (apt-get install valgrind) or set [fitness] measure = "benchmark"'
        )
    tool, tool_env = counter_tool(counter)
    bench = manifest.commands.bench
    command = [
        sys.executable, "-I", "-c", _GUARD, tool,
        *VALGRIND_FLAGS,
        sys.executable if bench[0] == "python" else bench[0],
        *bench[1:],
        *(short[0] if short is not None else ()),
    ]  # fmt: skip
    env = {**tool_env, **bench_env("instructions")}
    if short is not None:
        env = {**short[1], **env}  # TARS_MEASURE is TARS's, never the manifest's
        if precompile:
            command = ["sh", "-c", _PRECOMPILE, sys.executable, *command]
    limits = counting_limits(SandboxLimits.from_manifest(manifest.limits))
    if wall_limit is not None and wall_limit < limits.wall_seconds:
        limits = replace(limits, wall_seconds=wall_limit)
    if cpu_limit is not None and cpu_limit < limits.cpu_seconds:
        limits = replace(limits, cpu_seconds=cpu_limit)
    return sandbox.run(workdir, command, limits, env=env)


def count_instructions(sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest) -> float:
    """Instructions the benchmark executes on ``tree`` (cached per version); ValueError when it fails."""
    got = count_cached(sandbox, tree, manifest)
    if got.instructions is None:
        why = got.failure[1] if got.failure else "?"
        raise ValueError(f"benchmark failed under the instruction counter: {why}")
    return got.instructions


class Count(NamedTuple):
    """A count as :func:`count_cached` gives it, from the cache or from a run just made."""

    #: the instructions, None when the run failed
    instructions: float | None
    #: wall seconds spent now (0 from the cache)
    spent: float
    #: wall seconds the counted run takes (the cached run's, from the cache)
    wall: float
    #: (failure kind, detail) of a failed run
    failure: tuple[str, str] | None
    #: the figures the counted run printed
    figures: dict[str, float]
    #: CPU seconds spent now (0 from the cache): the cost on a shared machine
    cpu: float = 0.0
    #: CPU seconds the counted run takes (the cached run's, from the cache; 0 unknown)
    cpu_run: float = 0.0


def count_cached(
    sandbox: Sandbox,
    tree: Mapping[str, str],
    manifest: Manifest,
    workdir: Path | None = None,
    wall_limit: float | None = None,
    short: Short = None,
    cpu_limit: float | None = None,
) -> Count:
    """(count, seconds spent now, seconds the counted run takes, (failure, detail), figures, CPU).

    A version counted before costs nothing now; its run's duration and the figures it
    printed (the manifest's work counts and limits, :mod:`runtime.figures`) come from the
    cache.  Peak memory is not among them: under valgrind it is valgrind's.  ``short``:
    the short count, cached apart from the full one.
    """
    key = _key(tree, manifest, short)
    cache = _counts
    with cache.flight(key):
        cached = cache.get(key)
        if cached is not None:
            return Count(cached[0], 0.0, cached[1], None, dict(cached[2]), 0.0, cached[3])
        return _count_now(
            cache, key, sandbox, tree, manifest, workdir, wall_limit, short, cpu_limit
        )


def _count_now(
    cache: _CountCache,
    key: tuple[str, tuple[str, ...]],
    sandbox: Sandbox,
    tree: Mapping[str, str],
    manifest: Manifest,
    workdir: Path | None,
    wall_limit: float | None,
    short: Short,
    cpu_limit: float | None,
) -> Count:
    """Count ``tree`` now (no cached count) and cache what succeeded."""
    with contextlib.ExitStack() as stack:
        where = workdir if workdir is not None else stack.enter_context(sandbox.workspace(tree))
        result = run_counted(sandbox, where, manifest, wall_limit, short, cpu_limit=cpu_limit)
    wall, cpu = result.wall_seconds, result.cpu_seconds or 0.0
    if not result.ok:
        detail = result.detail
        if result.failure == "exit":  # the guest's last words, not valgrind's summary
            guest = "\n".join(x for x in result.stderr.splitlines() if not _VALGRIND_LINE.match(x))
            detail = f"exit code {result.returncode}: {last_line(guest)}"
        if result.returncode == -signal.SIGSYS:
            detail = (
                "killed by SIGSYS: it ran another program (exec) under the instruction "
                "counter, which the count cannot follow; a counted benchmark is one "
                "process (docs/sandbox.md, 'One process under the counter')"
            )
        return Count(None, wall, wall, (result.failure or "exit", detail), {}, cpu)
    try:
        count = read_instructions(result)
    except ValueError as exc:
        return Count(None, wall, wall, ("bench-output", str(exc)), {}, cpu)
    figures = read_figures(result, manifest.fitness.printed_figures())
    figures.pop(PEAK_MEMORY, None)
    cache.put(key, (count, wall, figures, cpu))
    return Count(count, wall, wall, None, dict(figures), cpu, cpu)
