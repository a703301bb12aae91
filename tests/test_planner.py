"""The Planner: deterministic ranking, a bandit that learns, exploration, limits."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest

from evolution.planner import OpportunityLike, Outcomes, Plan, plan


@dataclass(frozen=True)
class Opp:
    """Stands in for evolution.analysis.Opportunity (same fields)."""

    file: str
    function: str
    line: int
    kind: str
    evidence: str = "hot loop"
    expected_gain: float = 1.5
    confidence: float = 0.8


def opps() -> list[Opp]:
    return [
        Opp("pkg/a.py", "parse", 10, "memoize", expected_gain=2.0),
        Opp("pkg/a.py", "scan", 30, "set_membership", expected_gain=1.5),
        Opp("pkg/b.py", "join", 5, "join_concat", expected_gain=1.2, confidence=0.5),
        Opp("pkg/b.py", "loop", 50, "hoist_invariant", expected_gain=1.1),
    ]


def test_frozen_dataclass_satisfies_the_protocol() -> None:
    o: OpportunityLike = Opp("a.py", "f", 1, "memoize")
    assert o.kind == "memoize"


def test_outcomes_record_and_estimate() -> None:
    out = Outcomes()
    assert out.estimate("memoize", "memoize") == 0.5
    out.record("memoize", "memoize", True)
    out.record("memoize", "memoize", False)
    out.record("memoize", "memoize", True)
    assert out.table == {("memoize", "memoize"): (3, 2)}
    assert out.estimate("memoize", "memoize") == pytest.approx(3 / 5)
    assert Outcomes({("m", "k"): (20, 0)}).estimate("m", "k") == pytest.approx(1 / 22)


def test_same_seed_same_plans_whatever_the_input_order() -> None:
    out = Outcomes({("memoize", "memoize"): (4, 2)})
    a = plan(opps(), out, risks={}, rng=random.Random(5), limit=4)
    b = plan(opps(), out, risks={}, rng=random.Random(5), limit=4)
    c = plan(list(reversed(opps())), out, risks={}, rng=random.Random(5), limit=4)
    assert a == b == c
    assert all(isinstance(p, Plan) for p in a)


def test_mean_mode_scores_are_the_formula() -> None:
    out = Outcomes({("memoize", "memoize"): (3, 2)})
    [p] = plan(
        [Opp("a.py", "f", 1, "memoize", expected_gain=2.0, confidence=0.5)],
        out,
        risks={"memoize": 1.0},
        rng=random.Random(0),
        limit=5,
        explore=False,
    )
    assert p.score == pytest.approx(math.log(2.0) * 0.5 / 2.0 * (3 / 5))
    assert p.mutator == "memoize"
    assert "2/3 won" in p.reason and "a.py:1" in p.reason


def test_loser_ranks_below_winner_of_equal_gain() -> None:
    loser = Opp("a.py", "f", 1, "loser")
    winner = Opp("a.py", "g", 2, "winner")
    out = Outcomes({("loser", "loser"): (20, 0), ("winner", "winner"): (20, 15)})
    for seed in range(200):
        plans = plan([loser, winner], out, risks={}, rng=random.Random(seed), limit=2)
        assert [p.mutator for p in plans] == ["winner", "loser"], seed
    mean = plan([loser, winner], out, risks={}, rng=random.Random(0), limit=2, explore=False)
    assert mean[0].mutator == "winner"


def test_unexplored_mutator_is_still_tried_sometimes() -> None:
    new = Opp("a.py", "f", 1, "new")
    known = Opp("a.py", "g", 2, "known")
    out = Outcomes({("known", "known"): (20, 15)})
    firsts = [
        plan([new, known], out, risks={}, rng=random.Random(s), limit=1)[0].mutator
        for s in range(300)
    ]
    share = firsts.count("new") / len(firsts)
    assert 0.1 < share < 0.5  # P(U(0,1) > Beta(16, 6)) ≈ 0.27
    # without exploration the belief decides alone: 0.5 < 16/22
    assert (
        plan([new, known], out, risks={}, rng=random.Random(0), limit=1, explore=False)[0].mutator
        == "known"
    )


def test_risk_divides_the_score() -> None:
    a = Opp("a.py", "f", 1, "safe")
    b = Opp("a.py", "g", 2, "risky")
    plans = plan(
        [b, a], Outcomes(), risks={"risky": 3.0}, rng=random.Random(0), limit=2, explore=False
    )
    assert [p.mutator for p in plans] == ["safe", "risky"]
    assert plans[1].score == pytest.approx(plans[0].score / 4)
    with pytest.raises(ValueError, match="risks must be 0 or more"):
        plan([a], Outcomes(), risks={"safe": -1.0}, rng=random.Random(0), limit=1)


def test_limit_is_respected() -> None:
    for limit in range(6):
        assert len(plan(opps(), Outcomes(), risks={}, rng=random.Random(1), limit=limit)) == min(
            limit, 4
        )
    with pytest.raises(ValueError, match="limit"):
        plan(opps(), Outcomes(), risks={}, rng=random.Random(1), limit=-1)


def test_duplicates_are_skipped() -> None:
    o = Opp("a.py", "f", 1, "memoize", expected_gain=1.5)
    better_copy = Opp("a.py", "f", 1, "memoize", evidence="profile", expected_gain=3.0)
    plans = plan(
        [o, better_copy, o], Outcomes(), risks={}, rng=random.Random(0), limit=10, explore=False
    )
    assert len(plans) == 1
    assert plans[0].opportunity.expected_gain == 3.0


def test_several_candidate_mutators_per_kind() -> None:
    def choose(kind: str) -> list[str]:
        return ["llm", "param_search"] if kind == "slow_constant" else [kind]

    items = [Opp("a.py", "<module>", 3, "slow_constant"), Opp("a.py", "f", 9, "memoize")]
    plans = plan(
        items,
        Outcomes(),
        risks={"llm": 1.0},
        rng=random.Random(0),
        limit=10,
        candidates_for_kind=choose,
        explore=False,
    )
    assert sorted(p.mutator for p in plans) == ["llm", "memoize", "param_search"]
    assert plans[-1].mutator == "llm"  # same gain, higher risk


def test_ties_are_broken_deterministically() -> None:
    items = [Opp("b.py", "f", 1, "m"), Opp("a.py", "f", 2, "m"), Opp("a.py", "f", 1, "m")]
    plans = plan(items, Outcomes(), risks={}, rng=random.Random(0), limit=3, explore=False)
    assert [(p.opportunity.file, p.opportunity.line) for p in plans] == [
        ("a.py", 1),
        ("a.py", 2),
        ("b.py", 1),
    ]


def test_empty_input() -> None:
    assert plan([], Outcomes(), risks={}, rng=random.Random(0), limit=3) == []


def test_a_large_gain_outranks_a_lucky_draw_on_a_small_one() -> None:
    """Gains near 1.0 must not let the bandit's draw decide alone."""
    big = Opp("a.py", "hot", 1, "set_membership", expected_gain=1.2, confidence=0.8)
    small = Opp("a.py", "cold", 9, "local_alias", expected_gain=1.02, confidence=0.8)
    wins = 0
    for seed in range(200):
        [first] = plan([small, big], Outcomes({}), risks={}, rng=random.Random(seed), limit=1)
        wins += first.mutator == "set_membership"
    assert wins >= 170
