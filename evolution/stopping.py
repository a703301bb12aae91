"""Knowing when to stop: is anything left worth a candidate, and if not, why not, in words.

A cycle that proves nothing still costs a profile, a generation and a log entry, and a
run that has run out of ideas should say so once and end, not print "nothing adopted"
twenty times.  Nothing is worth a try when

- the analyzer found no site at all;
- every site's rewrite was already rejected on the function's current code (the
  planner's memory, :class:`~evolution.planner.Outcomes`);
- every site left is predicted below the manifest's threshold even with the
  calibration's optimism (:meth:`~evolution.calibration.Calibration.optimistic`), so a
  kind barely tried still gets its chance and one that keeps measuring 1.00× does not.
"""

from __future__ import annotations

from collections.abc import Sequence

from evolution.calibration import Calibration
from evolution.planner import OpportunityLike, Outcomes


def _opportunity(item: object) -> OpportunityLike:
    """A plan's opportunity, or the item itself when it is one."""
    inner = getattr(item, "opportunity", None)
    return inner if inner is not None else item  # type: ignore[return-value]


def _predicted(opp: OpportunityLike) -> float:
    return float(getattr(opp, "predicted_gain", 0.0) or opp.expected_gain)


def _mutator(item: object, opp: OpportunityLike) -> str:
    return str(getattr(item, "mutator", "") or opp.kind)


def _all(count: int) -> str:
    """ "the one site" or "all 15 sites": the subject of every reason."""
    return "the one site" if count == 1 else f"all {count} sites"


def worth_trying(
    items: Sequence[object],
    *,
    threshold: float,
    calibration: Calibration | None = None,
    outcomes: Outcomes | None = None,
    sources: Sequence[str] = (),
    try_untried: bool = False,
) -> str | None:
    """None if some opportunity (or plan) in ``items`` is worth a candidate, else the reason.

    ``threshold`` is the manifest's (``fitness.threshold``); ``sources`` its source
    patterns, named when no site was found at all.  With ``try_untried`` a kind never
    measured is always worth one candidate, whatever its static prediction: a run must
    not give up on the analyzer's word alone (its profile clock misses work done without
    calls, so a set lookup predicted at 1.03× measured 1.29×); ``analyze`` and ``plan``
    show the static reason, a run stops only on measurements.
    """
    where = ", ".join(sources) or "the genome's sources"
    if not items:
        return f"no site: the analyzer found no place a rewrite applies in {where}"
    calibration = calibration or Calibration()
    memory = outcomes or Outcomes()
    fresh: list[OpportunityLike] = []
    for item in items:
        opp = _opportunity(item)
        fingerprint = str(getattr(opp, "fingerprint", "") or "")
        if not memory.failed_on(_mutator(item, opp), opp.file, opp.function, fingerprint):
            fresh.append(opp)
    tried = len(items) - len(fresh)
    if not fresh:
        were = "was tried on its function's" if tried == 1 else "were tried on their functions'"
        return (
            f"{_all(tried)} {were} current code and rejected: "
            "nothing is worth a candidate until that code changes"
        )
    hopes = [(calibration.optimistic(o.kind, _predicted(o)), o) for o in fresh]
    if any(
        hope >= threshold or (try_untried and not calibration.tries(o.kind)) for hope, o in hopes
    ):
        return None
    return _below(hopes, tried, threshold, calibration)


def _below(
    hopes: list[tuple[float, OpportunityLike]],
    tried: int,
    threshold: float,
    calibration: Calibration,
) -> str:
    """Why every site left is below the threshold, in the user's words."""
    also = f" ({tried} more already rejected on their current code)" if tried else ""
    kinds = sorted({o.kind for _, o in hopes})
    best_hope, best = max(hopes, key=lambda pair: (pair[0], pair[1].file, -pair[1].line))
    if len(kinds) == 1:
        kind = kinds[0]
        record = calibration.words(kind)
        said = (
            record
            if calibration.tries(kind)
            else f"predicted at most {_predicted(best):.3f}× against a {threshold:g}× threshold"
        )
        are = "is" if len(hopes) == 1 else "are"
        return f"{_all(len(hopes))} {are} {kind}, {said}{also}: nothing is worth a candidate"
    return (
        f"all {len(hopes)} sites are below the {threshold:g}× threshold{also}: the best, "
        f"{best.kind} at {best.file}:{best.line} ({best.function}), is predicted "
        f"{_predicted(best):.3f}× and may reach {best_hope:.3f}× at most "
        f"({best.kind} {calibration.words(best.kind)}): nothing is worth a candidate"
    )
