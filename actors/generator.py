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


class Generator(RoleActor):
    role: ClassVar[str] = "generator"
    handlers: ClassVar[dict[type, str]] = {Generate: "on_generate"}

    def on_generate(self, message: Generate) -> Generated:
        candidates: list[Candidate] = []
        failures: list[str] = []
        seen: set[str] = set()
        for item in message.plans:
            try:
                candidate = self._one(message, item)
            except TarsError as exc:
                failures.append(str(exc))
                continue
            if candidate.id not in seen:
                seen.add(candidate.id)
                candidates.append(candidate)
        return Generated(candidates, failures)

    def _one(self, message: Generate, item: Plan) -> Candidate:
        opp = item.opportunity
        mutator = by_name(item.mutator)
        site = Site(file=opp.file, function=opp.function, line=opp.line, kind=opp.kind, detail=opp.evidence, weight=opp.expected_gain)
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
