"""What the tests and the benchmarks share: waiting for a condition, free ports, processes by marker.

One copy, so a test and a benchmark never disagree on how long "eventually" is or how a
port is picked.  Waiting is bounded and polls: a bound is an upper limit for something
to happen at all, never an expectation of speed (tests assert no wall-clock times).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from runtime.ports import free_port, free_ports

__all__ = ["WAIT", "free_port", "free_ports", "processes_with", "wait_until"]

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


def processes_with(marker: str) -> list[int]:
    """Host pids (other than this one) whose command line carries ``marker``.

    How a sandbox test sees what a run left behind: a candidate, a daemon it forked, a
    starter, found by a marker written into its command line.
    """
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found
