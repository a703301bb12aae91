"""The bandit's prior from the static weight, and its memory of sites rejected on unchanged code."""

from __future__ import annotations

import random
import textwrap
from dataclasses import dataclass

import pytest

from evolution.analysis import Opportunity
from evolution.memory import SearchMemory
from evolution.patch import make_patch
from evolution.planner import Outcomes, plan, prior
from evolution.sites import changed_functions, function_fingerprint, functions

SOURCE = textwrap.dedent(
    """
    import re


    def parse(lines):
        out = []
        for line in lines:
            out.append(line.strip())
        return out


    class Index:
        @staticmethod
        def add(words):
            seen = []
            for w in words:
                seen.append(w)
            return seen
    """
)

ALIASED = SOURCE.replace(
    "    out = []\n    for line in lines:\n        out.append(line.strip())",
    "    out = []\n    _out_append = out.append\n    for line in lines:\n"
    "        _out_append(line.strip())",
)


@dataclass(frozen=True)
class Opp:
    file: str
    function: str
    line: int
    kind: str
    evidence: str = "loop"
    expected_gain: float = 1.1
    confidence: float = 0.8
    weight: float = 1.2
    fingerprint: str = ""


def test_the_aliased_source_differs_in_parse_only() -> None:
    assert ALIASED != SOURCE and "_out_append" in ALIASED


def test_functions_are_named_as_the_mutators_name_them() -> None:
    spans = functions(SOURCE)
    assert sorted(spans) == ["Index.add", "parse"]
    add = spans["Index.add"]
    assert add.first_line == add.def_line - 1  # the decorator's line, as cProfile reports it
    assert functions("def (:") == {}


def test_fingerprint_ignores_positions_and_sees_edits() -> None:
    shifted = "\n\n# a comment\n" + SOURCE
    tree, moved = {"a.py": SOURCE}, {"a.py": shifted}
    assert function_fingerprint(tree, "a.py", "parse") == function_fingerprint(
        moved, "a.py", "parse"
    )
    edited = {"a.py": ALIASED}
    assert function_fingerprint(tree, "a.py", "parse") != function_fingerprint(
        edited, "a.py", "parse"
    )
    assert function_fingerprint(tree, "a.py", "Index.add") == function_fingerprint(
        edited, "a.py", "Index.add"
    )
    assert function_fingerprint(tree, "a.py", "missing") == ""
    assert function_fingerprint(tree, "b.py", "parse") == ""


def test_changed_functions_of_a_patch() -> None:
    parent = {"a.py": SOURCE, "notes.txt": "x"}
    patch = make_patch(parent, {"a.py": ALIASED, "notes.txt": "x"})
    fingerprint = functions(SOURCE)["parse"].fingerprint
    assert changed_functions(parent, patch) == [("a.py", "parse", fingerprint)]
    assert changed_functions({"a.py": "other"}, patch) == []  # does not apply: nothing learnt


def test_prior_from_the_static_weight() -> None:
    assert prior(None) == (1.0, 1.0)
    a, b = prior(1.2)
    assert a == pytest.approx(1.0) and b == pytest.approx(1.0)
    low, high = prior(1.05), prior(2.0)
    assert low[0] / sum(low) == pytest.approx(0.2)
    assert high[0] / sum(high) == pytest.approx(1 / 1.2)
    assert prior(1.0)[0] / sum(prior(1.0)) == pytest.approx(0.05)


def test_a_heavier_rewrite_is_believed_more_before_any_try() -> None:
    heavy = Opp("a.py", "f", 1, "memoize", weight=2.0)
    light = Opp("a.py", "g", 2, "local_alias", weight=1.05)
    [first, second] = plan(
        [light, heavy], Outcomes(), risks={}, rng=random.Random(0), limit=2, explore=False
    )
    assert first.mutator == "memoize"
    # same gain and confidence: the prior means alone part them (1/1.2 against 0.2)
    assert first.score == pytest.approx(second.score * (1 / 1.2) / 0.2)


