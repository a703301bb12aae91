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
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


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


@dataclass
class Outcomes:
    """The bandit's memory: (mutator, kind) → (tries, wins), rebuilt from the log."""

    table: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def record(self, mutator: str, kind: str, won: bool) -> None:
        """Count one finished candidate, so the next plan learns from it without a replay."""
        tries, wins = self.table.get((mutator, kind), (0, 0))
        self.table[(mutator, kind)] = (tries + 1, wins + (1 if won else 0))

    def counts(self, mutator: str, kind: str) -> tuple[int, int]:
        """(tries, wins), zero for an arm never pulled."""
        return self.table.get((mutator, kind), (0, 0))

    def estimate(self, mutator: str, kind: str) -> float:
        """Posterior mean win rate under a uniform prior: 0.5 for an arm never pulled."""
        tries, wins = self.counts(mutator, kind)
        return (1 + wins) / (2 + tries)

    def sample(self, mutator: str, kind: str, rng: random.Random) -> float:
        """A Thompson draw from Beta(1 + wins, 1 + losses)."""
        tries, wins = self.counts(mutator, kind)
        return rng.betavariate(1 + wins, 1 + max(0, tries - wins))


def plan(
    opportunities: Sequence[OpportunityLike],
    outcomes: Outcomes,
    *,
    risks: Mapping[str, float],
    rng: random.Random,
    limit: int,
    candidates_for_kind: Callable[[str], Sequence[str]] | None = None,
    explore: bool = True,
) -> list[Plan]:
    """Rank (opportunity, mutator) pairs and return the best ``limit`` of them.

    ``risks`` maps a mutator name to its risk (0 = safe; missing means 0).  By default an
    opportunity's mutator is the one named by its kind; ``candidates_for_kind`` lets a
    kind be attacked by several.  With ``explore=False`` the posterior mean replaces the
    Thompson draw (for ``tars evolve plan`` showing what the swarm believes).
    """
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")
    choose = candidates_for_kind or (lambda kind: (kind,))

    # Sorting before anything random makes the result independent of input order.
    pairs: dict[tuple[str, str, str, int], tuple[OpportunityLike, str]] = {}
    for opp in sorted(opportunities, key=lambda o: (o.file, o.function, o.line, o.kind, -_base(o))):
        for mutator in choose(opp.kind):
            key = (mutator, opp.file, opp.function, opp.line)
            if key not in pairs:  # first seen is the best-scoring duplicate
                pairs[key] = (opp, mutator)

    arms = sorted({(mutator, opp.kind) for opp, mutator in pairs.values()})
    factor: dict[tuple[str, str], float] = {
        arm: outcomes.sample(*arm, rng) if explore else outcomes.estimate(*arm) for arm in arms
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
        reason = (
            f"{opp.kind} at {opp.file}:{opp.line} ({opp.function}): expected gain "
            f"{opp.expected_gain:.2f} at {opp.confidence:.0%} confidence, risk {risk:g}; "
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
    return plans[:limit]


def _base(opp: OpportunityLike) -> float:
    # The log of the gain, not the gain: gains cluster just above 1.0 (1.02, 1.2), so
    # multiplying the raw gain by a bandit draw in [0, 1] would let the draw decide
    # alone; log(1.2) is ten times log(1.02), as a 20 % speed-up is worth ten 2 % ones.
    return max(math.log(max(float(opp.expected_gain), 1e-9)), 1e-4) * float(opp.confidence)
