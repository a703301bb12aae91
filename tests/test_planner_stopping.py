"""Knowing when to stop, and saying why in words."""

from __future__ import annotations

import random

from evolution.analysis import Opportunity
from evolution.calibration import from_log
from evolution.planner import Outcomes, plan
from evolution.stopping import worth_trying


def alias(line: int, gain: float = 1.05, fingerprint: str = "f1") -> Opportunity:
    return Opportunity(
        "pkg/a.py", "solve", line, "local_alias", "e", gain, 0.9, predicted_gain=gain,
        fingerprint=fingerprint,
    )  # fmt: skip


def test_no_site_at_all_names_the_sources() -> None:
    reason = worth_trying([], threshold=1.02, sources=["tomlparse/*.py"])
    assert reason == "no site: the analyzer found no place a rewrite applies in tomlparse/*.py"


def test_a_site_predicted_above_the_threshold_is_worth_a_try() -> None:
    assert worth_trying([alias(1, 1.05)], threshold=1.02) is None
    # untried, a 1.01× prediction may still reach 1.02× (the prior's optimism)
    assert worth_trying([alias(1, 1.011)], threshold=1.02) is None


def test_a_kind_that_keeps_measuring_one_is_not_worth_a_candidate() -> None:
    items = [alias(line) for line in range(1, 16)]
    calibration = from_log([{"kind": "local_alias", "ratio": 1.0}] * 10)
    reason = worth_trying(items, threshold=1.02, calibration=calibration)
    assert reason == (
        "all 15 sites are local_alias, measured 1.00× on average in 10 tries: "
        "nothing is worth a candidate"
    )
    assert worth_trying(items, threshold=1.02) is None  # without that history, try


def test_predicted_too_low_without_history() -> None:
    reason = worth_trying([alias(1, 1.001), alias(2, 1.004)], threshold=1.02)
    assert reason == (
        "all 2 sites are local_alias, predicted at most 1.004× against a 1.02× threshold: "
        "nothing is worth a candidate"
    )


def test_all_tried_on_unchanged_code() -> None:
    outcomes = Outcomes()
    outcomes.remember_failure("local_alias", "pkg/a.py", "solve", "f1")
    items = [alias(1), alias(2)]
    reason = worth_trying(items, threshold=1.02, outcomes=outcomes)
    assert reason is not None and reason.startswith("all 2 sites were tried")
    # the function changed since: its fingerprint is new, so try again
    assert worth_trying([alias(1, fingerprint="f2")], threshold=1.02, outcomes=outcomes) is None


def test_mixed_kinds_below_the_threshold_name_the_best() -> None:
    member = Opportunity("pkg/b.py", "scan", 9, "set_membership", "e", 1.005, 0.5)
    outcomes = Outcomes()
    outcomes.remember_failure("local_alias", "pkg/a.py", "solve", "f1")
    reason = worth_trying(
        [alias(1), alias(2, 1.002, "f9"), member], threshold=1.02, outcomes=outcomes
    )
    assert reason is not None
    assert reason.startswith("all 2 sites are below the 1.02× threshold (1 more already rejected")
    assert "set_membership at pkg/b.py:9 (scan), is predicted 1.005×" in reason


def test_plans_are_judged_by_their_opportunity_and_mutator() -> None:
    plans = plan([alias(1, 1.001)], Outcomes(), risks={}, rng=random.Random(0), limit=4)
    assert worth_trying(plans, threshold=1.02) is not None
    assert worth_trying(plans, threshold=1.0) is None


def test_a_run_gives_an_untried_kind_one_candidate_whatever_its_static_prediction() -> None:
    from evolution.analysis import Opportunity
    from evolution.calibration import Calibration
    from evolution.stopping import worth_trying

    low = Opportunity("a.py", "f", 3, "set_membership", "x", 1.03, 0.9)
    assert worth_trying([low], threshold=1.10) is not None  # analyze/plan: the static word
    assert worth_trying([low], threshold=1.10, try_untried=True) is None  # a run: try it once
    measured = Calibration()
    for _ in range(3):
        measured.record("set_membership", 1.0, 1.03)
    assert worth_trying([low], threshold=1.10, calibration=measured, try_untried=True) is not None
