"""The figures of a benchmark run besides its main metric: what it printed, and its peak memory.

A benchmark prints one JSON line (``{"seconds": 0.41, "lines_parsed": 12000}``); the main
metric is read from it by :func:`runtime.incubation.read_metric`, and the figures the
manifest names as work counts or limits (``[fitness] work``, ``[[fitness.limits]]``) are
read from the same line here.  ``peak_memory_mb`` is the sandbox's own measurement of
the run (:attr:`runtime.sandbox_result.RunResult.peak_memory_mb`), never printed.

Under the instruction counter a run's memory is valgrind's, not the program's (measured
here: a Python benchmark that grows by 52 MiB natively peaks at the same ~95 MiB under
cachegrind either way), so a genome judged by counts gets its peak memory from one
native run per side, taken only when a limit names it; the parent's is kept per version.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

from evolution.manifest import Manifest
from evolution.tree import version_id
from runtime.sandbox import Sandbox
from runtime.sandbox_result import RunResult, SandboxLimits

PEAK_MEMORY = "peak_memory_mb"
_CACHE_SIZE = 64


def read_figures(result: RunResult, names: Sequence[str]) -> dict[str, float]:
    """The ``names`` the run printed in its last JSON line (finite numbers only), and its peak memory.

    A figure that is missing, not a number, or not finite is left out: the governor then
    says which figure the benchmark did not print, for which side.
    """
    out: dict[str, float] = {}
    if result.peak_memory_mb is not None and math.isfinite(result.peak_memory_mb):
        out[PEAK_MEMORY] = round(float(result.peak_memory_mb), 3)
    if not names:
        return out
    for line in reversed(result.stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            return out
        if not isinstance(data, dict):
            return out
        for name in names:
            value = data.get(name)
            if (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                out[name] = float(value)
        return out
    return out


def wants_native_memory(manifest: Manifest) -> bool:
    """Whether a limit names the peak memory (a counted genome then pays one native run per side)."""
    return any(limit.metric == PEAK_MEMORY for limit in manifest.fitness.limits)


class _PeakCache:
    """Peak memory by (tree, command): a parent's native run is taken once per version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._peaks: OrderedDict[tuple[str, tuple[str, ...]], float] = OrderedDict()

    def get(self, key: tuple[str, tuple[str, ...]]) -> float | None:
        with self._lock:
            return self._peaks.get(key)

    def put(self, key: tuple[str, tuple[str, ...]], value: float) -> None:
        with self._lock:
            self._peaks[key] = value
            while len(self._peaks) > _CACHE_SIZE:
                self._peaks.popitem(last=False)


_peaks = _PeakCache()


def native_peak(
    sandbox: Sandbox,
    tree: Mapping[str, str],
    manifest: Manifest,
    workdir: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cache: bool = False,
) -> tuple[float | None, float]:
    """(peak memory in MiB of one native benchmark run, seconds spent); None when the run failed.

    ``env`` is the benchmark's (``runtime.counting.bench_env("benchmark")``); ``cache``
    keeps the figure per version (for the parent: the same tree, the same peak).
    """
    key = (version_id(dict(tree)), tuple(manifest.commands.bench))
    if cache:
        known = _peaks.get(key)
        if known is not None:
            return known, 0.0
    limits = SandboxLimits.from_manifest(manifest.limits)
    if workdir is None:
        with sandbox.workspace(tree) as where:
            result = sandbox.run(where, manifest.commands.bench, limits, env=env)
    else:
        result = sandbox.run(workdir, manifest.commands.bench, limits, env=env)
    if not result.ok or result.peak_memory_mb is None:
        return None, result.wall_seconds
    peak = round(float(result.peak_memory_mb), 3)
    if cache:
        _peaks.put(key, peak)
    return peak, result.wall_seconds
