"""The cost model calibrated from the log: predictions shrink towards what each kind measured."""

from __future__ import annotations

import math

import pytest

from evolution.analysis import Opportunity, calibrated
from evolution.calibration import Calibration, Observation, from_log, observations


def test_with_no_history_the_prediction_stands() -> None:
    calibration = Calibration()
    assert calibration.gain("local_alias", 1.1) == pytest.approx(1.1)
    assert calibration.words("local_alias") == "untried"
    assert calibration.mean_measured("local_alias") is None


def test_a_kind_measuring_one_converges_to_one() -> None:
    calibration = Calibration()
    previous = calibration.gain("local_alias", 1.1)
    for n in range(1, 31):
        calibration.record("local_alias", 1.0 + (0.003 if n % 2 else -0.003))
        now = calibration.gain("local_alias", 1.1)
        assert now < previous
        previous = now
    assert previous < 1.01
    assert calibration.words("local_alias") == "measured 1.00× on average in 30 tries"
    # other kinds keep their static prediction
    assert calibration.gain("memoize", 1.3) == pytest.approx(1.3)


def test_after_ten_tries_a_ten_percent_prediction_is_below_two_percent() -> None:
    calibration = from_log([{"kind": "local_alias", "ratio": 1.0}] * 10)
    assert calibration.gain("local_alias", 1.1) == pytest.approx(1.1 ** (2 / 12))
    assert calibration.gain("local_alias", 1.1) < 1.02


def test_known_predictions_scale_the_site_and_keep_cold_sites_cold() -> None:
    # the model predicted 1.10 and the kind measured 1.21 (twice the log-gain), four times
    calibration = Calibration()
    for _ in range(4):
        calibration.record("set_membership", 1.21, expected=1.1)
    hot = calibration.gain("set_membership", 1.1)
    cold = calibration.gain("set_membership", 1.001)
    assert hot > 1.1  # raised towards what was measured
    assert cold < 1.0025  # a cold site is not made hot by a win elsewhere
    expected = math.exp((2 * math.log(1.1) + 4 * math.log(1.1) * 2) / 6)
    assert hot == pytest.approx(expected)


def test_unknown_predictions_only_lower_a_site() -> None:
    calibration = from_log([{"kind": "memoize", "ratio": 1.5}] * 5)
    assert calibration.gain("memoize", 1.01) == pytest.approx(1.01)
    assert calibration.gain("memoize", 1.0) == pytest.approx(1.0)


def test_log_rows_without_a_measurement_are_skipped() -> None:
    rows = [
        {"kind": "memoize", "ratio": None, "verdict": "reject"},
        {"kind": "memoize", "ratio": float("nan")},
        {"kind": "memoize", "ratio": 0},
        {"kind": "memoize", "ratio": 1.2, "expected_gain": 1.1},
        {"kind": "memoize", "ratio": 1.05, "expected_gain": -3},
    ]
    calibration = from_log(rows)
    assert calibration.tries("memoize") == 2
    assert observations(calibration) == [
        Observation("memoize", 1.2, 1.1),
        Observation("memoize", 1.05, None),
    ]


def test_optimism_shrinks_with_tries() -> None:
    fresh = Calibration()
    assert fresh.optimistic("k", 1.01) == pytest.approx(1.01**2)
    tried = from_log([{"kind": "k", "ratio": 1.0}] * 10)
    assert tried.optimistic("k", 1.1) < 1.05 < fresh.optimistic("k", 1.1)
    assert fresh.optimistic("k", 0.99) == pytest.approx(0.99)


def test_calibrated_reranks_and_keeps_the_static_figure() -> None:
    alias = Opportunity("a.py", "f", 1, "local_alias", "e", 1.1, 0.9)
    member = Opportunity("a.py", "g", 2, "set_membership", "e", 1.05, 0.9)
    calibration = from_log([{"kind": "local_alias", "ratio": 1.0}] * 10)
    first, second = calibrated([alias, member], calibration)
    assert first.kind == "set_membership" and first.expected_gain == 1.05
    assert second.kind == "local_alias" and second.predicted_gain == 1.1
    assert second.expected_gain < 1.02
    # applied twice, the static figure is still the base: no compounding
    again = calibrated([second], calibration)[0]
    assert again.expected_gain == second.expected_gain
    assert calibrated([alias], None) == [alias]


def test_a_plan_says_both_figures_when_the_calibration_moved_one() -> None:
    import random

    from evolution.planner import Outcomes, plan

    alias = Opportunity("a.py", "f", 1, "local_alias", "e", 1.1, 0.9, predicted_gain=1.1)
    calibration = from_log([{"kind": "local_alias", "ratio": 1.0}] * 10)
    [moved] = plan(
        calibrated([alias], calibration), Outcomes(), risks={}, rng=random.Random(0), limit=1
    )
    assert "expected gain 1.016 (static 1.100) at 90% confidence" in moved.reason
    [kept] = plan([alias], Outcomes(), risks={}, rng=random.Random(0), limit=1)
    assert "expected gain 1.100 at 90% confidence" in kept.reason
