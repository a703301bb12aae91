"""The fast bootstrap and the memoised rewrites must give exactly what the plain code gives."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolution import stats
from evolution.stats import compare


def reference_bootstrap(
    d: list[float], confidence: float, rng: random.Random, resamples: int
) -> tuple[float, float]:
    """The bootstrap as it was first written: one ``rng.choices`` per resample, every mean sorted."""
    n = len(d)
    means = sorted(math.fsum(rng.choices(d, k=n)) / n for _ in range(resamples))
    alpha = (1.0 - confidence) / 2.0
    lo_index = max(0, math.floor(alpha * resamples))
    hi_index = min(resamples - 1, math.ceil((1.0 - alpha) * resamples) - 1)
    return means[lo_index], means[hi_index]


def test_draws_reproduce_random_choices() -> None:
    assert stats._DRAWS_MATCH_CHOICES


@settings(max_examples=200, deadline=None)
@given(
    d=st.lists(st.floats(min_value=-2.0, max_value=2.0, allow_nan=False), min_size=2, max_size=20),
    seed=st.integers(min_value=0, max_value=2**32),
    confidence=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
    resamples=st.sampled_from([1, 2, 7, 100, 2000]),
)
def test_bootstrap_is_bit_identical_to_the_reference(
    d: list[float], seed: int, confidence: float, resamples: int
) -> None:
    expected = reference_bootstrap(d, confidence, random.Random(seed), resamples)
    rng = random.Random(seed)
    assert stats._bootstrap(d, confidence, rng, resamples) == expected
    # and it leaves the generator where choices() would have left it
    ref = random.Random(seed)
    reference_bootstrap(d, confidence, ref, resamples)
    assert rng.random() == ref.random()


def test_bootstrap_with_ties_and_a_subclassed_rng() -> None:
    d = [0.1, 0.1, -0.05, 0.1, 0.0]
    expected = reference_bootstrap(d, 0.95, random.Random(3), 2000)
    assert stats._bootstrap(d, 0.95, random.Random(3), 2000) == expected

    class Mine(random.Random):
        pass

    assert stats._bootstrap(d, 0.95, Mine(3), 2000) == expected


@pytest.mark.parametrize("seed", ["1:abc", "7:0123456789abcdef", 42])
def test_compare_with_rng_unchanged(seed: object) -> None:
    parent = [0.100, 0.104, 0.099, 0.101, 0.103]
    candidate = [0.090, 0.097, 0.091, 0.095, 0.092]
    got = compare(parent, candidate, direction="minimize", rng=random.Random(seed))  # type: ignore[arg-type]
    d = [math.log(p / c) for p, c in zip(parent, candidate, strict=True)]
    n = len(d)
    mean = math.fsum(d) / n
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    half = stats.t_quantile(0.975, n - 1) * math.sqrt(var / n)
    b_low, b_high = reference_bootstrap(d, 0.95, random.Random(seed), 2000)  # type: ignore[arg-type]
    assert got.low == math.exp(min(mean - half, b_low))
    assert got.high == math.exp(max(mean + half, b_high))
