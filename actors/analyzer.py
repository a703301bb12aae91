"""Analyzer: profiles the head in the sandbox and ranks where it can be improved."""

from __future__ import annotations

from typing import Any, ClassVar

from actors.base import RoleActor
from actors.messages import Analyze
from evolution.analysis import Opportunity, analyze
from evolution.profile import Profile, parse_profile
from runtime.sandbox import Sandbox, SandboxLimits


class Analyzer(RoleActor):
    role: ClassVar[str] = "analyzer"
    handlers: ClassVar[dict[type, str]] = {Analyze: "on_analyze"}

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        # Profiling costs a benchmark run; a version's profile never changes, so keep the last few.
        self._profiles: dict[str, Profile | None] = {}

    def on_analyze(self, message: Analyze) -> list[Opportunity]:
        profile = self._profiles.get(message.version)
        if message.version not in self._profiles:
            profile = self._profile(message)
            if len(self._profiles) > 16:
                self._profiles.pop(next(iter(self._profiles)))
            self._profiles[message.version] = profile
        return analyze(message.tree, message.manifest, profile)

    def _profile(self, message: Analyze) -> Profile | None:
        limits = SandboxLimits.from_manifest(message.manifest.limits)
        with self.sandbox.workspace(message.tree) as workdir:
            result, rows = self.sandbox.run_profiled(workdir, message.manifest.commands.bench, limits)
        if not result.ok:
            return None  # static analysis alone still ranks opportunities
        data: list[dict[str, Any]] = [dict(row) for row in rows]
        return parse_profile(data)
