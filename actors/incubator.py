"""Incubator: proves one candidate in a sandbox; a pool of these uses every core."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from actors.base import RoleActor
from actors.messages import Incubate
from evolution.patch import apply_patch
from evolution.policy import Policy, needs_more_rounds
from evolution.stats import compare
from runtime.incubation import IncubationReport, incubate
from runtime.sandbox import Sandbox


class Incubator(RoleActor):
    role: ClassVar[str] = "incubator"
    handlers: ClassVar[dict[type, str]] = {Incubate: "on_incubate"}

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

    def on_incubate(self, message: Incubate) -> IncubationReport:
        # The proposer's sandbox never holds the held-out files: the candidate's code runs
        # here, and it must not be able to read the tests it will be judged by.
        parent_tree = message.manifest.without_held_out(message.parent_tree)
        candidate_tree = apply_patch(parent_tree, message.candidate.patch)
        fitness = message.manifest.fitness
        policy = Policy(threshold=fitness.threshold, confidence=fitness.confidence)

        def undecided(parent: Sequence[float], candidate: Sequence[float]) -> bool:
            comparison = compare(
                parent, candidate, direction=fitness.direction, confidence=fitness.confidence
            )
            return needs_more_rounds(comparison, policy)

        return incubate(
            self.sandbox,
            message.manifest,
            message.candidate.id,
            parent_tree,
            candidate_tree,
            message.rounds,
            max_rounds=message.rounds * 2,
            undecided=undecided,
        )
