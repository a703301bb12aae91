"""Analyzer: profiles the head in the sandbox and ranks where it can be improved."""

from __future__ import annotations

from typing import Any, ClassVar

from actors.base import RoleActor
from actors.messages import Analyze
from evolution.analysis import Opportunity, analyze
from evolution.profile import Profile, parse_profile
from runtime.counting import count_cached
from runtime.incubation import bench_env, effective_measure
from runtime.sandbox import Sandbox, SandboxLimits


class Analyzer(RoleActor):
    role: ClassVar[str] = "analyzer"
    handlers: ClassVar[dict[type, str]] = {Analyze: "on_analyze"}

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self._analyses: dict[str, tuple[Opportunity, ...]] = {}

    def on_analyze(self, message: Analyze) -> list[Opportunity]:
        # A version's opportunities never change: the tree is fixed by its hash and so is
        # its profile, so cycles that adopt nothing pay for neither again.
        cached = self._analyses.get(message.version)
        if cached is not None:
            return list(cached)
        profile = self._profile(message)
        opportunities = analyze(message.tree, message.manifest, profile)
        if len(self._analyses) > 16:
            self._analyses.pop(next(iter(self._analyses)))
        self._analyses[message.version] = tuple(opportunities)
        return opportunities

    def _profile(self, message: Analyze) -> Profile | None:
        limits = SandboxLimits.from_manifest(message.manifest.limits)
        with self.sandbox.workspace(message.tree) as workdir:
            # Under the exact measure the plan must be exact too: an event-counting clock.
            measure = effective_measure(message.manifest)
            result, rows = self.sandbox.run_profiled(
                workdir,
                message.manifest.commands.bench,
                limits,
                env=bench_env(measure),
                events=measure == "instructions",
            )
        if not result.ok:
            return None  # static analysis alone still ranks opportunities
        data: list[dict[str, Any]] = [dict(row) for row in rows]
        # the version's instructions: what a rewrite's prior weighs the work it removes
        # against (evolution/priors.py); the parent's count, which judging its candidates
        # needs anyway, so counted here once and cached
        counted = (
            count_cached(self.sandbox, message.tree, message.manifest).instructions
            if measure == "instructions"
            else None
        )
        return parse_profile(data, instructions=counted)
