"""Interleaved A/B statistics: t quantiles, pairing against drift, input errors."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolution.stats import Comparison, compare, log_ratios, median, t_cdf, t_quantile


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 4, 2.776),
        (0.975, 9, 2.262),
        (0.975, 30, 2.042),
        (0.95, 10, 1.812),
        (0.995, 5, 4.032),
        (0.9995, 3, 12.924),
        (0.975, 1000, 1.962),
        (0.975, 5000, 1.9604),
        (0.975, 10**6, 1.960),
    ],
)
def test_t_quantile_matches_tables(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_symmetry_and_centre() -> None:
    assert t_quantile(0.5, 7) == 0.0
    assert t_quantile(0.025, 4) == pytest.approx(-t_quantile(0.975, 4))


@given(st.floats(0.001, 0.999), st.integers(1, 60))
def test_t_cdf_inverts_quantile(p: float, df: int) -> None:
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-9)


def test_cornish_fisher_joins_the_exact_series() -> None:
    # the switch at df=1000 must not jump
    assert t_quantile(0.975, 1000) == pytest.approx(t_quantile(0.975, 1001), abs=1e-5)
    assert t_quantile(0.995, 1000) == pytest.approx(t_quantile(0.995, 1001), abs=1e-5)


def test_t_quantile_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="probability"):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile(0.9, 0)


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError, match="empty"):
        median([])


def test_clear_gain_minimize() -> None:
    parent = [1.00, 1.02, 0.99, 1.01, 1.00]
    candidate = [0.50, 0.51, 0.49, 0.50, 0.51]
    c = compare(parent, candidate, direction="minimize")
    assert isinstance(c, Comparison)
    assert c.ratio == pytest.approx(2.0, rel=0.02)
    assert 1.0 < c.low < c.ratio < c.high
    assert c.rounds == 5 and c.confidence == 0.95
    assert c.significant


def test_direction_maximize_flips_the_ratio() -> None:
    parent = [100.0, 101.0, 99.0]
    candidate = [150.0, 152.0, 149.0]
    up = compare(parent, candidate, direction="maximize")
    down = compare(parent, candidate, direction="minimize")
    assert up.ratio > 1.4
    assert down.ratio == pytest.approx(1 / up.ratio)
    assert down.high == pytest.approx(1 / up.low)


def test_ratio_is_geometric_mean_of_pair_ratios() -> None:
    c = compare([2.0, 8.0], [1.0, 2.0], direction="minimize")
    assert c.ratio == pytest.approx(math.sqrt(2.0 * 4.0))


def test_no_difference_is_not_significant() -> None:
    rng = random.Random(1)
    parent = [1.0 + rng.gauss(0, 0.05) for _ in range(8)]
    candidate = [1.0 + rng.gauss(0, 0.05) for _ in range(8)]
    c = compare(parent, candidate, direction="minimize")
    assert c.low <= 1.0 <= c.high
    assert not c.significant


def test_identical_pairs_give_a_point_interval() -> None:
    c = compare([1.0, 2.0, 3.0], [0.5, 1.0, 1.5], direction="minimize")
    assert c.ratio == pytest.approx(2.0)
    assert c.low == pytest.approx(2.0) and c.high == pytest.approx(2.0)


def test_pairing_cancels_a_slow_linear_drift() -> None:
    """The machine slows by 3 % a round (e.g. throttling); the true gain is 1.25×."""
    rng = random.Random(7)
    rounds = 10
    drift = [1.0 + 0.03 * i for i in range(rounds)]
    noise = [(1 + rng.gauss(0, 0.005), 1 + rng.gauss(0, 0.005)) for _ in range(rounds)]
    parent = [1.0 * d * a for d, (a, _) in zip(drift, noise, strict=True)]
    candidate = [0.8 * d * b for d, (_, b) in zip(drift, noise, strict=True)]
    c = compare(parent, candidate, direction="minimize")
    assert c.ratio == pytest.approx(1.25, rel=0.01)
    assert c.low <= 1.25 <= c.high
    # additive drift (same seconds added to both runs of a round) moves it little too
    add = compare(
        [1.0 + 0.02 * i for i in range(rounds)],
        [0.8 + 0.02 * i for i in range(rounds)],
        direction="minimize",
    )
    assert add.ratio == pytest.approx(1.25, rel=0.12)
    # drift within a round (candidate runs half a step later) is a bias of half a step
    half = compare(
        [1.0 * (1 + 0.01 * 2 * i) for i in range(rounds)],
        [0.8 * (1 + 0.01 * (2 * i + 1)) for i in range(rounds)],
        direction="minimize",
    )
    assert half.ratio == pytest.approx(1.25, rel=0.011)


def test_unpaired_comparison_would_be_fooled_by_the_same_drift() -> None:
    # all-parent-then-all-candidate ordering with the same drift: shows why we interleave
    rounds = 10
    parent = [1.0 * (1 + 0.03 * i) for i in range(rounds)]
    # the same program, measured after all the parent runs
    candidate = [1.0 * (1 + 0.03 * (i + rounds)) for i in range(rounds)]
    c = compare(parent, candidate, direction="minimize")
    assert c.ratio < 0.8  # a phantom 20 %+ regression: pairing only helps if rounds interleave


def test_bootstrap_is_deterministic_and_never_narrows() -> None:
    rng = random.Random(3)
    parent = [1.0 + rng.gauss(0, 0.05) for _ in range(6)]
    candidate = [0.9 + rng.gauss(0, 0.05) for _ in range(6)]
    t_only = compare(parent, candidate, direction="minimize")
    a = compare(parent, candidate, direction="minimize", rng=random.Random(42))
    b = compare(parent, candidate, direction="minimize", rng=random.Random(42))
    assert a == b
    assert a.ratio == t_only.ratio
    assert a.low <= t_only.low and a.high >= t_only.high


def test_higher_confidence_widens_the_interval() -> None:
    parent = [1.0, 1.1, 0.95, 1.05]
    candidate = [0.8, 0.9, 0.85, 0.82]
    c95 = compare(parent, candidate, direction="minimize", confidence=0.95)
    c99 = compare(parent, candidate, direction="minimize", confidence=0.99)
    assert c99.low < c95.low and c99.high > c95.high


@pytest.mark.parametrize(
    ("parent", "candidate", "kwargs", "message"),
    [
        ([1.0, 2.0], [1.0], {}, "A/B rounds must come in pairs"),
        ([1.0], [1.0], {}, "at least 2 A/B pairs"),
        ([1.0, 0.0], [1.0, 1.0], {}, "parent measurement #2 is 0.0"),
        ([1.0, 1.0], [1.0, -2.0], {}, "candidate measurement #2"),
        ([1.0, float("nan")], [1.0, 1.0], {}, "positive finite"),
        ([1.0, 1.0], [1.0, 1.0], {"direction": "up"}, "direction must be"),
        ([1.0, 1.0], [1.0, 1.0], {"confidence": 1.0}, "confidence"),
        ([1.0, 1.0], [1.0, 1.0], {"resamples": 0}, "resamples"),
    ],
)
def test_bad_input_is_a_clear_value_error(
    parent: list[float], candidate: list[float], kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"direction": "minimize", **kwargs}
    with pytest.raises(ValueError, match=message):
        compare(parent, candidate, **args)  # type: ignore[arg-type]


positive = st.floats(0.001, 1000.0)


@given(st.lists(st.tuples(positive, positive), min_size=2, max_size=20), st.floats(0.05, 20.0))
def test_scaling_the_candidate_scales_the_ratio(pairs: list[tuple[float, float]], k: float) -> None:
    parent = [p for p, _ in pairs]
    candidate = [c for _, c in pairs]
    base = compare(parent, candidate, direction="minimize")
    faster = compare(parent, [c / k for c in candidate], direction="minimize")
    assert faster.ratio == pytest.approx(base.ratio * k, rel=1e-9)
    assert base.low <= base.ratio * (1 + 1e-12) and base.ratio <= base.high * (1 + 1e-12)


def test_log_ratios_sign() -> None:
    assert log_ratios([2.0, 2.0], [1.0, 1.0], direction="minimize")[0] > 0
    assert log_ratios([2.0, 2.0], [1.0, 1.0], direction="maximize")[0] < 0


def test_exact_comparison_has_no_interval_and_knows_direction() -> None:
    from evolution.stats import exact

    fewer = exact(1_200_000.0, 1_000_000.0)
    assert fewer.ratio == fewer.low == fewer.high == pytest.approx(1.2)
    assert fewer.confidence == 1.0 and fewer.rounds == 1 and fewer.significant
    assert not exact(1_000.0, 1_000.0).significant
    assert exact(10.0, 12.0, direction="maximize").ratio == pytest.approx(1.2)
    with pytest.raises(ValueError, match="positive finite"):
        exact(0.0, 5.0)
    with pytest.raises(ValueError, match="direction"):
        exact(1.0, 1.0, direction="up")
