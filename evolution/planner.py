"""The Planner: which opportunities to attack this cycle, and with which mutator.

Sandbox time is the scarce resource (every candidate costs a test run and several
benchmark rounds), so the planner ranks by what a candidate is expected to pay:

    score = log(expected_gain) × confidence ÷ (1 + risk) × bandit factor

The bandit factor is what the swarm has learnt: each (mutator, kind) pair is an arm of
a multi-armed bandit whose wins and tries come from the log (a "win" is an adopted
candidate).  Thompson sampling draws the factor from the arm's Beta posterior, so a
mutator that keeps failing on a kind sinks, one that keeps winning rises, and one never
tried still gets a fair chance now and then, without any tuning constant.  Draws come
from the ``rng`` passed in, one per arm in a fixed order, so the same seed and the same
opportunities give the same plans on every node, whatever order they arrived in.

The arm's prior is not uniform when the opportunities carry their mutator's static
weight: a rewrite that makes its code twice as fast starts believed more often right
than one that saves 5 %, worth two tries (:func:`prior`).  And the bandit remembers
sites, not only arms: a mutator whose candidate was rejected on a function is not
proposed on that function again while its code is unchanged (its fingerprint,
:mod:`evolution.sites`), since the same rewrite of the same code measures the same.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from evolution.sites import changed_functions

#: how many tries the static weight's prior counts for
PRIOR_TRIES = 2.0
#: the weight at which a rewrite starts believed right half the time (1.2: 20 % faster code)
_HALF_WEIGHT = 1.2
#: a (mutator, file, function, fingerprint) whose rewrite was rejected or held
SiteKey = tuple[str, str, str, str]
#: the verdicts after which the same rewrite of the same code is not proposed again: a
#: rejection measures the same again, and a held candidate waits for a person (proposed
#: again it is the same candidate, skipped as judged: tomlparse at threshold 1.01 spent
#: cycles 3-20 on "no candidates" so); an approval moves the head and changes the code
SETTLED = ("reject", "hold")
#: how a coordinator plans (``Coordinator(planner=...)``): "learning" is issue 10's
#: planner (calibration, stop rule, near-duplicates, rejected-site memory, weight priors);
#: "plain" the Thompson bandit alone with uniform priors (the planner before it);
#: "random" uniform random choice, seeded (the yardstick of bench/bench_planner.py)
PLANNERS = ("learning", "plain", "random")


class OpportunityLike(Protocol):
    """What the planner needs of ``evolution.analysis.Opportunity`` (read-only, so frozen dataclasses fit)."""

    @property
    def file(self) -> str: ...
    @property
    def function(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def evidence(self) -> str: ...
    @property
    def expected_gain(self) -> float: ...
    @property
    def confidence(self) -> float: ...


@dataclass(frozen=True)
class Plan:
    """One opportunity paired with the mutator to try on it, and why it was chosen."""

    opportunity: OpportunityLike
    mutator: str
    score: float
    reason: str


def prior(weight: float | None) -> tuple[float, float]:
    """The Beta prior of an arm whose rewrite makes its code ``weight`` times faster.

    Its mean is ``(w - 1) / (w - 1 + 0.2)`` (1.05 → 0.2, 1.2 → 0.5, 2.0 → 0.83), held in
    0.05..0.95, worth :data:`PRIOR_TRIES` tries; no weight gives the uniform Beta(1, 1).
    """
    if weight is None:
        return 1.0, 1.0
    gain = max(0.0, float(weight) - 1.0)
    mean = min(0.95, max(0.05, gain / (gain + (_HALF_WEIGHT - 1.0))))
    return PRIOR_TRIES * mean, PRIOR_TRIES * (1.0 - mean)


@dataclass
class Outcomes:
    """The bandit's memory: (mutator, kind) → (tries, wins), and the sites that failed.

    Rebuilt from the log (:meth:`from_log`), then kept up to date in memory.
    """

    table: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    failed: set[SiteKey] = field(default_factory=set)

    @classmethod
    def from_log(
        cls,
        rows: Iterable[Mapping[str, Any]],
        tree_of: Callable[[str], Mapping[str, str] | None] | None = None,
    ) -> Outcomes:
        """The memory the log holds: ``rows`` are the data of ``CandidateEvaluated`` events.

        With ``tree_of`` (a version id → its tree, or None if unknown) a rejected
        candidate's patch is applied to its parent to find the functions it rewrote.
        """
        outcomes = cls()
        for row in rows:
            mutator, kind = str(row.get("mutator")), str(row.get("kind"))
            outcomes.record(mutator, kind, row.get("verdict") == "adopt")
            parent, patch = row.get("parent"), row.get("patch")
            if tree_of is None or row.get("verdict") not in SETTLED or not isinstance(patch, str):
                continue
            tree = tree_of(str(parent))
            if tree is not None:
                outcomes.remember_patch(mutator, tree, patch)
        return outcomes

    def remember_failure(self, mutator: str, file: str, function: str, fingerprint: str) -> None:
        """``mutator`` was rejected on ``function``: not again while its code is unchanged."""
        if fingerprint:
            self.failed.add((mutator, file, function, fingerprint))

    def remember_patch(self, mutator: str, parent: Mapping[str, str], patch: str) -> None:
        """A rejected patch of ``mutator`` on ``parent``: every function it changed failed."""
        for file, function, fingerprint in changed_functions(parent, patch):
            self.remember_failure(mutator, file, function, fingerprint)

    def failed_on(self, mutator: str, file: str, function: str, fingerprint: str) -> bool:
        """Whether ``mutator`` already failed on this very code of ``function``."""
        return bool(fingerprint) and (mutator, file, function, fingerprint) in self.failed

    def record(self, mutator: str, kind: str, won: bool) -> None:
        """Count one finished candidate, so the next plan learns from it without a replay."""
        tries, wins = self.table.get((mutator, kind), (0, 0))
        self.table[(mutator, kind)] = (tries + 1, wins + (1 if won else 0))

    def counts(self, mutator: str, kind: str) -> tuple[int, int]:
        """(tries, wins), zero for an arm never pulled."""
        return self.table.get((mutator, kind), (0, 0))

    def estimate(self, mutator: str, kind: str, prior: tuple[float, float] = (1.0, 1.0)) -> float:
        """Posterior mean win rate; under the uniform prior 0.5 for an arm never pulled."""
        tries, wins = self.counts(mutator, kind)
        return (prior[0] + wins) / (prior[0] + prior[1] + tries)

    def sample(
        self, mutator: str, kind: str, rng: random.Random, prior: tuple[float, float] = (1.0, 1.0)
    ) -> float:
        """A Thompson draw from Beta(a + wins, b + losses), Beta(a, b) being the prior."""
        tries, wins = self.counts(mutator, kind)
        return rng.betavariate(prior[0] + wins, prior[1] + max(0, tries - wins))


def plan(
    opportunities: Sequence[OpportunityLike],
    outcomes: Outcomes,
    *,
    risks: Mapping[str, float],
    rng: random.Random,
    limit: int,
    candidates_for_kind: Callable[[str], Sequence[str]] | None = None,
    explore: bool = True,
    priors: bool = True,
    spread: bool = False,
) -> list[Plan]:
    """Rank (opportunity, mutator) pairs and return the best ``limit`` of them.

    ``risks`` maps a mutator name to its risk (0 = safe; missing means 0).  By default an
    opportunity's mutator is the one named by its kind; ``candidates_for_kind`` lets a
    kind be attacked by several.  With ``explore=False`` the posterior mean replaces the
    Thompson draw (for ``tars evolve plan`` showing what the swarm believes).  With
    ``priors=False`` every arm starts at the uniform Beta(1, 1), whatever its weight.
    With ``spread`` the best plan of each function comes before any second plan of one
    (:func:`spread_functions`).
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    choose = candidates_for_kind or (lambda kind: (kind,))

    pairs = _pairs(opportunities, outcomes, choose)
    arm_priors = _priors(pairs.values(), weighted=priors)
    arms = sorted(arm_priors)
    factor: dict[tuple[str, str], float] = {
        arm: outcomes.sample(*arm, rng, arm_priors[arm])
        if explore
        else outcomes.estimate(*arm, arm_priors[arm])
        for arm in arms
    }

    plans: list[Plan] = []
    for opp, mutator in pairs.values():
        risk = float(risks.get(mutator, 0.0))
        if risk < 0:
            raise ValueError(f"risk of mutator {mutator!r} is {risk}: risks must be 0 or more")
        bandit = factor[(mutator, opp.kind)]
        score = _base(opp) / (1.0 + risk) * bandit
        tries, wins = outcomes.counts(mutator, opp.kind)
        record = f"{wins}/{tries} won" if tries else "untried"
        static = float(getattr(opp, "predicted_gain", 0.0) or opp.expected_gain)
        calibrated = f" (static {static:.3f})" if abs(static - opp.expected_gain) >= 5e-4 else ""
        reason = (
            f"{opp.kind} at {opp.file}:{opp.line} ({opp.function}): expected gain "
            f"{opp.expected_gain:.3f}{calibrated} at {opp.confidence:.0%} confidence, risk {risk:g}; "
            f"{mutator} on {opp.kind} {record} ({'sampled' if explore else 'mean'} {bandit:.2f})"
        )
        plans.append(Plan(opp, mutator, score, reason))

    plans.sort(
        key=lambda p: (
            -p.score,
            p.opportunity.file,
            p.opportunity.line,
            p.opportunity.function,
            p.mutator,
        )
    )
    return (spread_functions(plans) if spread else plans)[:limit]


