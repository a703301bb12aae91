"""The Governor's policy: reject failures and noise, adopt real gains, hold risky ones."""

from __future__ import annotations

from dataclasses import replace

import pytest

from evolution.policy import (
    SAFE_IMPORTS,
    Decision,
    Evidence,
    Policy,
    decide,
    new_imports,
    size_allowance,
    unsafe_imports,
)
from evolution.stats import Comparison

GOOD = Comparison(ratio=1.30, low=1.15, high=1.47, rounds=5, confidence=0.95)


def evidence(**changes: object) -> Evidence:
    base = Evidence(
        tests_passed=True,
        comparison=GOOD,
        patch_lines=6,
        touched=("pkg/parse.py",),
        protected_touched=(),
        new_imports=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_clear_gain_is_adopted() -> None:
    d = decide(evidence(), Policy())
    assert d == Decision("adopt", d.reasons)
    assert len(d.reasons) == 1 and "1.30×" in d.reasons[0] and "1.05×" in d.reasons[0]


def test_failure_is_rejected_and_named() -> None:
    d = decide(evidence(failure="timed out after 60 s", tests_passed=False), Policy())
    assert d.verdict == "reject"
    assert d.reasons == ("candidate failed: timed out after 60 s",)


def test_failed_tests_are_rejected() -> None:
    d = decide(evidence(tests_passed=False), Policy())
    assert d == Decision("reject", ("tests failed",))


def test_missing_comparison_is_rejected() -> None:
    assert decide(evidence(comparison=None), Policy()) == Decision(
        "reject", ("no benchmark comparison",)
    )


def test_interval_touching_one_is_not_significant() -> None:
    noisy = Comparison(ratio=1.10, low=0.97, high=1.25, rounds=5, confidence=0.95)
    d = decide(evidence(comparison=noisy), Policy())
    assert d.verdict == "reject"
    assert any(r.startswith("not significant") for r in d.reasons)
    exactly_one = replace(noisy, low=1.0)
    assert decide(evidence(comparison=exactly_one), Policy()).verdict == "reject"


def test_gain_below_threshold_is_rejected_with_both_numbers() -> None:
    small = Comparison(ratio=1.02, low=1.01, high=1.03, rounds=10, confidence=0.95)
    d = decide(evidence(comparison=small), Policy())
    assert d == Decision("reject", ("gain 1.02× below threshold 1.05×",))


def test_all_measurement_problems_are_listed() -> None:
    weak = Comparison(ratio=1.01, low=0.9, high=1.12, rounds=5, confidence=0.95)
    d = decide(evidence(comparison=weak), Policy())
    assert len(d.reasons) == 2


def test_interval_at_lower_confidence_than_policy_is_rejected() -> None:
    loose = replace(GOOD, confidence=0.80)
    d = decide(evidence(comparison=loose), Policy(confidence=0.95))
    assert d.verdict == "reject"
    assert "policy requires 95%" in d.reasons[0]
    stricter = replace(GOOD, confidence=0.99)
    assert decide(evidence(comparison=stricter), Policy()).verdict == "adopt"


def test_threshold_is_configurable() -> None:
    assert decide(evidence(), Policy(threshold=1.5)).verdict == "reject"
    assert decide(evidence(), Policy(threshold=1.3)).verdict == "adopt"  # at threshold adopts


def test_large_patch_is_held() -> None:
    d = decide(evidence(patch_lines=41), Policy())
    assert d.verdict == "hold"
    assert d.reasons[0] == "patch changes 41 lines, over the 40-line limit (policy max_patch_lines)"
    assert d.rules == ("max_patch_lines",)
    assert decide(evidence(patch_lines=40), Policy()).verdict == "adopt"


def test_protected_files_are_held_unless_policy_allows() -> None:
    e = evidence(touched=("genome.toml", "pkg/a.py"), protected_touched=("genome.toml",))
    d = decide(e, Policy())
    assert d.verdict == "hold"
    assert "touches protected files: genome.toml (policy approval_on_protected)" in d.reasons
    assert d.rules == ("approval_on_protected",)
    assert decide(e, Policy(approval_on_protected=False)).verdict == "adopt"


def test_new_imports_outside_allow_list_are_held() -> None:
    assert (
        decide(evidence(new_imports=("functools", "collections.abc")), Policy()).verdict == "adopt"
    )
    d = decide(evidence(new_imports=("functools", "subprocess")), Policy())
    assert d.verdict == "hold"
    assert "new imports need approval: subprocess (policy approval_on_new_imports)" in d.reasons
    assert d.rules == ("approval_on_new_imports",)
    assert (
        decide(evidence(new_imports=("subprocess",)), Policy(approval_on_new_imports=False)).verdict
        == "adopt"
    )


def test_hold_lists_every_risk_and_the_gain() -> None:
    e = evidence(patch_lines=100, protected_touched=("tests/test_a.py",), new_imports=("os",))
    d = decide(e, Policy())
    assert d.verdict == "hold"
    assert len(d.reasons) == 4
    assert "1.30×" in d.reasons[-1]
    assert d.rules == ("max_patch_lines", "approval_on_protected", "approval_on_new_imports")


def test_risk_does_not_rescue_a_rejection() -> None:
    bad = Comparison(ratio=1.01, low=0.9, high=1.1, rounds=5, confidence=0.95)
    assert decide(evidence(comparison=bad, patch_lines=500), Policy()).verdict == "reject"


def test_unsafe_imports() -> None:
    assert unsafe_imports(("re", "math", "heapq", "os.path", ".helpers", "numpy")) == (
        "os.path",
        ".helpers",
        "numpy",
    )
    assert {
        "functools",
        "re",
        "itertools",
        "collections",
        "bisect",
        "operator",
        "math",
        "heapq",
    } == SAFE_IMPORTS


PARENT = """\
import re
from collections import Counter

def f(x):
    return x
"""


def test_new_imports_found_by_ast() -> None:
    candidate = (
        PARENT.replace(
            "def f(x):",
            "import functools\nfrom os import path\nfrom . import sibling\n\n@functools.cache\ndef f(x):",
        )
        + "\ndef g():\n    import json\n    return json\n"
    )
    assert new_imports(PARENT, candidate) == (".", "functools", "json", "os")


def test_removed_and_unchanged_imports_are_not_new() -> None:
    assert new_imports(PARENT, "import re\n") == ()
    assert new_imports(PARENT, PARENT) == ()
    assert new_imports(PARENT, "# import os in a comment\ns = 'import sys'\n") == ()


def test_unparseable_files() -> None:
    assert new_imports(PARENT, "def broken(:\n  import os\n") == ()
    assert new_imports("def broken(:\n", "import os\n") == ("os",)


@pytest.mark.parametrize("verdict", ["adopt", "reject", "hold"])
def test_decision_is_frozen(verdict: str) -> None:
    d = Decision(verdict, ("x",))  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        d.verdict = "adopt"  # type: ignore[misc]


def test_close_calls_need_more_rounds_clear_cases_do_not() -> None:
    from evolution.policy import needs_more_rounds

    policy = Policy(threshold=1.05)
    assert needs_more_rounds(
        Comparison(1.2, 0.98, 1.4, 5, 0.95), policy
    )  # promising, not significant
    assert not needs_more_rounds(
        Comparison(1.04, 0.9, 1.2, 5, 0.95), policy
    )  # below threshold: a loss anyway
    assert not needs_more_rounds(Comparison(1.2, 1.1, 1.3, 5, 0.95), policy)  # clear win
    assert not needs_more_rounds(Comparison(0.9, 0.8, 1.0, 5, 0.95), policy)  # clear loss


def test_exact_counts_are_judged_on_threshold_alone() -> None:
    from evolution.stats import exact

    policy = Policy(threshold=1.02)
    win = decide(evidence(comparison=exact(1_030.0, 1_000.0)), policy)
    assert (
        win.verdict == "adopt" and "exact count" in win.reasons[0] and "1.0300×" in win.reasons[0]
    )
    small = decide(evidence(comparison=exact(1_010.0, 1_000.0)), policy)
    assert small.verdict == "reject" and small.reasons == ("gain 1.0100× below threshold 1.02×",)
    worse = decide(evidence(comparison=exact(990.0, 1_000.0)), policy)
    assert worse.verdict == "reject" and worse.reasons[0].startswith(
        "no gain: gain 0.9900×, an exact count"
    )


def exact_gain(ratio: float) -> Comparison:
    return Comparison(ratio=ratio, low=ratio, high=ratio, rounds=1, confidence=1.0)


def test_an_exact_big_gain_earns_a_bigger_patch_a_timed_one_does_not() -> None:
    # the case: 136 lines, an exact 1.5×, every test passing
    big = evidence(comparison=exact_gain(1.5), patch_lines=136)
    assert decide(big, Policy()).verdict == "adopt"
    # the same patch with a timed gain of the same size is still held by the plain limit
    timed = evidence(comparison=replace(GOOD, ratio=1.5, low=1.3, high=1.7), patch_lines=136)
    d = decide(timed, Policy())
    assert d.verdict == "hold"
    assert (
        d.reasons[0] == "patch changes 136 lines, over the 40-line limit (policy max_patch_lines)"
    )
    # a small exact gain earns a little more room, named in the reason
    small = decide(evidence(comparison=exact_gain(1.10), patch_lines=81), Policy())
    assert small.verdict == "hold"
    assert (
        small.reasons[0]
        == "patch changes 81 lines, over the 80-line limit for an exact gain 1.1000× "
        "(policy max_patch_lines)"
    )
    assert (
        decide(evidence(comparison=exact_gain(1.10), patch_lines=80), Policy()).verdict == "adopt"
    )
    # and nothing grows past the cap
    huge = decide(evidence(comparison=exact_gain(9.0), patch_lines=201), Policy())
    assert huge.verdict == "hold" and "over the 200-line limit" in huge.reasons[0]


def test_size_allowance_steps() -> None:
    policy = Policy()
    assert [size_allowance(exact_gain(r), policy) for r in (1.0, 1.10, 1.21, 1.5)] == [
        40,
        80,
        120,
        200,
    ]
    assert size_allowance(GOOD, policy) == 40


def test_a_model_written_candidate_waits_for_a_human_by_default() -> None:
    written = evidence(generated_by="llm:qwen2.5-coder")
    d = decide(written, Policy())
    assert d.verdict == "hold"
    assert d.reasons[0].startswith("written by a model (llm:qwen2.5-coder)")
    assert decide(written, Policy(approval_on_model=False)).verdict == "adopt"
    assert decide(evidence(generated_by="local_alias"), Policy()).verdict == "adopt"
    # a model's failure is still a rejection, not a hold
    assert decide(replace(written, tests_passed=False), Policy()).verdict == "reject"


def test_the_evidence_is_weighed_and_the_hold_names_its_rule() -> None:
    """Issue 10 item 6: a 136-line patch with an exact 1.5×, every test passing, is adopted;
    the same gain with a risky change (tests or manifest touched, a new import) is held,
    and the decision names the rule that held it."""
    clean = evidence(comparison=exact_gain(1.5), patch_lines=136)
    adopted = decide(clean, Policy())
    assert adopted.verdict == "adopt" and adopted.rules == ()
    touched = replace(
        clean,
        touched=("pkg/parse.py", "tests/test_parse.py", "genome.toml"),
        protected_touched=("tests/test_parse.py", "genome.toml"),
    )
    held = decide(touched, Policy())
    assert held.verdict == "hold" and held.rules == ("approval_on_protected",)
    assert held.reasons[0] == (
        "touches protected files: tests/test_parse.py, genome.toml (policy approval_on_protected)"
    )
    importing = decide(replace(clean, new_imports=("ctypes",)), Policy())
    assert importing.verdict == "hold" and importing.rules == ("approval_on_new_imports",)
    by_model = decide(replace(clean, generated_by="llm:m"), Policy())
    assert by_model.verdict == "hold" and by_model.rules == ("approval_on_model",)
