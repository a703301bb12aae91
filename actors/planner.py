"""Planner: chooses a mutator for each opportunity, learning from past outcomes."""

from __future__ import annotations

import random
from typing import ClassVar

from actors.base import RoleActor
from actors.messages import PlanCycle
from evolution.mutators import ALL_MUTATORS
from evolution.planner import Plan, plan, random_plan


class Planner(RoleActor):
    role: ClassVar[str] = "planner"
    handlers: ClassVar[dict[type, str]] = {PlanCycle: "on_plan"}

    def on_plan(self, message: PlanCycle) -> list[Plan]:
        # Seeded per cycle: the same seed gives the same plans on a re-run or a resumed run.
        rng = random.Random(f"{message.seed}:{message.cycle}:{message.version}")
        if message.mode == "random":
            return random_plan(message.opportunities, rng=rng, limit=message.limit)
        risks = {m.name: m.risk for m in ALL_MUTATORS}
        return plan(
            message.opportunities,
            message.outcomes,
            risks=risks,
            rng=rng,
            limit=message.limit,
            priors=message.mode == "learning",
            spread=message.mode == "learning",
        )
