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

:func:`worth_a_slot` applies the same rule site by site, so the cycles before the stop
spend their slots only on sites that may still pay, alone or composed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from evolution.calibration import Calibration
from evolution.compose import MERGE_FLOOR
from evolution.planner import OpportunityLike, Outcomes

Item = TypeVar("Item")


def _opportunity(item: object) -> OpportunityLike:
    """A plan's opportunity, or the item itself when it is one."""
    inner = getattr(item, "opportunity", None)
    return inner if inner is not None else item  # type: ignore[return-value]


def _predicted(opp: OpportunityLike) -> float:
    return float(getattr(opp, "predicted_gain", 0.0) or opp.expected_gain)


def _untried(opp: OpportunityLike) -> float:
    """What an untried kind's site is expected to give: its prior
    (:mod:`evolution.priors`) when it has one, else the static prediction."""
    prior = float(getattr(opp, "prior_gain", 0.0) or 0.0)
    return prior if prior > 0 else _predicted(opp)


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
            f"{_all(tried)} {were} current code and rejected (or held for approval): "
            "nothing is worth a candidate until that code changes"
        )
    hopes = [
        (
            calibration.optimistic(o.kind, _predicted(o))
            if calibration.tries(o.kind)
            else max(_untried(o), calibration.optimistic(o.kind, _predicted(o))),
            o,
        )
        for o in fresh
    ]
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
    also = f" ({tried} more already rejected or held on their current code)" if tried else ""
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


def worth_a_slot(
    items: Sequence[Item],
    *,
    threshold: float,
    calibration: Calibration | None = None,
    outcomes: Outcomes | None = None,
    kept: Sequence[float] = (),
    compose: bool = True,
) -> list[Item]:
    """The opportunities (or plans) of ``items`` worth one of a cycle's candidates, in order.

    :func:`worth_trying` decides whether a cycle runs at all; this decides which sites
    it spends its slots on, by the same evidence, so a cycle does not fill its slots
    with what the stop rule already counts as hopeless (seqdiff's fourth cycle drew two
    ``memoize`` sites predicted 1.000× because an untried kind kept the run going).
    A site not already rejected on its function's current code is worth a slot when

    - it may pass alone: its optimistic calibrated gain reaches ``threshold``, or its
      kind has passed the threshold on this genome (where a kind pays, the static
      model's figures for it are lower bounds: the profile's clock misses work done
      without calls, so a set lookup predicted 1.000× measured 1.33×);
    - its kind was never measured: every site the static model or the kind's prior
      (:mod:`evolution.priors`) predicts a gain a composition could use (at least
      :data:`~evolution.compose.MERGE_FLOOR`; how efficient the kind is, is what is
      unknown), and the kind's best site whatever its prediction (one candidate says
      what the kind is worth here; the profile's clock misses work done without calls);
    - with ``compose``, it may pass composed: its kind has measured a gain a composition
      can merge (at least :data:`~evolution.compose.MERGE_FLOOR`) somewhere, the site's
      calibrated gain is at least that floor, and such sites (the best one per function,
      since two rewrites of one function tend to conflict), with the sub-threshold gains
      ``kept`` for this version, are expected to clear ``threshold`` together.
    """
    calibration = calibration or Calibration()
    memory = outcomes or Outcomes()
    fresh: list[tuple[int, OpportunityLike]] = []
    for index, item in enumerate(items):
        opp = _opportunity(item)
        fingerprint = str(getattr(opp, "fingerprint", "") or "")
        if not memory.failed_on(_mutator(item, opp), opp.file, opp.function, fingerprint):
            fresh.append((index, opp))
    proven = {
        kind
        for kind, seen in calibration.observations.items()
        if any(measured >= threshold for measured, _ in seen)
    }
    chosen = {
        index
        for index, opp in fresh
        if opp.kind in proven or calibration.optimistic(opp.kind, _predicted(opp)) >= threshold
    }
    best_untried: dict[str, tuple[float, int]] = {}
    for index, opp in fresh:
        if not calibration.tries(opp.kind):
            if _untried(opp) >= MERGE_FLOOR or _predicted(opp) >= MERGE_FLOOR:
                chosen.add(index)
            gain = (float(opp.expected_gain), -index)
            if opp.kind not in best_untried or gain > best_untried[opp.kind]:
                best_untried[opp.kind] = gain
    chosen.update(-index for _, index in best_untried.values())
    if compose:
        chosen.update(_composable(fresh, threshold, calibration, kept))
    return [item for index, item in enumerate(items) if index in chosen]


def _composable(
    fresh: Sequence[tuple[int, OpportunityLike]],
    threshold: float,
    calibration: Calibration,
    kept: Sequence[float],
) -> set[int]:
    """The sub-threshold sites whose expected gains, composed, clear the threshold (or none)."""
    merged = {
        kind
        for kind, seen in calibration.observations.items()
        if any(measured >= MERGE_FLOOR for measured, _ in seen)
    }
    sites = [
        (index, opp)
        for index, opp in fresh
        if opp.kind in merged and float(opp.expected_gain) >= MERGE_FLOOR
    ]
    per_function: dict[tuple[str, str], float] = {}
    for _, opp in sites:
        where = (opp.file, opp.function)
        per_function[where] = max(per_function.get(where, 0.0), float(opp.expected_gain))
    together = sum(math.log(g) for g in per_function.values()) + sum(
        math.log(g) for g in kept if g > 0
    )
    if not sites or together < math.log(threshold):
        return set()
    return {index for index, _ in sites}
