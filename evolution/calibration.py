"""The analyzer's predictions, corrected by what each kind of rewrite measured.

The static model (a rewrite's weight, Amdahl's law over the site's share of the
profile) is a guess; every judged candidate is a measurement of the same thing.  Per
kind of rewrite, the calibrated log-gain of a site predicted at ``p = log(predicted)``
is a shrinkage of the prediction towards what that kind measured:

    log gain = (n0 · p + Σ vote_i) / (n0 + n)

``n0`` (``prior_strength``) is how many measurements the static model is worth.  Each of
the ``n`` past candidates of the kind votes:

- one whose prediction is known (``expected``) votes ``p × measured_i / expected_i`` in
  log terms: it says how far off the model was, and the site at hand keeps its own heat,
  so a cold site is not made hot by a win elsewhere;
- one whose prediction is not known (the log did not keep it) votes its measured
  log-gain, but never more than ``p``: a 1.3× measured on a hot loop says nothing about a
  cold one, while a 1.00× says the rewrite does little.

With no history the prediction stands; after ten candidates of a kind measuring 1.00×,
a 1.10× prediction is 1.016× (``n0 = 2``), and it keeps falling towards 1.00×.  This is
the posterior mean of a normal model with a normal prior, one pseudo-measurement per
unit of ``n0``; it needs no tuning beyond ``n0``, and it is deterministic.

:meth:`Calibration.optimistic` is the same figure plus two prior standard deviations
that shrink as ``n0 / (n0 + n)``: what the planner may still hope for from a kind it has
barely tried, so the run stops only when even that hope is below the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: how many measurements the static model counts for
PRIOR_STRENGTH = 2.0
#: a measured/expected ratio of log-gains outside this range is an outlier, not a trend
_EFFICIENCY = (-1.0, 10.0)
#: the prior spread of the efficiency (measured over predicted log-gain) of a kind
_SPREAD = 0.5


@dataclass(frozen=True)
class Observation:
    """One judged candidate: its kind, its measured gain, and its prediction if known."""

    kind: str
    measured: float
    expected: float | None = None


@dataclass
class Calibration:
    """What each kind of rewrite measured: (measured, expected) gains per kind."""

    observations: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    prior_strength: float = PRIOR_STRENGTH

    def record(self, kind: str, measured: float | None, expected: float | None = None) -> None:
        """Count one judged candidate (a candidate with no measurement, say tests failed, is none)."""
        if measured is None or not math.isfinite(measured) or measured <= 0:
            return
        if expected is not None and (not math.isfinite(expected) or expected <= 0):
            expected = None
        self.observations.setdefault(kind, []).append((float(measured), expected))

    def tries(self, kind: str) -> int:
        """Measured candidates of ``kind``."""
        return len(self.observations.get(kind, ()))

    def mean_measured(self, kind: str) -> float | None:
        """Geometric mean of the gains ``kind`` measured (None if never measured)."""
        seen = self.observations.get(kind)
        if not seen:
            return None
        return math.exp(sum(math.log(m) for m, _ in seen) / len(seen))

    def _log_gain(self, kind: str, predicted: float) -> float:
        p = math.log(predicted) if predicted > 0 else 0.0
        seen = self.observations.get(kind, ())
        votes = 0.0
        for measured, expected in seen:
            m = math.log(measured)
            e = math.log(expected) if expected is not None else 0.0
            if expected is not None and e > 1e-3:
                votes += p * min(max(m / e, _EFFICIENCY[0]), _EFFICIENCY[1])
            else:
                votes += min(m, max(p, 0.0))
        return (self.prior_strength * p + votes) / (self.prior_strength + len(seen))

    def gain(self, kind: str, predicted: float) -> float:
        """The calibrated gain of a site of ``kind`` the static model predicts at ``predicted``."""
        return math.exp(self._log_gain(kind, predicted))

    def optimistic(self, kind: str, predicted: float) -> float:
        """The calibrated gain plus two prior deviations: the most a barely tried kind may pay."""
        p = math.log(predicted) if predicted > 0 else 0.0
        n0 = self.prior_strength
        margin = 2 * _SPREAD * max(p, 0.0) * n0 / (n0 + self.tries(kind))
        return math.exp(self._log_gain(kind, predicted) + margin)

    def words(self, kind: str) -> str:
        """What the log says of ``kind``: "measured 1.00× on average in 10 tries" (or "untried")."""
        mean = self.mean_measured(kind)
        if mean is None:
            return "untried"
        tries = self.tries(kind)
        return f"measured {mean:.2f}× on average in {tries} {'try' if tries == 1 else 'tries'}"


def from_log(
    rows: Iterable[Mapping[str, Any]], prior_strength: float = PRIOR_STRENGTH
) -> Calibration:
    """A calibration from the log's judged candidates.

    ``rows`` are the data of the ``CandidateEvaluated`` events (``kind``, ``ratio``, and
    ``expected_gain`` once the log keeps it); a row without a ratio (the tests failed, the
    benchmark broke) measured nothing and is skipped.
    """
    calibration = Calibration(prior_strength=prior_strength)
    for row in rows:
        ratio, expected = row.get("ratio"), row.get("expected_gain")
        calibration.record(
            str(row.get("kind")),
            float(ratio) if isinstance(ratio, (int, float)) else None,
            float(expected) if isinstance(expected, (int, float)) else None,
        )
    return calibration


def observations(calibration: Calibration) -> list[Observation]:
    """Every observation of ``calibration``, kind by kind in name order (for display and tests)."""
    return [
        Observation(kind, measured, expected)
        for kind in sorted(calibration.observations)
        for measured, expected in calibration.observations[kind]
    ]
