"""The values that cross the store's boundary: what callers hand in and get back.

They are frozen dataclasses, so the actors and the CLI never hold a domain object they
could mutate.  :class:`CandidateRecord`, :class:`Adoption` and :class:`Held` are also the
one definition of their field lists: the lineage's events that store them
(``CandidateEvaluated``, ``VersionAdopted`` and ``ProposalSubmitted``,
``ApprovalRequested``) inherit these fields, and the aggregate reads waiting proposals
and approvals back through :func:`stored_fields`.  A field added here is therefore a
field of every such event stored from then on: events stored before lack it, so it needs
a default, or an upcast on the event class (eventsourcing's ``class_version``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
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
    #: the static model's predicted gain for the candidate's opportunity (None: no plan
    #: predicted it, a model's or a composition's candidate): calibration reads it back
    #: from the log against ``ratio`` (:func:`evolution.calibration.from_log`)
    expected_gain: float | None = None
    #: every figure besides the main metric, both sides: ``{name: {"parent": x,
    #: "candidate": y, …}}`` (:func:`evolution.fitness.trade_offs`)
    figures: dict[str, Any] = field(default_factory=dict)


#: Fields added to a record after events and ledger entries were pinned: an event or an
#: entry leaves them out when they are empty (None, {}), so a record that does not use
#: them is stored byte for byte as before, and one stored before reads back the same.
LEFT_OUT_EMPTY: dict[type, tuple[str, ...]] = {CandidateRecord: ("expected_gain", "figures")}


def left_out(record_type: type, fields_: dict[str, Any]) -> dict[str, Any]:
    """``fields_`` without the later fields of ``record_type`` that are empty (see :data:`LEFT_OUT_EMPTY`)."""
    for name in LEFT_OUT_EMPTY.get(record_type, ()):
        if name in fields_ and (fields_[name] is None or fields_[name] == {}):
            del fields_[name]
    return fields_


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


#: How :func:`stored_fields` copies a field, by its declared type: events never share a
#: list or dict with the record they were made from, and a flag is stored as a bool.
_COPIES: dict[str, Callable[[Any], Any]] = {
    "list[str]": list,
    "dict[str, Any]": dict,
    "bool": bool,
}


_FIELDS: dict[type, tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]] = {}


def _fields_of(
    record_type: type,
) -> tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """A record type's field names in order, and the copies :func:`stored_fields` makes."""
    known = _FIELDS.get(record_type)
    if known is None:
        declared = fields(record_type)
        copies = tuple((f.name, _COPIES[str(f.type)]) for f in declared if str(f.type) in _COPIES)
        known = _FIELDS[record_type] = (tuple(f.name for f in declared), copies)
    return known


def stored_fields(record_type: type, source: Any, *, items: bool = False) -> dict[str, Any]:
    """The fields of ``record_type`` read from ``source`` (a record or an event, or a stored
    dict with ``items=True``), in declaration order, lists and dicts copied and flags made
    bools: what an event stores and what a record is rebuilt from.
    """
    names, copies = _fields_of(record_type)
    if type(source) is record_type:  # a frozen dataclass holds exactly its fields, in order
        out = dict(source.__dict__)
    elif items:
        out = {name: source[name] for name in names}
    else:
        out = {name: getattr(source, name) for name in names}
    for name, copy in copies:
        out[name] = copy(out[name])
    return out


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
