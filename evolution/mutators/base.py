"""The one interface every AST rewrite offers: find where it applies, then rewrite one place.

A :class:`Site` is the bridge between analysis and generation: the analyzer ranks sites,
the planner picks one, and the generator hands it back to the same mutator's ``apply``,
possibly on a later version of the file, so ``apply`` re-finds the site by function and
line instead of trusting offsets.

Every rewrite walks a parsed module the same way (each node of some kinds, in source
order), so :meth:`CstMutator.find` does the walk once for all of them and a mutator says
only which nodes it looks at (``kinds``), whether the module can hold a site at all
(``applies``), and what it makes of one node (``match``).  A new mutator is one small
file: those three and the rewrite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar, cast, runtime_checkable

import libcst as cst

from evolution.errors import MutationError
from evolution.mutators.cst_tools import Edit, Index, Located, index, qualname

_T = TypeVar("_T")


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


@dataclass(eq=False)
class Scan:
    """One ``find`` pass of one mutator over one parsed module: what its matches share."""

    mutator: CstMutator
    idx: Index
    path: str
    _seen: set[Hashable] = field(default_factory=set)
    _derived: dict[object, object] = field(default_factory=dict)

    def first(self, key: Hashable) -> bool:
        """True the first time ``key`` comes up in this pass (one finding per loop and name)."""
        if key in self._seen:
            return False
        self._seen.add(key)
        return True

    def derived(self, compute: Callable[[Index], _T]) -> _T:
        """``compute(idx)`` once per pass: what every match needs from the whole module.

        Kept per pass, not on the :class:`Index`, so a pass sees exactly what a fresh
        computation gives (a purity judge, say, fills its verdicts as it is asked).
        """
        if compute not in self._derived:
            self._derived[compute] = compute(self.idx)
        return cast(_T, self._derived[compute])

    def finding(
        self,
        loc: Located,
        detail: str,
        weight: float,
        edit: Callable[[], Edit | None],
        *,
        function: str | None = None,
        line: int | None = None,
    ) -> Finding:
        """A finding at ``loc``: in its enclosing function, on its line, unless told otherwise."""
        site = self.mutator.site(
            self.path,
            qualname(loc.parents) if function is None else function,
            loc.line if line is None else line,
            detail,
            weight,
        )
        return Finding(site, edit)


class CstMutator(ABC):
    """Shared find/scan/apply flow: subclasses only say where they apply and what they change."""

    name: str = ""
    risk: float = 0.0
    #: the node types ``match`` is shown: every node of these kinds, in source order
    kinds: ClassVar[tuple[type[cst.CSTNode], ...]] = (cst.CSTNode,)

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

    def find(self, idx: Index, path: str) -> list[Finding]:
        """Every place this rewrite applies, in source order: ``match`` at each node of ``kinds``."""
        if not self.applies(idx):
            return []
        scan = Scan(self, idx, path)
        kinds = self.kinds
        return [
            finding
            for loc in idx.nodes
            if isinstance(loc.node, kinds)
            for finding in self.match(scan, loc)
        ]

    def applies(self, idx: Index) -> bool:
        """Whether anything in the module can be rewritten: a cheap check that skips the walk."""
        return True

    @abstractmethod
    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        """The findings at one node of ``kinds`` (usually none, at most a few)."""
