"""Which sites a cycle spends its slots on, and how winners are composed and credited."""

from __future__ import annotations

import random

from evolution.analysis import Opportunity
from evolution.calibration import Calibration
from evolution.compose import compose, stale_copy
from evolution.generate import Candidate
from evolution.memory import SearchMemory
from evolution.patch import make_patch
from evolution.planner import Outcomes, plan, spread_functions
from evolution.stopping import worth_a_slot


def site(kind: str, gain: float, function: str = "f", line: int = 1) -> Opportunity:
    return Opportunity(
        "pkg/a.py", function, line, kind, "e", gain, 0.9, predicted_gain=gain, fingerprint="fp"
    )


def measured(*rows: tuple[str, float, float | None]) -> Calibration:
    calibration = Calibration()
    for kind, ratio, expected in rows:
        calibration.record(kind, ratio, expected)
    return calibration


def test_a_kind_that_measured_nothing_gets_no_more_slots() -> None:
    # seqdiff: local_alias predicted 1.023× measured 0.9996× and 0.9875×
    history = measured(("local_alias", 0.9996, 1.0227), ("local_alias", 0.9875, 1.0227))
    sites = [site("local_alias", 1.0227, f"f{i}", i) for i in range(5)]
    assert worth_a_slot(sites, threshold=1.02, calibration=history) == []
    # without the history every one of them may pass alone (the prior's optimism)
    assert worth_a_slot(sites, threshold=1.02) == sites


def test_an_untried_kind_gets_its_best_site_and_its_composable_ones() -> None:
    low = [site("memoize", 1.0002, "g", 1), site("memoize", 1.0, "h", 2)]
    assert worth_a_slot(low, threshold=1.02) == [low[0]]  # one candidate says what it is worth
    some = [site("set_membership", 1.006, "g", 1), site("set_membership", 1.007, "h", 2)]
    assert worth_a_slot([*some, *low], threshold=1.02) == [*some, low[0]]


def test_a_kind_that_paid_keeps_every_site_even_one_predicted_at_one() -> None:
    # the counting clock is blind to a list scan: predicted 1.000×, it may pay 1.3×
    blind = site("set_membership", 1.0, "count", 9)
    history = measured(("set_membership", 1.33, 1.047))
    assert worth_a_slot([blind], threshold=1.10, calibration=history) == [blind]
    small = measured(("set_membership", 1.01, 1.047))
    assert worth_a_slot([blind], threshold=1.10, calibration=small) == []


def test_sub_threshold_sites_are_worth_slots_only_when_they_clear_it_together() -> None:
    history = measured(("inline_call", 1.0104, 1.0084))  # merged-size gains, under 1.02×
    one = [site("inline_call", 1.010, "g", 1)]
    two = [*one, site("inline_call", 1.011, "h", 2)]
    same = [*one, site("inline_call", 1.011, "g", 2)]  # one function: counted once
    assert worth_a_slot(one, threshold=1.02, calibration=history) == []
    assert worth_a_slot(two, threshold=1.02, calibration=history) == two
    assert worth_a_slot(same, threshold=1.02, calibration=history) == []
    # a gain kept for this version makes up the difference
    assert worth_a_slot(one, threshold=1.02, calibration=history, kept=[1.0104]) == one
    # without composition a sub-threshold site is worth nothing
    assert worth_a_slot(two, threshold=1.02, calibration=history, compose=False) == []


def test_a_site_already_rejected_on_its_code_gets_no_slot() -> None:
    outcomes = Outcomes()
    outcomes.remember_failure("memoize", "pkg/a.py", "g", "fp")
    assert worth_a_slot([site("memoize", 1.2, "g")], threshold=1.02, outcomes=outcomes) == []


def test_prepare_says_why_when_no_site_is_worth_a_slot() -> None:
    memory = SearchMemory(calibration=measured(*[("local_alias", 1.0, 1.0227)] * 3))
    sites = [site("local_alias", 1.0227, f"f{i}", i) for i in range(3)]
    kept, reason = memory.prepare(sites, 1.02, ["pkg/*.py"], "v1")
    assert kept == [] and reason is not None and "local_alias" in reason
    fresh, none = SearchMemory().prepare(sites, 1.02, ["pkg/*.py"], "v1")
    assert none is None and len(fresh) == 3


def test_the_parameter_search_stops_when_it_never_paid() -> None:
    memory = SearchMemory()
    assert memory.worth_tuning()
    memory.calibration.record("tunable", 1.0, None)
    assert not memory.worth_tuning()
    memory.calibration.record("tunable", 1.006, None)
    assert memory.worth_tuning()


def test_the_best_plan_of_each_function_comes_first() -> None:
    sites = [
        site("local_alias", 1.05, "quick_ratio", 1),
        site("local_alias", 1.049, "quick_ratio", 2),
        site("dunder_operator", 1.03, "ratio", 3),
    ]
    ranked = plan(sites, Outcomes(), risks={}, rng=random.Random(0), limit=3, explore=False)
    assert [p.opportunity.line for p in ranked] == [1, 2, 3]
    spread = plan(
        sites, Outcomes(), risks={}, rng=random.Random(0), limit=2, explore=False, spread=True
    )
    assert [p.opportunity.line for p in spread] == [1, 3]
    assert spread_functions(ranked) == [ranked[0], ranked[2], ranked[1]]


PARENT = {
    "m.py": (
        "def quick(a, b):\n"
        "    return min(a, b)\n"
        "\n"
        "\n"
        "def user(x, y):\n"
        "    return quick(x, y) + 1\n"
        "\n"
        "\n"
        "def other(x):\n"
        "    return x * 2\n"
    )
}


def _winner(cid: str, old: str, new: str) -> Candidate:
    child = {"m.py": PARENT["m.py"].replace(old, new)}
    assert child != PARENT
    return Candidate(cid, "v", make_patch(PARENT, child), cid, cid, "m.py", "f", 1, "")


def test_an_inliner_is_not_merged_with_a_rewrite_of_the_callee_it_copied() -> None:
    rewrite = _winner("min_max_pair", "return min(a, b)", "return a if a < b else b")
    inline = _winner("inline_call", "return quick(x, y) + 1", "return min(x, y) + 1")
    unrelated = _winner("dunder_operator", "return x * 2", "return x + x")
    assert stale_copy(PARENT, rewrite, inline)
    assert not stale_copy(PARENT, inline, rewrite)
    assert not stale_copy(PARENT, rewrite, unrelated)
    # the lines do not conflict, the meaning does: the inliner is left out
    assert compose(PARENT, "v", [rewrite, inline]) is None
    kept = compose(PARENT, "v", [rewrite, inline, unrelated])
    assert kept is not None and "inline_call" not in kept.description
    assert compose(PARENT, "v", [inline, rewrite]) is None  # whichever comes first