def test_a_rejected_site_is_not_proposed_again_while_its_code_is_unchanged() -> None:
    tree = {"a.py": SOURCE}
    fingerprint = function_fingerprint(tree, "a.py", "parse")
    outcomes = Outcomes()
    outcomes.remember_patch("local_alias", tree, make_patch(tree, {"a.py": ALIASED}))
    assert outcomes.failed_on("local_alias", "a.py", "parse", fingerprint)
    same = Opp("a.py", "parse", 7, "local_alias", fingerprint=fingerprint)
    other_mutator = Opp("a.py", "parse", 7, "comprehension", fingerprint=fingerprint)
    changed = Opp("a.py", "parse", 7, "local_alias", fingerprint="0123")
    unknown = Opp("a.py", "parse", 8, "local_alias")
    plans = plan(
        [same, other_mutator, changed, unknown],
        outcomes,
        risks={},
        rng=random.Random(1),
        limit=10,
    )
    kept = sorted((p.mutator, p.opportunity.fingerprint, p.opportunity.line) for p in plans)
    assert kept == [
        ("comprehension", fingerprint, 7),
        ("local_alias", "", 8),
        ("local_alias", "0123", 7),
    ]


def test_outcomes_from_the_log() -> None:
    tree = {"a.py": SOURCE}
    patch = make_patch(tree, {"a.py": ALIASED})
    rows = [
        {"mutator": "local_alias", "kind": "local_alias", "verdict": "reject", "parent": "v1", "patch": patch},
        {"mutator": "local_alias", "kind": "local_alias", "verdict": "adopt", "parent": "v1", "patch": patch},
        {"mutator": "memoize", "kind": "memoize", "verdict": "hold", "parent": "v1", "patch": patch},
        {"mutator": "memoize", "kind": "memoize", "verdict": "reject", "parent": "gone", "patch": patch},
    ]  # fmt: skip
    trees = {"v1": tree}
    outcomes = Outcomes.from_log(rows, trees.get)
    assert outcomes.table == {
        ("local_alias", "local_alias"): (2, 1),
        ("memoize", "memoize"): (2, 0),
    }
    fingerprint = function_fingerprint(tree, "a.py", "parse")
    # a held candidate is no loss of its arm, but its site is settled on this code
    assert outcomes.failed == {
        ("local_alias", "a.py", "parse", fingerprint),
        ("memoize", "a.py", "parse", fingerprint),
    }
    assert Outcomes.from_log(rows).failed == set()  # no trees: counts only


def test_a_held_site_that_measured_a_pass_ends_the_search_with_its_reason() -> None:
    """tomlparse at threshold 1.01: its one passing rewrite was held (size limit); the
    stop rule counted its kind as paying and kept a slot for the held site, the planner
    offered the same candidate, skipped as judged: "no candidates", cycle after cycle."""
    tree = {"a.py": SOURCE}
    patch = make_patch(tree, {"a.py": ALIASED})
    fingerprint = function_fingerprint(tree, "a.py", "parse")
    site = Opportunity("a.py", "parse", 7, "local_alias", "loop", 1.004, 0.5,
                       predicted_gain=1.004, fingerprint=fingerprint)  # fmt: skip
    memory = SearchMemory()
    memory.learn("v1", tree, [("local_alias", "local_alias", patch, 1.04, False)], {patch: 1.004})
    slots, reason = memory.prepare([site], 1.01, ["a.py"], "v1")
    # not settled: its kind paid, so it keeps a slot
    assert [(o.function, o.line) for o in slots] == [("parse", 7)] and reason is None
    held = SearchMemory()
    held.learn("v1", tree, [("local_alias", "local_alias", patch, 1.04, True)], {patch: 1.004})
    slots, reason = held.prepare([site], 1.01, ["a.py"], "v1")
    assert slots == [] and reason is not None
    assert "current code and rejected (or held for approval)" in reason
