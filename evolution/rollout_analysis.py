"""Judging one analysis window of a rollout: Successful, Failed or Inconclusive, in words.

Pure: the figures come in (the service's :class:`runtime.service.control.Window`, read
through the :class:`Figures` protocol, since ``evolution`` imports nothing of TARS), a
verdict and its reason go out.  The rules, in the order they are checked
(docs/rollouts.md, "Analysis"):

1. more mirrored requests answered differently than ``mismatches`` allows: Failed, even
   in a small window (one wrong answer is evidence enough; no amount of traffic makes it
   right);
2. no request at all in the window, on either colour (an idle service: nobody to compare
   on): Successful when ``idle_passes`` (the default: the tests and the exact count are
   all the evidence there is), else Inconclusive; fewer green requests than
   ``min_requests``: Inconclusive (too little to judge errors or latency);
3. green's error rate above blue's by more than ``max_error_increase``: Failed;
4. green's p99 above ``max_p99_ratio`` × blue's (blue's taken as at least ``p99_floor``,
   so sub-millisecond noise never fails a rollout): Failed;
5. otherwise Successful.

Inconclusive windows are merged (:func:`merge`) so the next verdict is taken on all of
their traffic: "more traffic, then a decision".
"""

from __future__ import annotations

import json
from typing import Literal, NamedTuple, Protocol

from evolution.manifest import RolloutSettings

Result = Literal["Successful", "Failed", "Inconclusive"]
SUCCESSFUL: Result = "Successful"
FAILED: Result = "Failed"
INCONCLUSIVE: Result = "Inconclusive"

#: characters of a mirrored request's arguments quoted in a reason
QUOTE = 60


class ColourFigures(Protocol):
    """One colour over a window (``control.ColourWindow`` has these fields)."""

    @property
    def requests(self) -> int: ...

    @property
    def errors(self) -> int: ...

    @property
    def p50(self) -> float: ...

    @property
    def p99(self) -> float: ...


class Figures(Protocol):
    """Both colours over one window (``control.Window`` has these fields)."""

    @property
    def blue(self) -> ColourFigures: ...

    @property
    def green(self) -> ColourFigures: ...

    @property
    def mirrored(self) -> int: ...

    @property
    def mismatches(self) -> int: ...

    @property
    def examples(self) -> tuple[tuple[str, str, str], ...]: ...

    @property
    def seconds(self) -> float: ...


class Colour(NamedTuple):
    """A colour's figures as this module keeps them (merged windows)."""

    requests: int
    errors: int
    p50: float
    p99: float


class Observed(NamedTuple):
    """A window as this module keeps it: merged Inconclusive windows are one of these."""

    blue: Colour
    green: Colour
    mirrored: int
    mismatches: int
    examples: tuple[tuple[str, str, str], ...]
    seconds: float


class Analysis(NamedTuple):
    """A window's verdict and why, in words a person reads in `tars rollout status`."""

    result: Result
    reason: str


def analyse(window: Figures, settings: RolloutSettings) -> Analysis:
    """The verdict on one window (rules in the module docstring, checked in that order)."""
    blue, green = window.blue, window.green
    if window.mismatches > settings.mismatches:
        return Analysis(FAILED, _mismatch_reason(window))
    if settings.idle_passes and blue.requests == 0 and green.requests == 0:
        return Analysis(
            SUCCESSFUL,
            "no live request in the window on either colour (an idle service): the step "
            "passes on the tests' and the exact count's evidence",
        )
    if green.requests < settings.min_requests:
        return Analysis(
            INCONCLUSIVE,
            f"green served {green.requests} request{'s' if green.requests != 1 else ''}, "
            f"fewer than the {settings.min_requests} needed",
        )
    green_rate = green.errors / green.requests
    blue_rate = blue.errors / blue.requests if blue.requests else 0.0
    if green_rate - blue_rate > settings.max_error_increase + 1e-12:
        return Analysis(
            FAILED,
            f"green failed {green.errors} of {green.requests} requests ({green_rate:.1%}), "
            f"blue {blue.errors} of {blue.requests} ({blue_rate:.1%}); "
            f"at most {settings.max_error_increase:.1%} more is allowed",
        )
    base = max(blue.p99, settings.p99_floor)
    if green.p99 > settings.max_p99_ratio * base:
        ratio = green.p99 / base if base > 0 else float("inf")
        return Analysis(
            FAILED,
            f"green p99 {green.p99:.3f} s is {ratio:.1f}x blue's {blue.p99:.3f} s "
            f"(limit {settings.max_p99_ratio:g}x)",
        )
    agreed = f", {window.mirrored} mirrored answers equal" if window.mirrored else ""
    return Analysis(
        SUCCESSFUL,
        f"green {green.requests} requests, {green_rate:.1%} errors, p99 {green.p99:.3f} s "
        f"against blue's {blue_rate:.1%} and {blue.p99:.3f} s{agreed}",
    )


def _mismatch_reason(window: Figures) -> str:
    text = (
        f"green answered differently on {window.mismatches} of {window.mirrored} mirrored requests"
    )
    if window.examples:
        function, arguments, why = window.examples[0]
        text += f": {call_text(function, arguments)}" + (f" ({why})" if why else "")
    return text


def call_text(function: str, arguments: str) -> str:
    """``report(lines=[...], top=3)`` from the function and its arguments as JSON text,
    each value cut to a few characters (a reason is one line)."""
    try:
        loaded = json.loads(arguments)
    except ValueError:
        loaded = None
    if not isinstance(loaded, dict):
        return f"{function}({_cut(arguments)})"
    parts = [f"{name}={_cut(json.dumps(value))}" for name, value in loaded.items()]
    return f"{function}({', '.join(parts)})"


def _cut(text: str) -> str:
    return text if len(text) <= QUOTE else text[: QUOTE - 3] + "..."


def observed(window: Figures) -> Observed:
    """Any window as this module's own tuple."""
    return Observed(
        _colour(window.blue),
        _colour(window.green),
        window.mirrored,
        window.mismatches,
        tuple(window.examples),
        window.seconds,
    )


def _colour(figures: ColourFigures) -> Colour:
    return Colour(figures.requests, figures.errors, figures.p50, figures.p99)


def merge(first: Figures, second: Figures) -> Observed:
    """Two windows as one: counts add up; percentiles are request-weighted means (the exact
    percentile of the union is not recoverable from two percentiles; the mean of the two is
    what both windows say, weighted by how much each saw)."""
    return Observed(
        _merged(first.blue, second.blue),
        _merged(first.green, second.green),
        first.mirrored + second.mirrored,
        first.mismatches + second.mismatches,
        (tuple(first.examples) + tuple(second.examples))[:3],
        first.seconds + second.seconds,
    )


def _merged(one: ColourFigures, two: ColourFigures) -> Colour:
    total = one.requests + two.requests
    if total == 0:
        return Colour(0, 0, max(one.p50, two.p50), max(one.p99, two.p99))
    return Colour(
        total,
        one.errors + two.errors,
        (one.p50 * one.requests + two.p50 * two.requests) / total,
        (one.p99 * one.requests + two.p99 * two.requests) / total,
    )
