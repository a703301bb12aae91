"""Latency figures without I/O: histogram buckets, their quantiles, exact percentiles.

The node's ``/metrics`` keeps request latencies in a Prometheus histogram with the
buckets :data:`BOUNDS`; a rollback trigger reads the same histogram (as a :class:`Tally`)
and takes the difference of two readings to get one analysis window, so the figures it
decides on are the figures a scrape shows.  ``tars load`` keeps every sample and uses
:func:`percentile` instead (exact, its samples are few enough).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

#: Upper bounds (seconds) of the request latency buckets, 1-2-5 steps from 0.25 ms to
#: 10 s: a worker call on loopback is about a millisecond, a slow genome function a
#: second.  The steps are at most 2.5x apart, so an interpolated p99 is within one step
#: of the truth, enough to tell a version twice as slow.  ``+Inf`` is implied.
BOUNDS: tuple[float, ...] = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
)


class Tally(NamedTuple):
    """Requests of one (genome, colour, version) as the histogram holds them.

    ``buckets`` are cumulative counts, one per bound of ``bounds`` and a last one for
    ``+Inf`` (which equals the number of timed requests), as Prometheus exposes them.
    """

    requests: int
    errors: int
    seconds: float
    buckets: tuple[int, ...]
    bounds: tuple[float, ...] = BOUNDS

    def minus(self, before: Tally) -> Tally:
        """What happened since ``before`` (an earlier reading of the same series).

        A series that restarted (the node restarted, the counter went down) counts from
        zero again, as Prometheus's ``increase`` does.
        """
        if self.requests < before.requests or len(self.buckets) != len(before.buckets):
            return self
        return Tally(
            self.requests - before.requests,
            self.errors - before.errors,
            self.seconds - before.seconds,
            tuple(a - b for a, b in zip(self.buckets, before.buckets, strict=True)),
            self.bounds,
        )

    def plus(self, other: Tally) -> Tally:
        """Two series added (the functions of one colour), bucket by bucket."""
        if not other.buckets:
            return self
        if not self.buckets:
            return other
        return Tally(
            self.requests + other.requests,
            self.errors + other.errors,
            self.seconds + other.seconds,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
            self.bounds,
        )

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1) of the latencies, interpolated within its bucket."""
        return quantile(q, self.bounds, self.buckets)


EMPTY = Tally(0, 0, 0.0, ())


def quantile(q: float, bounds: Sequence[float], cumulative: Sequence[int]) -> float:
    """Prometheus's ``histogram_quantile``: linear inside the bucket the rank falls in.

    0.0 when nothing was counted; a rank in the ``+Inf`` bucket answers the highest
    finite bound (the histogram cannot say more), as Prometheus does.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within 0..1")
    if not cumulative or cumulative[-1] <= 0:
        return 0.0
    rank = q * cumulative[-1]
    below, lower = 0, 0.0
    for index, count in enumerate(cumulative):
        if count >= rank and count > below:
            if index >= len(bounds):
                return float(bounds[-1]) if bounds else 0.0
            upper = float(bounds[index])
            return lower + (upper - lower) * (rank - below) / (count - below)
        below = count
        lower = float(bounds[index]) if index < len(bounds) else lower
    return float(bounds[-1]) if bounds else 0.0


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted samples, linear between the two nearest ranks."""
    if not ordered:
        return 0.0
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is not within 0..1")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
