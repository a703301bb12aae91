"""The values that cross the store's boundary: what callers hand in and get back.

They are frozen dataclasses, separate from the aggregate's events, so the actors and the
CLI never hold a domain object they could mutate, and the event classes can evolve
(upcasting) without every caller changing.  Field names mirror the event fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from evolution.tree import Tree


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate a cycle proved, and what the governor said about it."""

    candidate: str
    parent: str
    patch: str
    mutator: str
    kind: str
    verdict: str
    reasons: list[str]
    ratio: float | None
    low: float | None
    high: float | None
    tests_passed: bool


@dataclass(frozen=True)
class Adoption:
    """A decision that ``version`` (``parent`` + ``patch``) becomes the genome's head."""

    version: str
    parent: str
    patch: str
    mutator: str
    kind: str
    fitness_before: float | None
    fitness_after: float | None
    ratio: float | None
    low: float | None
    high: float | None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Held:
    """A candidate the governor held for a human ``tars approve``."""

    candidate: str
    parent: str
    patch: str
    mutator: str
    kind: str
    reasons: list[str]
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Head:
    """A genome's current state, as the aggregate holds it (no history)."""

    name: str
    version: str
    tree: Tree
    fitness: float | None
    versions_count: int
    cycles_completed: int
    manifest_text: str
    pending: dict[str, Held]
    #: swarm proposals waiting for votes: id -> fields (``version``, ``parent``, ``votes``, …)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LogEntry:
    """One stored event, decoded straight from its msgpack state (no domain objects).

    ``seq`` is the store-wide notification id (the order of ``tars log ls``);
    ``position`` is the event's place in its genome's own sequence (what snapshots and
    ``materialise`` count in).  ``version``/``parent`` are the version ids the event is
    about (candidate and parent for evaluations, target and previous head for rollbacks).
    """

    seq: int
    type: str
    genome: str
    version: str | None
    parent: str | None
    time: datetime
    node: str
    data: dict[str, Any]
    position: int = 0


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` checked; ``heads`` maps each genome to its last chain, which nodes can compare."""

    events: int
    genomes: int
    snapshots: int
    heads: dict[str, str]

    def __str__(self) -> str:
        return f"{self.events} events in {self.genomes} genome(s) and {self.snapshots} snapshot(s) verified"
