"""Prompts: built from what the node knows, bounded, and never showing a protected file."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from evolution.errors import LLMError
from evolution.llm_bandit import ModelRecord, choose_model
from evolution.llm_budget import Limits, Price, Spend, exhausted
from evolution.llm_prompt import (
    MAX_ATTEMPTS,
    Attempt,
    Target,
    build_messages,
    function_span,
    prompt_hash,
    with_error,
)
from evolution.llm_targets import choose_targets
from evolution.manifest import parse_manifest
from evolution.planner import Plan

MANIFEST = parse_manifest(
    """
[genome]
name = "g"
description = "a parser of small things"
sources = ["pkg/*.py"]
held_out = ["pkg/hidden_*.py"]
[commands]
test = "python -m unittest"
bench = "python bench.py"
held_out = "python -m unittest pkg.hidden_check"
[fitness]
metric = "seconds"
direction = "minimize"
"""
)
CORE = '''"""Core."""
SECRET_CONSTANT_IN_MODULE = 1


class Box:
    def size(self):
        return 1

    @staticmethod
    def big(items):
        total = 0
        for item in items:
            total += item
        return total


def scan(words, table):
    return [w for w in words if w in table]
'''
TREE = {
    "pkg/core.py": CORE,
    "pkg/hidden_check.py": "HELD_OUT_MARKER = 'never shown'\n",
    "tests/test_core.py": "TEST_FILE_MARKER = 1\n",
    "genome.toml": "GENOME_TOML_MARKER",
}
TARGET = Target(
    "pkg/core.py",
    "scan",
    17,
    "set_membership",
    "w in table (loop depth 1; 80% of the bench's profile)",
)


def test_the_prompt_holds_the_function_its_evidence_and_the_description() -> None:
    system, user = build_messages(TREE, MANIFEST, "v1", TARGET)
    assert system["role"] == "system" and "behaviour must stay identical" in system["content"]
    assert "<<<<<<< SEARCH" in system["content"] and ">>>>>>> REPLACE" in system["content"]
    text = user["content"]
    assert "def scan(words, table):\n    return [w for w in words if w in table]" in text
    assert "80% of the bench's profile" in text and "a parser of small things" in text
    assert "class Box" not in text  # one function, not the file


def test_a_method_is_found_by_its_qualified_name_with_its_decorator() -> None:
    assert function_span(CORE, "Box.big") == (9, 14)
    assert function_span(CORE, "Box.nothing") is None
    _, user = build_messages(TREE, MANIFEST, "v1", Target("pkg/core.py", "Box.big", 10, "k", "e"))
    assert "    @staticmethod\n    def big(items):" in user["content"]


@pytest.mark.parametrize("path", ["pkg/hidden_check.py", "tests/test_core.py", "genome.toml"])
def test_held_out_and_non_source_files_are_never_put_in_a_prompt(path: str) -> None:
    with pytest.raises(LLMError, match="never shown to a model"):
        build_messages(TREE, MANIFEST, "v1", Target(path, "<module>", 1, "k", "e"))


def test_no_prompt_shows_another_file() -> None:
    for target in choose_targets([], TREE, MANIFEST, 10):
        text = str(build_messages(TREE, MANIFEST, "v1", target))
        for marker in ("HELD_OUT_MARKER", "TEST_FILE_MARKER", "GENOME_TOML_MARKER"):
            assert marker not in text


def _attempt(verdict: str, reason: str, parent: str = "v0", patch: str = "") -> Attempt:
    return Attempt(parent, "set_membership", "set_membership", verdict, (reason,), 1.01, patch)


def test_history_is_told_bounded_and_split_by_outcome() -> None:
    touching = "--- a/pkg/core.py\n+++ b/pkg/core.py\n@@ -18,1 +18,1 @@\n-x\n+y\n"
    attempts = [_attempt("reject", f"gain {n} below threshold " + "x" * 500) for n in range(30)]
    attempts += [_attempt("adopt", "faster"), _attempt("reject", "tests failed", "v1", touching)]
    _, user = build_messages(TREE, MANIFEST, "v1", TARGET, attempts)
    text = user["content"]
    assert "Already tried on this function" in text and "tests failed" in text
    assert "Recent changes that were adopted" in text and "faster" in text
    assert text.count("gain ") == MAX_ATTEMPTS and "gain 29 below" in text  # the newest
    assert "x" * 300 not in text  # reasons are cut


def test_the_same_inputs_give_the_same_hash_and_an_error_changes_it() -> None:
    messages = build_messages(TREE, MANIFEST, "v1", TARGET)
    assert prompt_hash("m", messages) == prompt_hash(
        "m", build_messages(TREE, MANIFEST, "v1", TARGET)
    )
    assert prompt_hash("m", messages) != prompt_hash("other", messages)
    again = with_error(messages, "bad reply", "block 1: the SEARCH text matches 0 times")
    assert again[-2] == {"role": "assistant", "content": "bad reply"}
    assert "matches 0 times" in again[-1]["content"]
    assert prompt_hash("m", again) != prompt_hash("m", messages)


@dataclass(frozen=True)
class _Opp:
    file: str
    function: str
    line: int
    kind: str
    evidence: str
    expected_gain: float = 1.2
    confidence: float = 0.9


def test_targets_follow_the_plans_then_the_largest_functions() -> None:
    plans = [
        Plan(_Opp("pkg/core.py", "scan", 17, "set_membership", "e"), "set_membership", 1, ""),
        Plan(_Opp("pkg/core.py", "scan", 18, "hoist_invariant", "e"), "hoist_invariant", 1, ""),
        Plan(_Opp("pkg/hidden_check.py", "f", 1, "memoize", "e"), "memoize", 1, ""),
    ]
    targets = choose_targets(plans, TREE, MANIFEST, 3)
    assert [(t.file, t.function, t.kind) for t in targets] == [
        ("pkg/core.py", "scan", "set_membership"),
        ("pkg/core.py", "Box.big", "size"),
        ("pkg/core.py", "Box.size", "size"),
    ]
    assert choose_targets([], {"tests/test_core.py": "def f(): pass\n"}, MANIFEST, 3) == []


def test_budget_stops_with_the_figures() -> None:
    limits = Limits(tokens=1000, money=None, requests=5)
    spend = Spend().paid(Price(1.0, 2.0), 600, 300)
    assert exhausted(spend, limits) is None
    spend = spend.paid(Price(1.0, 2.0), 100, 50)
    assert spend.money == pytest.approx(0.7 * 1.0 + 0.35 * 2.0)
    reason = exhausted(spend, limits)
    assert reason is not None and reason.startswith("token budget spent: 2 of 5 requests")
    assert "1,050 of 1,000 tokens (700 in, 350 out)" in reason
    assert exhausted(Spend().failure().failure(), Limits(requests=2)) == (
        "request budget spent: 2 of 2 requests (2 failed), 0 tokens (0 in, 0 out), "
        "0.0000 money, 0 cache hits"
    )
    assert exhausted(Spend().hit().hit(), Limits(requests=1)) is None  # the cache is free
    assert "money budget spent" in str(exhausted(Spend(money=2.5), Limits(money=2.0)))


def test_the_bandit_prefers_the_model_that_wins_per_token() -> None:
    memory = {
        "big": ModelRecord(tries=20, wins=5, tokens=200_000),
        "small": ModelRecord(tries=20, wins=4, tokens=20_000),
    }
    picks = [choose_model(["big", "small"], memory, random.Random(n))[0] for n in range(200)]
    assert picks.count("small") > 150
    losing = {"big": ModelRecord(tries=20, wins=0, tokens=20_000), "small": memory["small"]}
    picks = [choose_model(["big", "small"], losing, random.Random(n))[0] for n in range(200)]
    assert picks.count("small") > 150
    # an untried model is assumed to cost the average, and still gets its chance
    fresh = {"small": memory["small"]}
    picks = [choose_model(["new", "small"], fresh, random.Random(n))[0] for n in range(200)]
    assert 0 < picks.count("new") < 200
    assert choose_model(["a", "b"], {}, random.Random(3)) == choose_model(
        ["a", "b"], {}, random.Random(3)
    )
