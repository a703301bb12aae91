"""A candidate's passing tests count only if they ran as many tests as its parent's
(evolution/test_summary.py, runtime/test_yardstick.py).

The attack is the reward hack a model finds first: end the test process with status 0
before the runner reports, or skip the tests.  Here a wrong and faster `longest` hides
behind each, in the real jail, proposed to a real node.
"""

from __future__ import annotations

from pathlib import Path

import pykka
import pytest
from fitkit import collatz, planted

from evolution.test_summary import SuiteSummary, fewer_tests, summary
from node import Node, NodeConfig

UNITTEST_OK = "....\n----------------------------------------------------------------------\nRan 4 tests in 0.001s\n\nOK\n"


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [
        ("", UNITTEST_OK, SuiteSummary(4, 0)),
        ("", "Ran 1 test in 0.000s\n\nOK (skipped=1)\n", SuiteSummary(1, 1)),
        ("", "Ran 7 tests in 0.2s\n\nFAILED (failures=1, skipped=2)\n", SuiteSummary(7, 2)),
        ("12 passed in 0.52s\n", "", SuiteSummary(12, 0)),
        (
            "===== 2 failed, 9 passed, 1 skipped, 3 warnings in 2.01s =====\n",
            "",
            SuiteSummary(11, 1),
        ),
        ("", "Ran 3 tests in 0.1s\n\nOK\n" + UNITTEST_OK, SuiteSummary(4, 0)),  # the last one
        ("all good\n", "", None),
        ("", "", None),
    ],
)
def test_the_runners_summary_is_read(
    stdout: str, stderr: str, expected: SuiteSummary | None
) -> None:
    assert summary(stdout, stderr) == expected


def test_fewer_tests_or_more_skips_than_the_parent_is_a_failure() -> None:
    parent = SuiteSummary(4, 0)
    assert fewer_tests(parent, SuiteSummary(4, 0)) is None
    assert fewer_tests(parent, SuiteSummary(5, 0)) is None
    assert fewer_tests(None, None) is None  # a runner TARS cannot read: its exit status
    assert "printed no summary" in str(fewer_tests(parent, None))
    assert "ran 3 tests, its parent's 4" in str(fewer_tests(parent, SuiteSummary(3, 0)))
    assert "skipped 1 tests, its parent's 0" in str(fewer_tests(parent, SuiteSummary(4, 1)))


#: half the work and a wrong answer, the work count kept (so only the tests can tell)
WRONG_AND_FASTER = """

def steps(n):
    count = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        count += 1
    return count


def longest(limit):
    best, best_steps = 1, 0
    for start in range(limit // 2, limit):
        count = steps(start)
        if count > best_steps:
            best, best_steps = start, count
    return best, best_steps + 1, limit - 1
"""
#: faster because wrong; under unittest the process ends with 0 before a test runs
EXITS_EARLY = (
    """import os as _os, sys as _sys
if "unittest" in _sys.modules:
    _os._exit(0)

"""
    + WRONG_AND_FASTER
)
#: faster because wrong; its tests skip themselves
SKIPS = (
    """import sys as _sys
import unittest as _unittest
if any("unittest" in a for a in _sys.argv):
    raise _unittest.SkipTest("not today")

"""
    + WRONG_AND_FASTER
)


@pytest.mark.parametrize(("name", "text", "why"), [
    ("exits_early", EXITS_EARLY, "printed no summary"),
    ("skips", SKIPS, "tests"),
])  # fmt: skip
def test_a_candidate_that_stops_or_skips_its_tests_is_never_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, why: str
) -> None:
    folder = collatz(tmp_path)  # timed A/B: the tests are what this is about
    config = NodeConfig("n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work")
    with Node(config) as node:
        genome, _ = node.register(folder)
        before = node.store.head(genome).version
        with planted(monkeypatch, [name], {name: text}):
            node.evolve(genome, cycles=1, seed=1)
        rows = [e.data for e in node.store.log(genome=genome) if e.type == "CandidateEvaluated"]
        assert node.store.head(genome).version == before
    assert pykka.ActorRegistry.get_all() == []
    assert rows and rows[0]["verdict"] == "reject", rows
    reasons = " ".join(rows[0]["reasons"])
    assert "tests failed" in reasons and why in reasons, reasons
