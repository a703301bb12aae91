"""The one interface every AST rewrite offers: find where it applies, then rewrite one place.

A :class:`Site` is the bridge between analysis and generation: the analyzer ranks sites,
the planner picks one, and the generator hands it back to the same mutator's ``apply``,
possibly on a later version of the file, so ``apply`` re-finds the site by function and
line instead of trusting offsets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast, runtime_checkable

from evolution.errors import MutationError
from evolution.mutators.cst_tools import Edit, Index, index


@dataclass(frozen=True)
class Site:
    """One place a mutator can rewrite, with the static evidence for doing so."""

    file: str
    function: str
    line: int
    kind: str
    detail: str
    weight: float


@runtime_checkable
class Mutator(Protocol):
    """A behaviour-preserving rewrite (the plug-in interface of the generator)."""

    name: str
    risk: float

    def scan(self, path: str, source: str) -> list[Site]: ...

    def apply(self, source: str, site: Site) -> str: ...


@dataclass(frozen=True)
class Finding:
    """A site plus the recipe to rewrite it, built lazily so scanning stays cheap."""

    site: Site
    edit: Callable[[], Edit | None]


class CstMutator(ABC):
    """Shared scan/apply flow: subclasses only say where they apply and what they change."""

    name: str = ""
    risk: float = 0.0

    def scan(self, path: str, source: str) -> list[Site]:
        idx = index(source)
        if idx is None:
            return []
        return [f.site for f in self.findings(idx, path)]

    def findings(self, idx: Index, path: str) -> tuple[Finding, ...]:
        """``find`` once per parsed module and path: the scan and every later ``apply`` share it.

        A finding's ``edit`` builds a fresh :class:`Edit` from the immutable module each
        time it is called, so handing the same findings out again changes nothing.
        """
        key = ("findings", self.name, path)
        found = idx.memo.get(key)
        if found is None:
            found = idx.memo[key] = tuple(self.find(idx, path))
        return cast(tuple[Finding, ...], found)

    def apply(self, source: str, site: Site) -> str:
        idx = index(source)
        if idx is None:
            raise MutationError(
                f"{self.name}: {site.file} does not parse", hint="fix the syntax error first"
            )
        key = ("apply", self.name, site)
        done = idx.memo.get(key)
        if isinstance(done, str):
            return done  # the same rewrite of the same parse: a pure function of both
        matches = [
            f
            for f in self.findings(idx, site.file)
            if f.site.function == site.function and f.site.line == site.line
        ]
        exact = [f for f in matches if f.site.detail == site.detail]
        for finding in exact or matches:
            edit = finding.edit()
            if edit is not None:
                text = edit.run(idx.module, idx)
                idx.memo[key] = text
                return text
        raise MutationError(
            f"{self.name}: nothing to rewrite at {site.file}:{site.line} ({site.function})",
            hint="the code changed since the analysis; re-run it on the current head",
        )

    def site(self, path: str, function: str, line: int, detail: str, weight: float) -> Site:
        return Site(path, function, line, self.name, detail, round(weight, 3))

    @abstractmethod
    def find(self, idx: Index, path: str) -> list[Finding]:
        """Every place this rewrite applies, in source order."""
