"""The figures of one analysis window: per colour requests, errors, latencies; mirrored answers.

A window runs from one ``ServiceControl.window()`` to the next. Latencies are kept as
they come (bounded: past :data:`KEEP` a window keeps every other one, so the
percentiles stay honest under any load), and p50/p99 are read when the window closes.
Two answers of a mirrored request are equal when their JSON texts are equal (keys
sorted): what a caller would see over HTTP, so a tuple and a list are the same answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from runtime.service.control import ColourWindow, Window
from runtime.service.worker import Reply

__all__ = ["KEEP", "Mirror", "Windows", "json_text"]

#: latencies kept per colour and window before thinning
KEEP = 20_000
#: examples of differing answers kept per window
EXAMPLES = 5
_SHOWN = 300


def json_text(value: Any) -> str:
    """The answer as a caller sees it: JSON, keys sorted (non-JSON values by their repr)."""
    return json.dumps(value, sort_keys=True, default=repr, ensure_ascii=False)


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


class _Colour:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.step = 1
        self.skip = 0

    def add(self, seconds: float, error: bool) -> None:
        self.requests += 1
        self.errors += error
        self.skip += 1
        if self.skip >= self.step:
            self.skip = 0
            self.latencies.append(seconds)
            if len(self.latencies) >= KEEP:
                self.latencies = self.latencies[::2]
                self.step *= 2

    def close(self, version: str | None) -> ColourWindow:
        ordered = sorted(self.latencies)
        return ColourWindow(
            version,
            self.requests,
            self.errors,
            _percentile(ordered, 0.5),
            _percentile(ordered, 0.99),
        )


class Windows:
    """Both colours' figures and the mirrored comparisons since the last :meth:`close`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._colours = {"blue": _Colour(), "green": _Colour()}
        self.mirrored = 0
        self.mismatches = 0
        self.examples: list[tuple[str, str, str]] = []
        self._opened = self._clock()

    def served(self, colour: str, seconds: float, error: bool) -> None:
        with self._lock:
            self._colours[colour].add(seconds, error)

    def compared(self, function: str, kwargs: dict[str, Any], served: Reply, other: Reply) -> None:
        """Two answers to one request; unavailable or timed-out ones are not compared."""
        if "unavailable" in (served.kind, other.kind) or "timeout" in (served.kind, other.kind):
            return
        mine, theirs = _answer(served), _answer(other)
        with self._lock:
            self.mirrored += 1
            if mine == theirs:
                return
            self.mismatches += 1
            if len(self.examples) < EXAMPLES:
                why = f"{served.colour} ({served.version[:12]}) answered {mine[:_SHOWN]}; " + (
                    f"{other.colour} ({other.version[:12]}) answered {theirs[:_SHOWN]}"
                )
                self.examples.append((function, json_text(kwargs)[:2000], why))

    def close(self, blue: str | None, green: str | None) -> Window:
        """The window so far (with each colour's version), and a new one begun."""
        with self._lock:
            now = self._clock()
            window = Window(
                blue=self._colours["blue"].close(blue),
                green=self._colours["green"].close(green),
                mirrored=self.mirrored,
                mismatches=self.mismatches,
                examples=tuple(self.examples),
                seconds=now - self._opened,
            )
            self._reset()
            self._opened = now
        return window


def _answer(reply: Reply) -> str:
    return json_text(reply.result) if reply.ok else f"error {reply.error}"


class Mirror:
    """The two answers of one mirrored request, compared once both are in."""

    def __init__(self, windows: Windows, function: str, kwargs: dict[str, Any]) -> None:
        self.windows, self.function, self.kwargs = windows, function, kwargs
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._served: Reply | None = None
        self._other: Reply | None = None

    def served(self, reply: Reply) -> None:
        with self._lock:
            self._served = reply
            ready = self._other is not None
        if ready:
            self._compare()

    def other(self, reply: Reply) -> None:
        """The copy's answer: it counts in its colour's figures too (its errors, its
        latency), so a 1 % step with a mirror judges green on more than 1 % of traffic."""
        self.windows.served(reply.colour, time.perf_counter() - self._started, not reply.ok)
        with self._lock:
            self._other = reply
            ready = self._served is not None
        if ready:
            self._compare()

    def _compare(self) -> None:
        assert self._served is not None and self._other is not None
        self.windows.compared(self.function, self.kwargs, self._served, self._other)
