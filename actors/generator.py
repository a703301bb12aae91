"""Generator: turns plans into candidate patches (AST rewrites, tunable constants)."""

from __future__ import annotations

from typing import ClassVar

from actors.base import RoleActor
from actors.messages import Generate, Generated
from evolution.errors import TarsError
from evolution.generate import Candidate, from_rewrite
from evolution.mutators import by_name
from evolution.mutators.base import Site
from evolution.planner import Plan

#: Everything of a plan that ``_one`` reads.
_Key = tuple[str, str, str, int, str, str, float]
#: Versions whose candidates the generator remembers (a cycle that adopts nothing plans
#: the same head again, usually with the same opportunities).
_REMEMBERED_VERSIONS = 4


class Generator(RoleActor):
    role: ClassVar[str] = "generator"
    handlers: ClassVar[dict[type, str]] = {Generate: "on_generate"}

    def __init__(self) -> None:
        super().__init__()
        # version -> (mutator and the opportunity's fields) -> the candidate, or why it could not be made.  A
        # version id is the hash of its tree, and generating is a pure function of the
        # tree and the plan, so a remembered answer is the answer.
        self._made: dict[str, dict[_Key, Candidate | str]] = {}

    def on_generate(self, message: Generate) -> Generated:
        candidates: list[Candidate] = []
        failures: list[str] = []
        seen: set[str] = set()
        for item in message.plans:
            made = self._remembered(message.version)
            opp = item.opportunity
            key = (
                item.mutator,
                opp.file,
                opp.function,
                opp.line,
                opp.kind,
                opp.evidence,
                opp.expected_gain,
            )
            candidate_or_error = made.get(key)
            if candidate_or_error is None:
                try:
                    candidate_or_error = self._one(message, item)
                except TarsError as exc:
                    candidate_or_error = str(exc)
                made[key] = candidate_or_error
            if isinstance(candidate_or_error, str):
                failures.append(candidate_or_error)
                continue
            candidate = candidate_or_error
            if candidate.id not in seen:
                seen.add(candidate.id)
                candidates.append(candidate)
        return Generated(candidates, failures)

    def _remembered(self, version: str) -> dict[_Key, Candidate | str]:
        made = self._made.get(version)
        if made is None:
            while len(self._made) >= _REMEMBERED_VERSIONS:
                self._made.pop(next(iter(self._made)))
            made = self._made[version] = {}
        return made

    def _one(self, message: Generate, item: Plan) -> Candidate:
        opp = item.opportunity
        mutator = by_name(item.mutator)
        site = Site(
            file=opp.file,
            function=opp.function,
            line=opp.line,
            kind=opp.kind,
            detail=opp.evidence,
            weight=opp.expected_gain,
        )
        return from_rewrite(
            message.tree,
            message.version,
            opp.file,
            lambda source: mutator.apply(source, site),
            mutator=mutator.name,
            kind=opp.kind,
            function=opp.function,
            line=opp.line,
            description=f"{mutator.name} in {opp.function} ({opp.file}:{opp.line}): {opp.evidence}",
        )
