"""Where the benchmark spends its time, as the sandbox's cProfile rows report it.

The rows cross a process boundary, so anything malformed is skipped rather than trusted:
a bad row must cost one hotspot, never the whole analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Hotspot:
    """One profiled function; ``share`` is its cumulative time over the whole benchmark.

    ``self_share`` is its own time (``tottime``) over the whole benchmark: the time spent
    in its own code, not in the functions it calls.  That is what a rewrite inside the
    function can save; the cumulative share of a recursive solver or a dispatcher is
    "everything", which no local rewrite touches.
    """

    file: str
    function: str
    line: int
    calls: int
    tottime: float
    cumtime: float
    share: float
    self_share: float = 0.0
    #: the own time of the builtins (C functions) its lines call, over the whole benchmark:
    #: cProfile keeps ``sorted``'s time off the caller's ``tottime``, yet rewriting the
    #: caller's lines (``sorted(xs)[0]`` to ``min(xs)``) is what removes it
    builtin_share: float = 0.0


@dataclass(frozen=True)
class Profile:
    """A benchmark run's hotspots, heaviest first."""

    hotspots: tuple[Hotspot, ...]
    total: float

    def heat(self, file: str, function: str) -> float:
        """Cumulative share of run time inside ``function`` of ``file`` (0.0 if never seen)."""
        found = self.find(file, function)
        return found.share if found is not None else 0.0

    def find(self, file: str, function: str, lines: Sequence[int] = ()) -> Hotspot | None:
        """The row of ``function`` in ``file``, or None if the benchmark never ran it.

        cProfile names methods by their bare name, so "Index.add" also matches "add"; when
        several functions of the file share that name, the one whose row starts on one of
        ``lines`` (the function's decorator or ``def`` line) is it, else the heaviest.
        """
        last = function.rsplit(".", 1)[-1]
        named = [
            h
            for h in self.hotspots
            if h.file == file and (h.function == function or h.function.rsplit(".", 1)[-1] == last)
        ]
        placed = [h for h in named if h.line in lines]
        exact = [h for h in named if h.function == function]
        for group in (placed, exact, named):
            if group:
                return max(group, key=lambda h: (h.cumtime, h.tottime, -h.line))
        return None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _row(row: object) -> tuple[str, str, int, int, float, float, float] | None:
    if not isinstance(row, Mapping):
        return None
    file, function, line, calls = (
        row.get("file"),
        row.get("function"),
        row.get("line"),
        row.get("calls"),
    )
    tottime, cumtime = _number(row.get("tottime")), _number(row.get("cumtime"))
    if not isinstance(file, str) or not file or not isinstance(function, str) or not function:
        return None
    if (
        isinstance(line, bool)
        or not isinstance(line, int)
        or isinstance(calls, bool)
        or not isinstance(calls, int)
    ):
        return None
    if tottime is None or cumtime is None or calls < 0:
        return None
    builtin = _number(row.get("builtin", 0.0))  # rows of older sandboxes have none
    return file, function, line, calls, tottime, cumtime, min(builtin or 0.0, cumtime)


def parse_profile(rows: Sequence[Mapping[str, object]], total: float | None = None) -> Profile:
    """Build a profile from sandbox rows; junk rows are skipped.

    Without an explicit ``total`` the run time is estimated as the larger of the biggest
    cumulative time (the benchmark's entry point) and the sum of own times.
    """
    parsed = [r for r in (_row(row) for row in rows) if r is not None]
    estimate = max(
        max((r[5] for r in parsed), default=0.0),
        sum(r[4] + r[6] for r in parsed),
    )
    run = total if total is not None and total > 0 else estimate
    hotspots = [
        Hotspot(
            file,
            function,
            line,
            calls,
            tottime,
            cumtime,
            min(1.0, cumtime / run) if run > 0 else 0.0,
            min(1.0, tottime / run) if run > 0 else 0.0,
            min(1.0, builtin / run) if run > 0 else 0.0,
        )
        for file, function, line, calls, tottime, cumtime, builtin in parsed
    ]
    hotspots.sort(key=lambda h: (-h.cumtime, h.file, h.line, h.function))
    return Profile(tuple(hotspots), run)
