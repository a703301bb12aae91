"""Choosing among several models: Thompson sampling, cost-aware.

Each configured model is an arm.  Its memory is handed in (how many candidates it was
asked for, how many of them won, what it cost so far), built by the caller from the log
and the run's spend, so the choice is pure and replays alike.  A draw from the arm's
Beta posterior of winning is divided by its expected cost per request (tokens, or money
when prices are configured): a cheap model that wins now and then beats an expensive
one that wins slightly more often, and a model never tried is assumed to cost what the
others cost on average, so it still gets its chance.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRecord:
    """One model's memory: candidates asked for, wins (adopted), and what it cost."""

    tries: int = 0
    wins: int = 0
    tokens: int = 0
    money: float = 0.0


def expected_cost(record: ModelRecord, prior: float, by_money: bool) -> float:
    """Mean cost per try, with one pseudo-try at ``prior`` so a new arm is never free."""
    spent = record.money if by_money else float(record.tokens)
    return max((spent + prior) / (record.tries + 1), 1e-12)


def choose_model(
    models: Sequence[str],
    memory: Mapping[str, ModelRecord],
    rng: random.Random,
    *,
    by_money: bool = False,
) -> tuple[str, str]:
    """The model to ask next, and why; one draw per model in the given order (replayable)."""
    if not models:
        raise ValueError("choose_model needs at least one model")
    records = {name: memory.get(name, ModelRecord()) for name in models}
    tried = [r for r in records.values() if r.tries]
    spent = [r.money if by_money else float(r.tokens) for r in tried]
    prior = sum(spent) / sum(r.tries for r in tried) if tried and sum(spent) > 0 else 1.0
    best: tuple[float, str, str] | None = None
    for name in models:
        record = records[name]
        draw = rng.betavariate(1 + record.wins, 1 + max(0, record.tries - record.wins))
        cost = expected_cost(record, prior, by_money)
        value = draw / cost
        why = (
            f"{name}: {record.wins}/{record.tries} won, drew {draw:.2f}, "
            f"{cost:.4g} {'money' if by_money else 'tokens'} per try"
        )
        if best is None or value > best[0]:
            best = (value, name, why)
    assert best is not None
    return best[1], best[2]
