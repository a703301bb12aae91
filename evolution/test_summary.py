"""How many tests a test run ran, from its summary, and whether a candidate ran fewer.

Why: a test command's exit status is the candidate's to set.  The reward hack a model
finds first is to end the process with status 0 before the tests run (``os._exit(0)``
when ``unittest`` is imported) or to skip them; the exit status then says "passed".
A candidate's tests are its parent's tests (a patch touches the genome's sources, not
its tests), so a run of them that ran fewer, or skipped more, than the same command on
the parent did not pass them.  The summary is read from the runners' own last lines
(``unittest``: ``Ran 12 tests`` and ``OK (skipped=1)``; ``pytest``: ``12 passed, 1
skipped``); a runner whose summary is not recognised on the parent is not checked.
A candidate that prints a forged summary is not stopped by this (it runs in the same
process as the runner); the held-out tests and the human gate are for that.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_SKIPPED = re.compile(r"^(?:OK|FAILED) \((?:[^)]*?)skipped=(\d+)", re.MULTILINE)
_PYTEST_LINE = re.compile(r"^=*\s*(?:\d+ \w+(?:, )?)+(?: in [\d.]+s)", re.MULTILINE)
_PYTEST_PART = re.compile(r"(\d+) (passed|skipped|failed|errors?|xfailed|xpassed|deselected)")


class SuiteSummary(NamedTuple):
    """What a test run's summary says it did."""

    #: tests that ran (unittest: ``Ran N``; pytest: passed + failed + errors + xfailed + xpassed)
    ran: int
    #: tests skipped
    skipped: int


def summary(stdout: str, stderr: str) -> SuiteSummary | None:
    """The last summary ``unittest`` or ``pytest`` printed; None when there is none."""
    text = f"{stdout}\n{stderr}"
    ran = _UNITTEST_RAN.findall(text)
    if ran:
        skipped = _UNITTEST_SKIPPED.findall(text)
        return SuiteSummary(int(ran[-1]), int(skipped[-1]) if skipped else 0)
    lines = _PYTEST_LINE.findall(text)
    if lines:
        parts = {kind.rstrip("s"): int(n) for n, kind in _PYTEST_PART.findall(lines[-1])}
        ran_now = sum(parts.get(k, 0) for k in ("passed", "failed", "error", "xfailed", "xpassed"))
        return SuiteSummary(ran_now, parts.get("skipped", 0))
    return None


def fewer_tests(parent: SuiteSummary | None, candidate: SuiteSummary | None) -> str | None:
    """Why the candidate's passing run does not count as passing, or None.

    Only a parent whose summary was read is a yardstick: a runner TARS cannot read is
    left to its exit status, as before.
    """
    if parent is None:
        return None
    if candidate is None:
        return (
            f"its test run printed no summary, where its parent's ran {parent.ran} tests: "
            "the test process ended before its runner reported (a candidate must not stop "
            "or bypass the tests)"
        )
    if candidate.ran < parent.ran:
        return (
            f"its test run ran {candidate.ran} tests, its parent's {parent.ran}: tests were not run"
        )
    if candidate.skipped > parent.skipped:
        return (
            f"its test run skipped {candidate.skipped} tests, its parent's {parent.skipped}: "
            "a candidate must not skip tests"
        )
    return None
