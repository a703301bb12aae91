"""The figures besides the main metric: work counts that must not change, limits that must hold.

A candidate is adopted when the main metric gains *and* nothing else gave way for it:

- **work counts** (``[fitness] work``): numbers the benchmark prints that count what it
  did (``lines_parsed``).  A candidate whose counts differ from its parent's, even by
  one, did other work, not the same work faster: skipping half the input is the
  cheapest "speed-up" there is, and the main metric cannot see it;
- **limits** (``[[fitness.limits]]``): a second objective with a direction and the
  largest change for the worse allowed (``peak_memory_mb``, ``max_change = 0.10``: no
  more than 10 % more memory than the parent).  A memo table that makes the benchmark
  faster by growing without bound is the shape this catches.

The sandbox summarises each side's runs as figures (:func:`summarise`): the median under
the figure's name, and its range under ``name:lo`` / ``name:hi`` when the runs did not
all agree.  Everything here is pure; the reasons name the figure, both values and the
limit, so the log says exactly what was traded.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from evolution.manifest import FitnessLimit

#: a figure's range over a side's runs, kept only when they disagreed
LO, HI = ":lo", ":hi"
#: the slack on a limit: a figure printed with rounding may sit a hair over it
_EPSILON = 1e-9


def summarise(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """One side's figures over its runs: the median of each, and its range when runs disagree.

    A figure missing from a run is left out of that run only; a figure no run had is
    absent, which the checks below report as "printed no …".
    """
    names = sorted({name for run in runs for name in run})
    out: dict[str, float] = {}
    for name in names:
        values = [float(run[name]) for run in runs if name in run]
        out[name] = float(statistics.median(values))
        low, high = min(values), max(values)
        if low != high:
            out[name + LO], out[name + HI] = low, high
    return out


def span(figures: Mapping[str, float], name: str) -> tuple[float, float] | None:
    """The (lowest, highest) value a side's runs gave for ``name``; None when never printed."""
    if name not in figures:
        return None
    middle = figures[name]
    return figures.get(name + LO, middle), figures.get(name + HI, middle)


def work_reasons(
    work: Iterable[str], parent: Mapping[str, float], candidate: Mapping[str, float]
) -> list[str]:
    """Why the candidate did not do its parent's work (empty: every count matched exactly)."""
    reasons: list[str] = []
    for name in work:
        before, after = span(parent, name), span(candidate, name)
        if before is None:
            reasons.append(
                f"the benchmark printed no {name} for the parent: print it in the benchmark's "
                "JSON line or take it out of [fitness] work"
            )
        elif after is None:
            reasons.append(
                f"the benchmark printed no {name} for the candidate (its parent: "
                f"{_range(before)}): the work it did is unknown"
            )
        elif after != before:
            less = after[1] < before[0]
            more = after[0] > before[1]
            what = "less work" if less else "more work" if more else "other work"
            reasons.append(
                f"the benchmark reported {name} {_range(after)}, its parent {_range(before)}: "
                f"the candidate does {what}, not the same work faster"
            )
    return reasons


def change(limit: FitnessLimit, before: float, after: float) -> float:
    """How much worse ``after`` is than ``before`` as a fraction (negative: better)."""
    if before == 0:
        if after == before:
            return 0.0
        worse = after > before if limit.direction == "minimize" else after < before
        return math.inf if worse else -math.inf
    delta = (after - before) / abs(before)
    return delta if limit.direction == "minimize" else -delta


def limit_reasons(
    limits: Iterable[FitnessLimit], parent: Mapping[str, float], candidate: Mapping[str, float]
) -> list[str]:
    """The limits the candidate broke, each naming the figure, both values and the limit."""
    reasons: list[str] = []
    for limit in limits:
        name = limit.metric
        allowed = f"{'+' if limit.direction == 'minimize' else '-'}{limit.max_change:.0%}"
        if name not in parent or name not in candidate:
            side = "parent" if name not in parent else "candidate"
            reasons.append(
                f"{name} was not measured for the {side}, so its limit ({allowed}) cannot be "
                f"checked: {_unmeasured(name)}"
            )
            continue
        before, after = parent[name], candidate[name]
        worse = change(limit, before, after)
        if worse > limit.max_change + _EPSILON:
            reasons.append(
                f"{name} {_number(after)} against its parent's {_number(before)} "
                f"({_percent(after, before)}), over the limit of {allowed} ({limit.direction})"
            )
    return reasons


def trade_offs(
    main: str,
    limits: Iterable[FitnessLimit],
    work: Iterable[str],
    parent: Mapping[str, float],
    candidate: Mapping[str, float],
) -> dict[str, Any]:
    """Every figure of both sides as the log keeps it with the candidate.

    ``{name: {"parent": x, "candidate": y, …}}``: a limit also carries its ``direction``
    and ``max_change``, a work count ``"work": True``; the built-in peak memory is kept
    even when no limit names it.  Ranges (runs that disagreed) are kept as ``*_range``.
    """
    out: dict[str, Any] = {}
    names = sorted({n for n in (*parent, *candidate) if not n.endswith((LO, HI)) and n != main})
    by_name = {limit.metric: limit for limit in limits}
    counted = set(work)
    for name in names:
        row: dict[str, Any] = {"parent": parent.get(name), "candidate": candidate.get(name)}
        for side, figures in (("parent", parent), ("candidate", candidate)):
            found = span(figures, name)
            if found is not None and found[0] != found[1]:
                row[f"{side}_range"] = list(found)
        limit = by_name.get(name)
        if limit is not None:
            row["direction"], row["max_change"] = limit.direction, limit.max_change
        if name in counted:
            row["work"] = True
        out[name] = row
    return out


def _unmeasured(name: str) -> str:
    if name == "peak_memory_mb":
        return "this machine gave no peak memory for the run (docs/sandbox.md)"
    return f"print {name} in the benchmark's JSON line"


def _range(values: tuple[float, float]) -> str:
    low, high = values
    return _number(low) if low == high else f"{_number(low)}–{_number(high)}"


def _number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _percent(after: float, before: float) -> str:
    if before == 0:
        return "from zero"
    return f"{(after - before) / abs(before):+.1%}"
