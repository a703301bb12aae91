"""Fitness plots: every objective the manifest declares, over versions and over time.

One drawing for `tars log plot` (a PNG or SVG file) and the dashboard (SVG served from
the package, no script, no CDN).  matplotlib draws on its Agg backend, chosen before
pyplot is ever imported, so no display is needed and no GUI toolkit is loaded; a figure
is built with the object API (``Figure``), not pyplot's global state, so two threads can
draw at once.

Input: the ``versions`` rows the admin channel's ``genome`` op gives
(``[version, parent, mutator, fitness, seq, time_ns, node, state, figures, ratio]``) and
the objectives as ``(name, direction)``; the first is the main metric, its values are
each version's fitness, the others come from each version's figures.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from evolution.errors import ManifestError
from evolution.manifest import parse_manifest

__all__ = ["objectives_of", "plot_fitness"]

Objective = tuple[str, str]
#: the most points drawn with a marker each; longer series are a line alone
MARKERS = 400


def objectives_of(manifest_text: str) -> list[Objective]:
    """The manifest's objectives: the main metric, then every limit and work figure."""
    try:
        fitness = parse_manifest(manifest_text).fitness
    except ManifestError:
        return [("fitness", "minimize")]
    found: list[Objective] = [(fitness.metric, fitness.direction)]
    found += [(limit.metric, limit.direction) for limit in fitness.limits]
    found += [(name, "same") for name in fitness.work]
    return found


def _series(
    versions: Sequence[Sequence[Any]], name: str, main: bool
) -> tuple[list[int], list[datetime], list[float], list[bool]]:
    index, times, values, kept = [], [], [], []
    for i, row in enumerate(versions):
        value = row[3] if main else (row[8] or {}).get(name)
        if not isinstance(value, int | float):
            continue
        index.append(i)
        times.append(datetime.fromtimestamp(int(row[5]) / 1e9, UTC))
        values.append(float(value))
        kept.append(row[7] != "rolled_back")
    return index, times, values, kept


def plot_fitness(
    versions: Sequence[Sequence[Any]],
    objectives: Sequence[Objective],
    *,
    genome: str,
    fmt: str = "svg",
    by: str = "both",
) -> bytes:
    """The plot as ``svg`` or ``png`` bytes: one row per objective, a column per axis
    (``by``: ``version``, ``time`` or ``both``); rolled-back versions are grey crosses."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    axes_kinds = ["version", "time"] if by == "both" else [by]
    rows = max(1, len(objectives))
    figure = Figure(figsize=(5.2 * len(axes_kinds), 2.4 * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, len(axes_kinds), squeeze=False)
    for r, (name, direction) in enumerate(objectives or [("fitness", "minimize")]):
        index, times, values, kept = _series(versions, name, r == 0)
        for c, kind in enumerate(axes_kinds):
            axis = grid[r][c]
            xs: Sequence[Any] = index if kind == "version" else times
            good = [(x, y) for x, y, k in zip(xs, values, kept, strict=True) if k]
            bad = [(x, y) for x, y, k in zip(xs, values, kept, strict=True) if not k]
            if good:  # markers only where they can be told apart (and the SVG stays small)
                marker = "." if len(good) <= MARKERS else ""
                axis.plot(*zip(*good, strict=True), marker=marker, linewidth=1, color="#1f6feb")
            if bad:
                axis.plot(*zip(*bad, strict=True), "x", color="#999999", label="rolled back")
                axis.legend(loc="best", fontsize=7)
            arrow = {"minimize": "lower is better", "maximize": "higher is better"}
            axis.set_title(f"{name} ({arrow.get(direction, 'work: stays equal')})", fontsize=9)
            axis.set_xlabel("version (order adopted)" if kind == "version" else "time (UTC)")
            axis.tick_params(labelsize=7)
            if kind == "time":
                locator = AutoDateLocator()
                axis.xaxis.set_major_locator(locator)
                axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            if not values:
                axis.text(0.5, 0.5, "no figures recorded", ha="center", transform=axis.transAxes)
    figure.suptitle(f"{genome}: {len(versions)} versions", fontsize=10)
    out = io.BytesIO()
    figure.savefig(out, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()
