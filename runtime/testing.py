"""What the tests and the benchmarks share: waiting for a condition, and free ports.

One copy, so a test and a benchmark never disagree on how long "eventually" is or how a
port is picked.  Waiting is bounded and polls: a bound is an upper limit for something
to happen at all, never an expectation of speed (tests assert no wall-clock times).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from runtime.ports import free_port, free_ports

__all__ = ["WAIT", "free_port", "free_ports", "wait_until"]

T = TypeVar("T")

#: the default bound for anything to happen in a test
WAIT = 20.0


def wait_until(
    predicate: Callable[[], T], what: str, timeout: float = WAIT, interval: float = 0.01
) -> T:
    """Poll ``predicate`` until it returns something true, and return that.

    Raises :class:`AssertionError` naming ``what`` when ``timeout`` seconds pass first, so
    a test that waits in vain fails with what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
