"""Where the benchmark spends its time, as the sandbox's cProfile rows report it.

The rows cross a process boundary, so anything malformed is skipped rather than trusted:
a bad row must cost one hotspot, never the whole analysis.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: how many builtins' call counts one row may carry (the rows come from the sandbox)
_MAX_BUILTINS = 256
_BUILTIN = re.compile(r"<built-in method (?:builtins\.)?([\w.]+)>")
_METHOD = re.compile(r"<method '(\w+)' of '([\w.]+)' objects>")


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
    #: how many times it called each builtin, by name (``sorted``, ``list.append``)
    builtin_calls: tuple[tuple[str, int], ...] = ()

    def called(self, name: str) -> int:
        """How many times this function called the builtin ``name`` (0 if never)."""
        return sum(count for called, count in self.builtin_calls if called == name)


@dataclass(frozen=True)
class Profile:
    """A benchmark run's hotspots, heaviest first."""

    hotspots: tuple[Hotspot, ...]
    total: float
    #: the instructions the benchmark executes on this version, when counted
    #: (``measure = "instructions"``): the scale :mod:`evolution.priors` weighs the work
    #: a rewrite removes against, since the profile's clock then counts events (calls and
    #: returns) and a C call weighs one event, whatever work it does
    instructions: float | None = None

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


def builtin_name(raw: str) -> str:
    """cProfile's name of a C function, plainly: ``sorted``, ``list.append``, ``_bisect.bisect_left``."""
    found = _BUILTIN.fullmatch(raw)
    if found:
        return found.group(1)
    method = _METHOD.fullmatch(raw)
    return f"{method.group(2)}.{method.group(1)}" if method else raw


def _calls(value: object) -> tuple[tuple[str, int], ...]:
    """The builtin call counts of a row, junk left out (they cross the sandbox's boundary)."""
    if not isinstance(value, Mapping):
        return ()
    found: dict[str, int] = {}
    for raw, count in list(value.items())[:_MAX_BUILTINS]:
        if isinstance(raw, str) and len(raw) <= 200 and type(count) is int and count >= 0:
            name = builtin_name(raw)
            found[name] = found.get(name, 0) + count
    return tuple(sorted(found.items()))


_Row = tuple[str, str, int, int, float, float, float, tuple[tuple[str, int], ...]]


def _row(row: object) -> _Row | None:
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
    builtin_share = min(builtin or 0.0, cumtime)
    return (
        file,
        function,
        line,
        calls,
        tottime,
        cumtime,
        builtin_share,
        _calls(row.get("builtin_calls")),
    )


def parse_profile(
    rows: Sequence[Mapping[str, object]],
    total: float | None = None,
    instructions: float | None = None,
) -> Profile:
    """Build a profile from sandbox rows (and the version's instruction count, if
    counted); junk rows are skipped.

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
            called,
        )
        for file, function, line, calls, tottime, cumtime, builtin, called in parsed
    ]
    hotspots.sort(key=lambda h: (-h.cumtime, h.file, h.line, h.function))
    counted = _number(instructions)
    return Profile(tuple(hotspots), run, counted if counted else None)
