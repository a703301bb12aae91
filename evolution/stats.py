"""Interleaved A/B statistics: is the candidate really faster than its parent?

The incubator runs the benchmark parent, candidate, parent, candidate … and hands us
the measurements as pairs.  A machine's speed drifts (thermal throttling, a neighbour
process, a cache warming up) far more than the few percent a mutation gains, so two
separate series cannot be compared honestly; two measurements taken back to back can.
Everything here therefore works on the *per-pair* log-ratio ``d_i``:

* a log-ratio because speed is multiplicative: a 2× gain and a 2× loss must cancel,
  and a drift that scales both runs of a pair by the same factor vanishes exactly;
* the point estimate is ``exp(mean(d))`` (the geometric mean of the pair ratios), not the
  median, because the interval below is an interval *on the mean*: with the median the
  point estimate could fall outside its own interval on skewed data, and the governor's
  "ratio above threshold, low bound above 1" would then be two incoherent tests;
* the interval is a Student-t interval on ``mean(d)``: the incubator runs few rounds
  (5 by default), where a normal interval would be far too narrow and a bootstrap alone
  cannot see spread it never sampled.  When a ``random.Random`` is given, a percentile
  bootstrap is run as well and the *wider* of the two intervals is reported, so a
  skewed or heavy-tailed sample cannot make a change look safer than it is.

Pure: no clock, no I/O; randomness only from the ``rng`` passed in.  The t quantile is
computed here (exact closed-form CDF for integer degrees of freedom, inverted by
bisection) so the package needs no scipy.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat, starmap
from statistics import NormalDist
from typing import TypeVar

T = TypeVar("T")

DIRECTIONS = ("minimize", "maximize")

#: Above this many degrees of freedom the t quantile is taken from its Cornish-Fisher
#: expansion around the normal quantile (error < 1e-9), so the exact series, whose cost
#: grows with the degrees of freedom, never runs long.
_LARGE_DF = 1000
#: Up to this many pairs the bootstrap counts distinct resamples instead of summing each.
_FEW_PAIRS = 16


@dataclass(frozen=True)
class Comparison:
    """The measured gain of a candidate over its parent.

    ``ratio > 1`` means the candidate is better, whatever the metric's direction (for a
    time, 1.25 means the candidate takes 1/1.25 of the parent's time); ``[low, high]``
    is the two-sided ``confidence`` interval of that ratio over ``rounds`` A/B pairs.
    """

    ratio: float
    low: float
    high: float
    rounds: int
    confidence: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes "no change": the governor's first test."""
        return self.low > 1.0