def spread_functions(plans: Sequence[Plan]) -> list[Plan]:
    """``plans`` with the best of each function first, then the second of each, and so on.

    A cycle's few slots buy more spread over distinct functions: two rewrites of one
    function tend to touch the same lines (their merge conflicts, so a composition keeps
    one) and share its heat (the second mostly repeats the first's saving), where winners
    in distinct functions compose.  Stable: the order within each round is the score's.
    """
    rounds: dict[tuple[str, str], int] = {}
    keyed: list[tuple[int, int, Plan]] = []
    for position, item in enumerate(plans):
        where = (item.opportunity.file, item.opportunity.function)
        rounds[where] = rounds.get(where, -1) + 1
        keyed.append((rounds[where], position, item))
    return [item for _, _, item in sorted(keyed, key=lambda k: (k[0], k[1]))]


def random_plan(
    opportunities: Sequence[OpportunityLike],
    *,
    rng: random.Random,
    limit: int,
    candidates_for_kind: Callable[[str], Sequence[str]] | None = None,
) -> list[Plan]:
    """``limit`` (opportunity, mutator) pairs drawn uniformly among the applicable ones.

    No gain, no bandit, no memory: the yardstick the learning planner is measured
    against (bench/bench_planner.py).  The pairs are sorted before the draw, so the same
    ``rng`` state and opportunities give the same plans whatever their order.
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    pairs = list(
        _pairs(opportunities, Outcomes(), candidates_for_kind or (lambda kind: (kind,))).values()
    )
    chosen = rng.sample(pairs, min(limit, len(pairs)))
    return [
        Plan(
            opp,
            mutator,
            0.0,
            f"{opp.kind} at {opp.file}:{opp.line} ({opp.function}): drawn at random "
            f"among {len(pairs)} applicable (opportunity, mutator) pairs",
        )
        for opp, mutator in chosen
    ]


def _pairs(
    opportunities: Sequence[OpportunityLike],
    outcomes: Outcomes,
    choose: Callable[[str], Sequence[str]],
) -> dict[tuple[str, str, str, int], tuple[OpportunityLike, str]]:
    """Every (opportunity, mutator) worth ranking: duplicates and known failures left out."""
    # Sorting before anything random makes the result independent of input order.
    pairs: dict[tuple[str, str, str, int], tuple[OpportunityLike, str]] = {}
    for opp in sorted(opportunities, key=lambda o: (o.file, o.function, o.line, o.kind, -_base(o))):
        fingerprint = str(getattr(opp, "fingerprint", "") or "")
        for mutator in choose(opp.kind):
            if outcomes.failed_on(mutator, opp.file, opp.function, fingerprint):
                continue
            key = (mutator, opp.file, opp.function, opp.line)
            if key not in pairs:  # first seen is the best-scoring duplicate
                pairs[key] = (opp, mutator)
    return pairs


def _priors(
    pairs: Iterable[tuple[OpportunityLike, str]], weighted: bool = True
) -> dict[tuple[str, str], tuple[float, float]]:
    """Each arm's prior, from the largest static weight among its opportunities (if known)."""
    weights: dict[tuple[str, str], float | None] = {}
    for opp, mutator in pairs:
        weight = getattr(opp, "weight", None) if weighted else None
        arm = (mutator, opp.kind)
        if isinstance(weight, (int, float)) and not isinstance(weight, bool):
            known = weights.get(arm)
            weights[arm] = float(weight) if known is None else max(known, float(weight))
        else:
            weights.setdefault(arm, None)
    return {arm: prior(weight) for arm, weight in weights.items()}


def _base(opp: OpportunityLike) -> float:
    # The log of the gain, not the gain: gains cluster just above 1.0 (1.02, 1.2), so
    # multiplying the raw gain by a bandit draw in [0, 1] would let the draw decide
    # alone; log(1.2) is ten times log(1.02), as a 20 % speed-up is worth ten 2 % ones.
    return max(math.log(max(float(opp.expected_gain), 1e-9)), 1e-4) * float(opp.confidence)