def median(xs: Sequence[float]) -> float:
    """The middle value: the robust summary shown beside a noisy series."""
    if not xs:
        raise ValueError("median of an empty sequence: measure at least one value")
    ordered = sorted(float(x) for x in xs)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def log_ratios(
    parent: Sequence[float], candidate: Sequence[float], *, direction: str
) -> list[float]:
    """Per-pair log gains (> 0 means the candidate won that pair), after checking the input.

    Exposed so callers (the demo's before/after, the docs) use the very same pairing.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
    if len(parent) != len(candidate):
        raise ValueError(
            f"parent has {len(parent)} measurements but candidate has {len(candidate)}: "
            "A/B rounds must come in pairs"
        )
    if len(parent) < 2:
        raise ValueError(f"need at least 2 A/B pairs to estimate noise, got {len(parent)}")
    for name, series in (("parent", parent), ("candidate", candidate)):
        for i, value in enumerate(series):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(
                    f"{name} measurement #{i + 1} is {value!r}: metrics must be positive finite "
                    "numbers (a time or a throughput)"
                )
    if direction == "minimize":
        return [math.log(p / c) for p, c in zip(parent, candidate, strict=True)]
    return [math.log(c / p) for p, c in zip(parent, candidate, strict=True)]


def compare(
    parent: Sequence[float],
    candidate: Sequence[float],
    *,
    direction: str,
    confidence: float = 0.95,
    rng: random.Random | None = None,
    resamples: int = 2000,
) -> Comparison:
    """Gain of candidate over parent from paired A/B rounds, with a confidence interval.

    ``parent[i]`` and ``candidate[i]`` must be measured back to back: the pairing is
    what cancels machine drift.  With ``rng`` the interval is widened to cover a
    percentile bootstrap too (see the module docstring).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), not {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, not {resamples!r}")
    d = log_ratios(parent, candidate, direction=direction)
    n = len(d)
    mean = math.fsum(d) / n
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * math.sqrt(var / n)
    low, high = mean - half, mean + half
    if rng is not None:
        b_low, b_high = _bootstrap(d, confidence, rng, resamples)
        low, high = min(low, b_low), max(high, b_high)
    return Comparison(
        ratio=math.exp(mean),
        low=math.exp(low),
        high=math.exp(high),
        rounds=n,
        confidence=confidence,
    )


def exact(parent: float, candidate: float, *, direction: str = "minimize") -> Comparison:
    """The gain measured by a deterministic metric (an instruction count): no interval to speak of.

    One measurement per side is the whole truth, so the interval collapses onto the ratio
    and the confidence is 1: the governor's tests (significant, worth it) then depend on
    the code alone, and every run, node and machine with the same interpreter decides alike.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'minimize' or 'maximize', not {direction!r}")
    for name, value in (("parent", parent), ("candidate", candidate)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{name} measurement is {value!r}: counts must be positive finite numbers"
            )
    ratio = parent / candidate if direction == "minimize" else candidate / parent
    return Comparison(ratio=ratio, low=ratio, high=ratio, rounds=1, confidence=1.0)


def _bootstrap(
    d: Sequence[float], confidence: float, rng: random.Random, resamples: int
) -> tuple[float, float]:
    """Percentile interval of the mean log-ratio: sees the skew a t interval assumes away.

    The resamples are exactly those of ``rng.choices(d, k=n)`` drawn ``resamples`` times
    (the same random numbers in the same order), and the bounds are the same order
    statistics of their means; only the arithmetic is shared.  A resample's mean depends
    only on which items it drew, not on their order (``math.fsum`` is exactly rounded),
    and a handful of pairs has few such multisets, so each distinct multiset is summed
    once and the order statistics are read off the counts instead of sorting every mean.
    """
    n = len(d)
    alpha = (1.0 - confidence) / 2.0
    lo_index = max(0, math.floor(alpha * resamples))
    hi_index = min(resamples - 1, math.ceil((1.0 - alpha) * resamples) - 1)
    if n > _FEW_PAIRS or not _DRAWS_MATCH_CHOICES or type(rng) is not random.Random:
        means = sorted(math.fsum(rng.choices(d, k=n)) / n for _ in range(resamples))
        return means[lo_index], means[hi_index]
    # Item i adds 1 << (bits * i): a resample's key counts how often it drew each item.
    bits = n.bit_length()
    weight = [1 << (bits * i) for i in range(n)]
    keys = Counter(map(sum, zip(*[iter(_draws(rng, weight, n * resamples))] * n, strict=True)))
    mask = (1 << bits) - 1
    ranked = sorted(
        (math.fsum(d[i] for i in range(n) for _ in range((key >> (bits * i)) & mask)) / n, count)
        for key, count in keys.items()
    )
    return _order_statistic(ranked, lo_index), _order_statistic(ranked, hi_index)


def _draws(rng: random.Random, items: Sequence[T], k: int) -> list[T]:
    """``rng.choices(items, k=k)`` as CPython computes it (``floor(random() * n)``)."""
    n = float(len(items))
    # The same draws as a loop of ``items[int(rng.random() * n)]``, iterated in C
    # (``n * r == r * n`` exactly: IEEE multiplication commutes).
    return list(
        map(items.__getitem__, map(int, map(n.__mul__, starmap(rng.random, repeat((), k)))))
    )


def _order_statistic(ranked: Sequence[tuple[float, int]], index: int) -> float:
    """The ``index``-th smallest value (0-based) of values given with their counts, sorted."""
    seen = 0
    for value, count in ranked:
        seen += count
        if index < seen:
            return value
    return ranked[-1][0]


def _draws_match_choices() -> bool:
    """Whether :func:`_draws` reproduces this Python's ``Random.choices`` (checked once)."""
    items = list(range(7))
    return all(
        _draws(random.Random(seed), items, 50) == random.Random(seed).choices(items, k=50)
        for seed in (0, 1, "tars")
    )


_DRAWS_MATCH_CHOICES = _draws_match_choices()


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (no scipy in a pure package)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile probability must be between 0 and 1, not {p!r}")
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df!r}")
    df = int(df)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    if df > _LARGE_DF:
        return _cornish_fisher(p, df)
    target = 2.0 * p - 1.0  # P(|T| <= t)
    lo, hi = 0.0, 1.0
    while _central(hi, df) < target:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if _central(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def t_cdf(t: float, df: int) -> float:
    """``P(T <= t)`` for Student's t with integer ``df``; the inverse of :func:`t_quantile`."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df!r}")
    a = _central(abs(t), int(df))
    return 0.5 + a / 2.0 if t >= 0 else 0.5 - a / 2.0


def _central(t: float, df: int) -> float:
    """``P(|T| <= t)``, exact finite series for integer df (Abramowitz & Stegun 26.7.3/4)."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    c2 = c * c
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):  # terms (1·3···(2k-1))/(2·4···2k) cos^(2k)
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2.0 * theta / math.pi
    term = total = 1.0
    for k in range(1, (df - 1) // 2):  # terms (2·4···2k)/(3·5···(2k+1)) cos^(2k)
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2.0 / math.pi * (theta + s * c * total)


def _cornish_fisher(p: float, df: int) -> float:
    """Cornish-Fisher expansion of the t quantile around the normal one; exact enough for large df."""
    z = NormalDist().inv_cdf(p)
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
