"""The genome store: an eventsourcing application of lineages, and the reads around it.

Layers, as in eventsourcing itself: :mod:`events.domain` decides (pure), the
:class:`GenomesApplication` persists (eventsourcing's recorders, chosen by configuration
in :mod:`events.backends`), and :class:`GenomeStore` is the one object the rest of TARS
holds.  Writes go through the aggregate so every rule is checked before anything is
stored; reads that list history (``log``, ``verify``, the version index) decode the raw
stored rows with msgpack instead, because building domain objects for every event would
make listing a long log slow and because ``verify`` must judge the bytes on disk, not
what the domain makes of them.

Version index: ``materialise`` of an old version needs the lineage position at which it
became head.  Keeping every version in the aggregate would grow its snapshots without
bound, so the store keeps a per-object, in-memory index version → position, filled
lazily and incrementally from the lineage's raw events (``select_events`` after the last
position seen).  The head itself never needs it: ``repository.get`` uses the latest
snapshot plus at most 99 events.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import MutableOrImmutableAggregate
from eventsourcing.persistence import (
    ApplicationRecorder,
    Notification,
    PersistenceError,
    ProcessRecorder,
    RecordConflictError,
    StoredEvent,
    Tracking,
)
from eventsourcing.persistence import IntegrityError as IntegrityError_
from eventsourcing.utils import get_topic

from events.backends import RawRow, backend_env, raw_notifications, redact
from events.chain import GENESIS, event_type, link, payload_of
from events.domain import Lineage, lineage_id, proposals_of
from events.records import Adoption, CandidateRecord, Head, Held, LogEntry, VerifyReport
from events.transcoder import unpackb, unpackb_ns
from evolution.errors import (
    GenomeError,
    IntegrityError,
    StoreError,
    TarsError,
    UnknownGenomeError,
    UnknownVersionError,
)
from evolution.tree import Tree, short, version_id

__all__ = [
    "Adoption",
    "CandidateRecord",
    "GenomeStore",
    "GenomesApplication",
    "Head",
    "Held",
    "LogEntry",
    "LogRow",
    "VerifyReport",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: One event as ``GenomeStore.log_rows`` lists it: (seq, type, genome, version, parent,
#: time in ns since the epoch, node, data, position in its genome's lineage).
LogRow = tuple[int, str, str, str | None, str | None, int, str, dict[str, Any], int]

#: Rows fetched per query when listing or verifying the log.
PAGE = 2000
#: Attempts of a write that lost a race with another writer of the same lineage.
RETRIES = 5
#: Events of a lineage between snapshots.
SNAPSHOT_INTERVAL = 100

#: Which stored field is the event's "version" and which its "parent", per event type.
_VERSION_FIELDS: dict[str, tuple[str | None, str | None]] = {
    "Registered": ("version", None),
    "CandidateEvaluated": ("candidate", "parent"),
    "VersionAdopted": ("version", "parent"),
    "RolledBack": ("to_version", "from_version"),
    "ApprovalRequested": ("candidate", "parent"),
    "Approved": ("candidate", None),
    "CycleCompleted": ("adopted", None),
    "ProposalSubmitted": ("version", "parent"),
    "VoteCast": ("version", None),
    "ProposalRebased": ("version", "parent"),
    "ProposalRejected": ("version", None),
}
#: Events after which the lineage's head is a given version (field holding it).
_HEAD_FIELDS = {"Registered": "version", "VersionAdopted": "version", "RolledBack": "to_version"}

_INTEGRITY_HINT = "the store was changed outside TARS; rebuild it from the ledger and the peers, or restore a backup"

#: The only topics ``import_events`` accepts: those of the lineage events this code
#: stores.  eventsourcing turns a stored topic into a class by importing its module, so a
#: topic a peer names must never reach it unchecked (``Lineage.Created`` is the library's
#: generic creation event, which TARS never stores: ``Registered`` creates a lineage).
IMPORTABLE_TOPICS: frozenset[str] = frozenset(
    get_topic(cls)
    for cls in vars(Lineage).values()
    if isinstance(cls, type)
    and issubclass(cls, Lineage.Event)
    and cls not in (Lineage.Event, Lineage.Created)
)
#: The aggregate class topic a ``Registered`` event must carry: eventsourcing resolves it
#: to build the aggregate, and the chain does not cover it (see ``events.chain``).
_LINEAGE_TOPIC = get_topic(Lineage)
#: Stored events fetched per query by ``export_events``.
EXPORT_PAGE = 500
_IMPORT_HINT = (
    "nothing was imported; fetch the events again, from another peer if this one keeps sending them"
)


def _project(aggregate: Lineage | None, events: Iterable[Lineage.Event]) -> Lineage | None:
    """eventsourcing's ``project_aggregate`` without its per-event ``isinstance`` of a
    runtime-checkable Protocol (tens of µs per event, paid again on every load)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _lineage_uuid(text: object, where: str) -> UUID:
    """A lineage id given as 32-hex text (as ``positions`` gives it); a peer sent anything else."""
    try:
        ident = UUID(hex=cast(str, text))
    except (TypeError, ValueError, AttributeError):
        ident = None
    if ident is None or ident.hex != text:
        raise IntegrityError(
            f"{where}: {text!r} is not a lineage id (32 lowercase hex digits)", hint=_IMPORT_HINT
        )
    return ident


class GenomesApplication(Application[UUID]):
    """eventsourcing application of :class:`Lineage` aggregates, snapshotting every 100 events.

    It records with the backend's *process* recorder, so a write can carry a tracking
    record (the Raft index it applies) in the same transaction: a crash mid-apply then
    neither loses nor doubles an event.
    """

    name = "Genomes"
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[Any]], int]] = {
        Lineage: SNAPSHOT_INTERVAL
    }

    def construct_recorder(self) -> ApplicationRecorder:
        return self.factory.process_recorder()

    def record(self, *lineages: Lineage, tracking: Tracking | None = None) -> None:
        """Store the lineages' pending events (and the tracking record) in one transaction."""
        processing: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        # What ``processing.collect_events(*lineages)`` does for aggregates, without its two
        # runtime-checkable Protocol ``isinstance`` tests per lineage (the slow part of it).
        for lineage in lineages:
            processing.events.extend(lineage.collect_events())
            processing.aggregates[lineage.id] = lineage
        recordings = self._record(processing)
        try:
            self._snapshot_in_memory(processing)
        except Exception:  # snapshots are an optimisation; the events are committed
            logger.warning(
                "snapshot of %s failed after commit",
                ", ".join(x.name for x in lineages),
                exc_info=True,
            )
        self._notify(recordings)

    def _snapshot_in_memory(self, processing: ProcessingEvent[UUID]) -> None:
        """Snapshot a lineage whose new events crossed a multiple of the interval.

        The library's own way re-reads each crossed version from the database and
        replays up to a hundred events (each applying a patch) per snapshot; the lineage
        in hand is already the state after its last stored event, so it is snapshotted
        as it is.  A snapshot may sit a few events past the multiple: replay and
        ``verify`` accept any position.
        """
        if self.snapshots is None:
            return
        first: dict[UUID, int] = {}
        last: dict[UUID, int] = {}
        for event in processing.events:
            ident = event.originator_id
            first.setdefault(ident, event.originator_version)
            last[ident] = event.originator_version
        for ident, lineage in processing.aggregates.items():
            if ident not in last or not isinstance(lineage, Lineage):
                continue
            if (first[ident] - 1) // SNAPSHOT_INTERVAL == last[ident] // SNAPSHOT_INTERVAL:
                continue
            snapshot = Lineage.Snapshot.take(lineage)
            self.snapshots.put([snapshot])


class GenomeStore:
    """Every genome's lineage in one event store; the only store object TARS code holds."""

    def __init__(self, app: GenomesApplication, url: str) -> None:
        self._app = app
        self.url = redact(url)
        self._names: dict[UUID, str] = {}
        # lineages whose Registered event does not decode: no name, but ``positions`` lists them
        self._unnamed: set[UUID] = set()
        self._names_upto = 0
        self._index: dict[str, tuple[dict[str, int], int]] = {}
        # name -> the lineage as this object last stored it, reused by the next write
        # instead of a load (a cache read, a query for newer events and a deep copy).
        self._working: dict[str, Lineage] = {}
        self._registered_topic = get_topic(Lineage.Registered)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> GenomeStore:
        """Open (and with ``create``, make) the store a URL names; see :mod:`events.backends`."""
        env = backend_env(url, create=create)
        try:
            app = GenomesApplication(env=env)
        except TarsError:
            raise
        except Exception as exc:
            raise StoreError(
                f"store {redact(url)}: cannot open: {exc}",
                hint="check the URL, that the database is running and that this user may write to it",
            ) from exc
        return cls(app, url)

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> GenomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes ----

    def register(
        self,
        name: str,
        manifest_text: str,
        tree: Mapping[str, str],
        fitness: float | None,
        node: str,
        *,
        at: datetime | None = None,
        tracking: tuple[str, int] | None = None,
    ) -> str:
        """Register a genome; registering the same tree again is a no-op returning its version."""
        version = version_id(tree)
        for _ in range(RETRIES):
            if tracking is not None and (self.applied(tracking[0]) or 0) >= tracking[1]:
                return version
            try:
                existing = self._get(name)
            except UnknownGenomeError:
                lineage = Lineage.register(name, manifest_text, tree, fitness, node, timestamp=at)
                try:
                    self._save(lineage, Tracking(*tracking) if tracking else None)
                except RecordConflictError:
                    continue  # another writer registered it first: compare with theirs
                self._names[lineage.id] = name
                return version
            if version in (existing.registered_version, existing.head):
                if tracking is not None:
                    self.mark_applied(*tracking)
                return version
            raise GenomeError(
                f"genome {name} is already registered in store {self.url} with another tree "
                f"(registered {short(existing.registered_version)}, head {short(existing.head)}, this {short(version)})",
                hint="register it under another name, or evolve the registered genome",
            )
        raise StoreError(f"store {self.url}: registering {name} kept conflicting", hint="retry")

    def record_cycle(
        self,
        name: str,
        node: str,
        *,
        evaluated: Sequence[CandidateRecord] = (),
        adopted: Adoption | None = None,
        held: Sequence[Held] = (),
        cycle: int | None = None,
        seed: int = 0,
        tracking: tuple[str, int] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Store everything one cycle decided in one transaction: all of it or none.

        Events go in this order: evaluations, approval requests, the adoption, and, when
        ``cycle`` is given, ``CycleCompleted`` (without ``cycle`` no cycle is counted,
        which suits applying single decisions).  ``tracking`` = (ledger name, index) is
        stored in the same transaction; a write whose index was already applied is skipped.
        """

        def decide(lineage: Lineage) -> None:
            for record in evaluated:
                lineage.evaluate(record, node, timestamp=at)
            for request in held:
                lineage.hold(request, node, timestamp=at)
            if adopted is not None:
                lineage.adopt(adopted, node, timestamp=at)
            if cycle is not None:
                lineage.complete_cycle(
                    cycle,
                    adopted.version if adopted else None,
                    len(evaluated),
                    seed,
                    node,
                    timestamp=at,
                )

        if not evaluated and adopted is None and not held and cycle is None and tracking is None:
            return
        self._write(name, decide, tracking)

    def adopt(
        self, name: str, adoption: Adoption, node: str, *, at: datetime | None = None
    ) -> None:
        """Make ``adoption.version`` the head (its parent must be the head, its patch must give it)."""
        self._write(name, lambda lineage: lineage.adopt(adoption, node, timestamp=at), None)

    def rollback(
        self, name: str, to_version: str, reason: str, node: str, *, at: datetime | None = None
    ) -> None:
        """Append a rollback to an earlier version (an id or a unique prefix); history is kept."""
        full = self._resolve(name, to_version)

        def decide(lineage: Lineage) -> None:
            past = self._lineage_at(name, full) if full != lineage.head else lineage
            lineage.rollback(full, past.head_tree, past.head_fitness, reason, node, timestamp=at)

        self._write(name, decide, None)

    def approve(self, name: str, candidate: str, node: str, *, at: datetime | None = None) -> Held:
        """Record a human approval of a held candidate and return it (adopting is separate)."""
        return self._write(
            name, lambda lineage: lineage.approve(candidate, node, timestamp=at), None
        )

    def transact(
        self, name: str, decide: Callable[[Lineage], T], tracking: tuple[str, int] | None = None
    ) -> T | None:
        """Let ``decide`` trigger events on the genome's lineage and store them in one transaction.

        The ledger's state machine uses it: ``tracking`` = (ledger, index) goes into the
        same transaction, and an index already applied is skipped (returns ``None``), so
        re-delivering committed entries after a crash never doubles an event.
        """
        return self._write(name, decide, tracking)

    def load(self, name: str) -> Lineage:
        """The genome's lineage aggregate, for a caller that batches decisions (the ledger)."""
        return self._get(name)

    def commit(self, lineages: Sequence[Lineage], tracking: tuple[str, int] | None) -> None:
        """Store the pending events of several lineages and the tracking record in ONE transaction.

        The ledger applies a run of committed entries this way: either all of their
        events and the last entry's index are stored, or none, so exactly-once holds for
        the whole run and the fsync is paid once per run instead of once per entry.
        """
        if not lineages and tracking is None:
            return
        record = Tracking(*tracking) if tracking is not None else None
        try:
            self._app.record(*lineages, tracking=record)
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot write ledger entries up to {tracking}: {exc}",
                hint="check free disk space, permissions and that the database is running; nothing of this write was stored",
            ) from exc
        for lineage in lineages:
            self._names[lineage.id] = lineage.name
            self._working.pop(lineage.name, None)  # the caller's lineage is now the newer one

    def mark_applied(self, ledger: str, index: int) -> None:
        """Record that a ledger entry was applied although it changed no genome."""
        if (self.applied(ledger) or 0) >= index:
            return
        recorder = cast(ProcessRecorder, self._app.recorder)
        try:
            recorder.insert_events([], tracking=Tracking(ledger, index))
        except IntegrityError_ as exc:  # applied concurrently: the same entry, already stored
            logger.debug("ledger %s index %d already applied: %s", ledger, index, exc)
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot record ledger index {index}: {exc}",
                hint="check free disk space, permissions and that the database is running",
            ) from exc

    def applied(self, ledger: str) -> int | None:
        """The highest tracking index recorded for ``ledger`` (``None`` if none)."""
        return cast(ProcessRecorder, self._app.recorder).max_tracking_id(ledger)

    # ---- transfer between nodes (catching up past a compacted ledger) ----
    #
    # Every node stores the same events per lineage (same positions, bytes and chain),
    # because the ledger applies the same entries deterministically; the notification
    # order *across* lineages depends on how each node batched its writes.  So what one
    # node sends another is "lineage X after position P": never a range of sequence
    # numbers.  These methods are not thread-safe against other writes through the same
    # object: the caller pauses the ledger's writer around them.

    def positions(self) -> dict[str, int]:
        """Every lineage in the store (lineage id as 32-hex text) -> its last position.

        What a node behind a compacted ledger compares with a peer's to know which events
        to fetch.  Lineages are found from their ``Registered`` events (every lineage
        starts with one, which ``verify`` checks), with the same incremental scan that
        learns genome names, then one indexed query per lineage for its last position;
        a lineage whose ``Registered`` event does not decode is still listed.
        """
        try:
            self._refresh_names()
            found = {ident.hex: self._length(ident) for ident in set(self._names) | self._unnamed}
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot list lineage positions: {exc}", hint="check the database"
            ) from exc
        return {key: found[key] for key in sorted(found) if found[key] > 0}

    def export_events(
        self, lineage: str, after: int, upto: int, max_bytes: int = 1 << 20
    ) -> list[tuple[int, str, bytes]]:
        """Raw stored events ``(position, topic, state)`` of one lineage with
        ``after < position <= upto``, in position order, exactly the bytes stored.

        At most ``max_bytes`` of state in all, except that the first event is always
        returned however large, so a caller that asks again from the last position it got
        always progresses.  Fewer events than asked (and no error) where the lineage
        ends before ``upto`` or does not exist here.  Rows at or below a position never
        change once written, so no transaction is needed across the pages read.
        """
        ident = _lineage_uuid(lineage, f"store {self.url}: export")
        out: list[tuple[int, str, bytes]] = []
        size = 0
        gt = after
        page = 64  # grows: a small max_bytes should not read hundreds of rows
        recorder = self._app.recorder
        while gt < upto:
            try:
                rows = recorder.select_events(ident, gt=gt, lte=upto, limit=page)
            except PersistenceError as exc:
                raise StoreError(
                    f"store {self.url}: cannot read lineage {lineage} after position {gt}: {exc}",
                    hint="check the database",
                ) from exc
            for row in rows:
                state = bytes(row.state)
                if out and size + len(state) > max_bytes:
                    return out
                out.append((row.originator_version, row.topic, state))
                size += len(state)
            if len(rows) < page:
                return out
            gt = rows[-1].originator_version
            page = min(page * 2, EXPORT_PAGE)
        return out

    def import_events(
        self, events: Sequence[tuple[str, int, str, bytes]], tracking: tuple[str, int]
    ) -> int:
        """Store events a peer exported, ``(lineage hex, position, topic, state)``, and the
        tracking record ``(ledger, index)`` in ONE transaction; return how many were stored.

        A peer is trusted with nothing, so everything is checked before anything is
        written, and any failure raises :class:`IntegrityError` naming the lineage, the
        position and what is wrong, with nothing stored:

        - the tracking index is above ``applied(ledger)`` (an import never moves back);
        - per lineage, positions are contiguous and start right after the store's last
          position of that lineage (at 1, with ``Registered``, for a new lineage);
        - the topic is one of :data:`IMPORTABLE_TOPICS` (eventsourcing imports the module a
          topic names) and a ``Registered`` event names the ``Lineage`` class and a genome
          whose id is this lineage;
        - the state decodes and its ``chain`` is the link recomputed from the previous
          event's chain, as ``verify`` computes it;
        - the events replay onto the lineage as eventsourcing will load them (a patch gives
          its version, a rollback's tree hashes to its version, ...).

        A chain proves the events fit what this store holds, not that they are the swarm's:
        compare the lineage's last chain with one the ledger committed where it matters.
        After the commit the caches of this object are updated and, for a lineage whose
        import crossed a multiple of :data:`SNAPSHOT_INTERVAL`, a snapshot of its new state
        is stored (a failure there is only logged: the events are committed).
        """
        ledger, index = tracking
        where_tracking = f"store {self.url}: import up to {ledger} index {index}"
        if not isinstance(index, int) or isinstance(index, bool):
            raise IntegrityError(
                f"{where_tracking}: the index is not an integer", hint=_IMPORT_HINT
            )
        applied = self.applied(ledger) or 0
        if index <= applied:
            raise IntegrityError(
                f"{where_tracking} refused: this store has already applied {ledger} up to index {applied}",
                hint="nothing was imported; read applied() and positions() again and fetch only what is missing",
            )
        self._refresh_names()
        batch: dict[UUID, list[StoredEvent]] = {}  # per lineage, in order
        tips: dict[UUID, tuple[int, str]] = {}  # lineage -> (last position, its chain) so far
        names: dict[UUID, str] = {}  # genome names of lineages the batch registers
        for number, item in enumerate(events):
            ident, position, topic, state = self._checked_event(number, item, tips, names)
            batch.setdefault(ident, []).append(
                StoredEvent(
                    originator_id=ident, originator_version=position, topic=topic, state=state
                )
            )
        lineages = {ident: self._replayed(ident, rows, names) for ident, rows in batch.items()}
        stored = [event for rows in batch.values() for event in rows]
        recorder = cast(ProcessRecorder, self._app.recorder)
        try:
            recorder.insert_events(stored, tracking=Tracking(ledger, index))
        except (RecordConflictError, IntegrityError_) as exc:
            raise StoreError(
                f"{where_tracking}: the store changed while importing ({exc})",
                hint="nothing was imported; pause the ledger's writer, read applied() and positions() again and fetch what is missing",
            ) from exc
        except PersistenceError as exc:
            raise StoreError(
                f"{where_tracking}: cannot write {len(stored)} events: {exc}",
                hint="check free disk space, permissions and that the database is running; nothing of this write was stored",
            ) from exc
        for ident, lineage in lineages.items():
            self._names[ident] = lineage.name
            self._unnamed.discard(ident)
            self._working.pop(lineage.name, None)  # older than the store now
            self._index.pop(lineage.name, None)
            first = batch[ident][0].originator_version
            if (first - 1) // SNAPSHOT_INTERVAL == lineage.version // SNAPSHOT_INTERVAL:
                continue
            try:
                if self._app.snapshots is not None:
                    self._app.snapshots.put([Lineage.Snapshot.take(lineage)])
            except Exception:  # snapshots are an optimisation; the events are committed
                logger.warning("snapshot of %s after import failed", lineage.name, exc_info=True)
        return len(stored)

    def _checked_event(
        self,
        number: int,
        item: object,
        tips: dict[UUID, tuple[int, str]],
        names: dict[UUID, str],
    ) -> tuple[UUID, int, str, bytes]:
        """One imported event checked against the lineage so far (``tips``, updated)."""
        try:
            lineage, position, topic, raw = cast(tuple[Any, Any, Any, Any], item)
        except (TypeError, ValueError):
            raise IntegrityError(
                f"store {self.url}: imported event #{number} is not (lineage, position, topic, state)",
                hint=_IMPORT_HINT,
            ) from None
        ident = _lineage_uuid(lineage, f"store {self.url}: imported event #{number}")
        label = names.get(ident) or self._names.get(ident) or f"lineage {ident.hex}"

        def refuse(what: str) -> IntegrityError:
            return IntegrityError(
                f"store {self.url}: import of {label} position {position}: {what}",
                hint=_IMPORT_HINT,
            )

        if not isinstance(position, int) or isinstance(position, bool):
            raise refuse("the position is not an integer")
        if not isinstance(topic, str) or topic not in IMPORTABLE_TOPICS:
            raise refuse(
                f"unknown topic {topic!r}: only the Lineage events TARS stores are imported"
            )
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise refuse(f"the state is {type(raw).__name__}, not bytes")
        state_bytes = bytes(raw)
        kind = event_type(topic)
        if ident not in tips:
            tips[ident] = self._tip(ident, label)
            last = tips[ident][0]
            if position != last + 1:
                raise refuse(
                    f"the store's last position of this lineage is {last}, so its events must start at {last + 1}"
                )
        last, previous = tips[ident]
        if position != last + 1:
            missing = "out of order" if position <= last else f"position {last + 1} missing"
            raise refuse(f"positions must be contiguous: {missing} (after {last})")
        if (position == 1) != (kind == "Registered"):
            raise refuse(
                f"{kind} at position {position}: a lineage starts with Registered, and only there"
            )
        try:
            state = unpackb(state_bytes)
            stored = state["chain"]
            recomputed = link(
                previous, kind, ident, position, state["timestamp"], payload_of(state)
            )
        except Exception as exc:
            raise refuse(f"{kind} does not decode ({type(exc).__name__}: {exc})") from exc
        if stored != recomputed:
            raise refuse(
                f"{kind}: hash chain broken — stored chain {str(stored)[:12]}… != recomputed {recomputed[:12]}…"
            )
        if kind == "Registered":
            name = state.get("name")
            if not isinstance(name, str) or lineage_id(name) != ident:
                raise refuse(f"Registered names genome {name!r}, whose lineage is not this one")
            label = name
            if state.get("originator_topic") != _LINEAGE_TOPIC:
                raise refuse(
                    f"Registered names aggregate class {state.get('originator_topic')!r}, not {_LINEAGE_TOPIC}"
                )
            names[ident] = name
        tips[ident] = (position, stored)
        return ident, position, topic, state_bytes

    def _tip(self, ident: UUID, label: str) -> tuple[int, str]:
        """The store's last position of a lineage and that event's chain ((0, GENESIS) if none)."""
        try:
            rows = self._app.recorder.select_events(ident, desc=True, limit=1)
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot read {label}: {exc}", hint="check the database"
            ) from exc
        if not rows:
            return 0, GENESIS
        try:
            return rows[0].originator_version, str(unpackb(rows[0].state)["chain"])
        except Exception as exc:
            raise IntegrityError(
                f"store {self.url}: the stored event of {label} at position {rows[0].originator_version} "
                f"does not decode ({type(exc).__name__}: {exc})",
                hint=_INTEGRITY_HINT,
            ) from exc

    def _replayed(self, ident: UUID, stored: list[StoredEvent], names: dict[UUID, str]) -> Lineage:
        """The lineage after the imported events, replayed as eventsourcing loads them.

        Proves the events are meaningful, not only chained (a patch gives its version…),
        before anything is written, and gives the state to snapshot after the commit.
        """
        first = stored[0].originator_version
        label = names.get(ident) or self._names.get(ident) or f"lineage {ident.hex}"
        lineage: Lineage | None = None
        if first > 1:
            try:
                lineage = cast(Lineage, self._app.repository.get(ident, projector_func=_project))
            except (AggregateNotFoundError, PersistenceError) as exc:
                raise StoreError(
                    f"store {self.url}: cannot load {label}: {exc}", hint="run `tars log verify`"
                ) from exc
            if lineage.version != first - 1:
                raise StoreError(
                    f"store {self.url}: {label} changed while importing (now at position {lineage.version})",
                    hint="nothing was imported; pause the ledger's writer while importing",
                )
        for row in stored:
            try:
                event = cast(Lineage.Event, self._app.mapper.to_domain_event(row))
                lineage = cast(Lineage, event.mutate(lineage))
            except Exception as exc:
                raise IntegrityError(
                    f"store {self.url}: import of {label} position {row.originator_version}: "
                    f"{event_type(row.topic)} does not apply to the lineage ({type(exc).__name__}: {exc})",
                    hint=_IMPORT_HINT,
                ) from exc
        assert lineage is not None  # stored is never empty
        return lineage

    # ---- reads ----

    def genomes(self) -> list[str]:
        self._refresh_names()
        return sorted(self._names.values())

    def head(self, name: str) -> Head:
        lineage = self._get(name)
        return Head(
            name=lineage.name,
            version=lineage.head,
            tree=dict(lineage.head_tree),
            fitness=lineage.head_fitness,
            versions_count=lineage.versions_count,
            cycles_completed=lineage.cycles_completed,
            manifest_text=lineage.manifest_text,
            pending={candidate: lineage.held(candidate) for candidate in lineage.pending},
            proposals=copy.deepcopy(proposals_of(lineage)),
        )

    def resolve(self, name: str, version: str) -> str:
        """The full id of a version given by a unique prefix (UnknownVersionError otherwise)."""
        return self._resolve(name, version)

    def chain(self, name: str) -> str:
        """The genome's last hash-chain link: equal on two nodes iff their histories are equal."""
        return self._get(name).chain

    def at_version(self, name: str, version: str) -> tuple[Tree, float | None]:
        """The tree and fitness the genome had when ``version`` was its head."""
        full = self._resolve(name, version)
        past = self._lineage_at(name, full)
        return dict(past.head_tree), past.head_fitness

    def materialise(self, name: str, version: str) -> Tree:
        """The tree of any version the genome ever had (full id or unique prefix)."""
        lineage = self._get(name)
        if version == lineage.head:
            return dict(lineage.head_tree)
        full = self._resolve(name, version)
        if full == lineage.head:
            return dict(lineage.head_tree)
        return dict(self._lineage_at(name, full).head_tree)

    def log(
        self, *, genome: str | None = None, start: int = 1, limit: int | None = None
    ) -> Iterator[LogEntry]:
        """Events in store order from sequence number ``start``, optionally of one genome."""
        return self._entries(self._target(genome), start, limit)  # an unknown genome raises now

    def _entries(self, target: UUID | None, start: int, limit: int | None) -> Iterator[LogEntry]:
        for seq, kind, label, version, parent, time, node, state, position in self._decoded(
            target, start, limit, unpackb
        ):
            yield LogEntry(
                seq=seq,
                type=kind,
                genome=label,
                version=version,
                parent=parent,
                time=time,
                node=node,
                data=state,
                position=position,
            )

    def log_rows(
        self, *, genome: str | None = None, start: int = 1, limit: int | None = None
    ) -> Iterator[LogRow]:
        """The same events as :meth:`log`, as plain tuples for listing many of them.

        Each row is ``(seq, type, genome, version, parent, time_ns, node, data, position)``:
        the time is integer nanoseconds since the epoch (UTC) instead of a ``datetime``,
        and no object is built per row beyond the decoded event and the tuple, so
        ``tars log ls`` over 100,000 events spends its time in SQLite and msgpack.
        """
        # an unknown genome raises now, not at the first row
        return cast(Iterator[LogRow], self._decoded(self._target(genome), start, limit, unpackb_ns))

    def log_tail(self, count: int, *, genome: str | None = None) -> tuple[list[LogRow], int]:
        """The newest ``count`` events (of one genome, or of all) as :meth:`log_rows` rows, in
        store order, and how many earlier events there are.

        It reads the log backwards in growing windows of sequence numbers from the newest,
        so it costs the events it returns (plus, with ``genome``, the other genomes' rows in
        those windows, which are skipped undecoded), not the length of the log.  The count
        of earlier events comes from lineage positions, which are dense: with ``genome``,
        the first row's position minus one; without, that of every lineage whose events
        are shown, plus the whole length of every other lineage.
        """
        target = self._target(genome)  # an unknown genome raises now
        top = self._app.recorder.max_notification_id()
        if top is None:
            return [], 0
        chunks: list[list[LogRow]] = []
        found = 0
        stop = top
        window = max(count, 64)
        while count > 0 and found < count and stop >= 1:
            start = max(1, stop - window + 1)
            chunk = cast(list[LogRow], list(self._decoded(target, start, None, unpackb_ns, stop)))
            chunks.append(chunk)
            found += len(chunk)
            stop = start - 1
            window *= 2
        rows = [row for chunk in reversed(chunks) for row in chunk][-count:] if count > 0 else []
        return rows, self._earlier(target, rows)

    def _earlier(self, target: UUID | None, rows: list[LogRow]) -> int:
        """How many events (of ``target``, or of every lineage) come before ``rows``."""
        if target is not None:
            return rows[0][8] - 1 if rows else self._length(target)
        first: dict[str, int] = {}  # genome -> its first position among the rows
        for row in rows:
            first.setdefault(row[2], row[8])
        self._refresh_names()
        return sum(
            first[name] - 1 if name in first else self._length(ident)
            for ident, name in self._names.items()
        )

    def _length(self, ident: UUID) -> int:
        """The number of events of one lineage (its last position)."""
        last = self._app.recorder.select_events(ident, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def verify(self) -> VerifyReport:
        """Recompute every chain from the raw stored rows; raise naming the first bad event."""
        self._refresh_names()
        wanted = self._snapshot_rows()
        heads: dict[UUID, tuple[int, str]] = {}
        chains_at: dict[tuple[UUID, int], str] = {}
        count = 0
        for note in self._notifications(1):
            kind = event_type(note.topic)
            ident = cast(UUID, note.originator_id)
            position = note.originator_version
            where = f"event seq {note.id} ({kind} of {self._label(ident)}, position {position})"
            last, previous = heads.get(ident, (0, GENESIS))
            if position <= last:
                raise IntegrityError(
                    f"{where}: out of order — it follows position {last}", hint=_INTEGRITY_HINT
                )
            if position != last + 1:
                missing = (
                    f"position {last + 1}"
                    if position == last + 2
                    else f"positions {last + 1}–{position - 1}"
                )
                raise IntegrityError(
                    f"{where}: {missing} missing — events were removed", hint=_INTEGRITY_HINT
                )
            try:
                state = unpackb(note.state)
                stored = state["chain"]
                recomputed = link(
                    previous, kind, ident, position, state["timestamp"], payload_of(state)
                )
            except Exception as exc:
                raise IntegrityError(
                    f"{where}: no longer decodes ({type(exc).__name__}: {exc})",
                    hint=_INTEGRITY_HINT,
                ) from exc
            if stored != recomputed:
                raise IntegrityError(
                    f"{where}: hash chain broken — stored chain {str(stored)[:12]}… != recomputed {recomputed[:12]}…",
                    hint=_INTEGRITY_HINT,
                )
            if position == 1 and kind != "Registered":
                raise IntegrityError(
                    f"{where}: a lineage must start with Registered", hint=_INTEGRITY_HINT
                )
            heads[ident] = (position, stored)
            if position in wanted.get(ident, {}):
                chains_at[(ident, position)] = stored
            count += 1
        snapshots = self._check_snapshots(wanted, heads, chains_at)
        return VerifyReport(
            events=count,
            genomes=len(heads),
            snapshots=snapshots,
            heads={self._label(ident): chain for ident, (_, chain) in heads.items()},
        )

    # ---- internals ----

    def _get(self, name: str) -> Lineage:
        try:
            return cast(
                Lineage, self._app.repository.get(lineage_id(name), projector_func=_project)
            )
        except AggregateNotFoundError:
            raise self._unknown(name) from None
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot read {name}: {exc}", hint="check the database"
            ) from exc

    def _unknown(self, name: str) -> UnknownGenomeError:
        known = ", ".join(sorted(self._names.values())) or "none"
        return UnknownGenomeError(
            f"genome {name!r} is not registered in store {self.url}",
            hint=f"genomes here: {known}; a node registers a genome when it starts with its folder",
        )

    def _write(
        self, name: str, decide: Callable[[Lineage], T], tracking: tuple[str, int] | None
    ) -> T:
        """Load the lineage, let ``decide`` trigger events, store them; redo if another writer won the race."""
        record = Tracking(*tracking) if tracking is not None else None
        for _ in range(RETRIES):
            if (
                record is not None
                and (self.applied(record.application_name) or 0) >= record.notification_id
            ):
                return cast(T, None)  # this ledger entry is already in the store
            # The lineage this object saved last is the state after its own last write.  If
            # anyone wrote since, storing events on top of it conflicts and the loop
            # reloads; a decision that refuses (raises), or that stores nothing (so nothing
            # could conflict), is only trusted when made on a fresh load.
            lineage = self._working.pop(name, None)
            if lineage is not None:
                try:
                    result = decide(lineage)
                except Exception:  # decided again on a fresh load, which raises for real
                    lineage = None
                else:
                    if not lineage.pending_events:
                        lineage = None
            if lineage is None:
                lineage = self._get(name)
                result = decide(lineage)
            try:
                self._save(lineage, record)
            except RecordConflictError:
                continue
            self._working[name] = lineage
            return result
        raise StoreError(
            f"store {self.url}: writes to {name} kept conflicting with another writer", hint="retry"
        )

    def _save(self, lineage: Lineage, tracking: Tracking | None) -> None:
        try:
            self._app.record(lineage, tracking=tracking)
        except RecordConflictError:
            raise
        except PersistenceError as exc:
            raise StoreError(
                f"store {self.url}: cannot write {lineage.name}: {exc}",
                hint="check free disk space, permissions and that the database is running; nothing of this write was stored",
            ) from exc

    def _positions(self, name: str) -> dict[str, int]:
        """The version index of one genome, brought up to date from events not yet seen."""
        index, upto = self._index.get(name, ({}, 0))
        for stored in self._app.recorder.select_events(lineage_id(name), gt=upto):
            field = _HEAD_FIELDS.get(event_type(stored.topic))
            if field is not None:
                index.setdefault(unpackb(stored.state)[field], stored.originator_version)
            upto = stored.originator_version
        self._index[name] = (index, upto)
        return index

    def _resolve(self, name: str, version: str) -> str:
        """The full id of a version of ``name`` given its id or a unique prefix."""
        index = self._index.get(name, ({}, 0))[0]
        if version in index:
            return version
        index = self._positions(name)
        if version in index:
            return version
        matches = [v for v in index if v.startswith(version.lower())] if len(version) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UnknownVersionError(
                f"version prefix {version} of {name} is ambiguous ({len(matches)} versions)",
                hint="give more characters",
            )
        raise UnknownVersionError(
            f"version {version} is not a version of {name}",
            hint="`tars log lineage` lists its versions",
        )

    def _lineage_at(self, name: str, version: str) -> Lineage:
        position = self._positions(name)[version]
        lineage = cast(Lineage, self._app.repository.get(lineage_id(name), version=position))
        if lineage.head != version:
            raise IntegrityError(
                f"{name} at position {position} has head {short(lineage.head)}, not {short(version)}",
                hint="run `tars log verify`",
            )
        return lineage

    def _refresh_names(self) -> None:
        """Learn genome names from Registered events not yet seen (ids are hashes of names)."""
        # The topic filter is a scan of the events after ``start``: remember how far it went
        # (at least to the newest event when it began) so the next call starts there.
        top = self._app.recorder.max_notification_id() or 0
        start = self._names_upto + 1
        while True:
            notes = self._app.recorder.select_notifications(
                start, PAGE, topics=[self._registered_topic]
            )
            for note in notes:
                try:
                    self._names[cast(UUID, note.originator_id)] = unpackb(note.state)["name"]
                except Exception:  # noqa: S112 - verify names the damaged event
                    self._unnamed.add(cast(UUID, note.originator_id))
                    continue
            if notes:
                self._names_upto = notes[-1].id
            if len(notes) < PAGE:
                self._names_upto = max(self._names_upto, top)
                return
            start = notes[-1].id + 1

    def _label(self, ident: UUID) -> str:
        return self._names.get(ident) or f"lineage {ident.hex[:12]}"

    def _notifications(self, start: int) -> Iterator[Notification]:
        recorder = self._app.recorder
        while True:
            notes = recorder.select_notifications(start, PAGE)
            yield from notes
            if len(notes) < PAGE:
                return
            start = notes[-1].id + 1

    def _rows(self, start: int, stop: int | None = None) -> Iterator[RawRow]:
        """The log as raw rows from ``start`` (up to ``stop`` inclusive): the backend's fast reader where it has one."""
        fast = raw_notifications(self._app.recorder)
        if fast is None:
            for note in self._notifications(start):
                if stop is not None and note.id > stop:
                    return
                ident = cast(UUID, note.originator_id)
                yield (note.id, ident.hex, note.originator_version, note.topic, note.state)
            return
        while True:
            page = PAGE if stop is None else min(PAGE, stop - start + 1)
            if page <= 0:
                return
            rows = fast(start, page)
            if (
                stop is not None and rows and rows[-1][0] > stop
            ):  # ids have gaps: a page can pass stop
                yield from (row for row in rows if row[0] <= stop)
                return
            yield from rows
            if len(rows) < page:
                return
            start = rows[-1][0] + 1

    def _target(self, genome: str | None) -> UUID | None:
        """The lineage id of ``genome`` (None for every genome); UnknownGenomeError if absent."""
        if genome is None:
            return None
        target = lineage_id(genome)
        if target not in self._names:
            self._refresh_names()
        if target not in self._names:
            raise self._unknown(genome)
        return target

    def _decoded(
        self,
        target: UUID | None,
        start: int,
        limit: int | None,
        decode: Callable[[bytes], dict[str, Any]],
        stop: int | None = None,
    ) -> Iterator[tuple[int, str, str, str | None, str | None, Any, str, dict[str, Any], int]]:
        """``(seq, type, genome, version, parent, time, node, data, position)`` per stored event.

        Events from sequence number ``start`` up to ``stop`` (inclusive; ``None``: the end).
        The time is whatever ``decode`` makes of the stored timestamp.  Per row there are
        only dictionary lookups keyed by the stored id text and the topic: the ``UUID``,
        whether it is the wanted lineage, its genome name and the type's version fields
        are worked out once per lineage and per topic.
        """
        if limit is not None and limit <= 0:
            return
        produced = 0
        kinds: dict[str, tuple[str, str | None, str | None]] = {}
        lineages: dict[str, tuple[UUID, bool]] = {}
        labels: dict[str, str] = {}
        for seq, key, position, topic, raw in self._rows(max(start, 1), stop):
            known = lineages.get(key)
            if known is None:
                ident = UUID(key)
                known = lineages[key] = (ident, target is None or ident == target)
            ident, wanted = known
            if not wanted:
                continue
            fields = kinds.get(topic)
            if fields is None:
                kind = event_type(topic)
                fields = kinds[topic] = (kind, *_VERSION_FIELDS.get(kind, (None, None)))
            kind, version_field, parent_field = fields
            state = decode(raw)
            label = labels.get(key)
            if label is None:
                if kind == "Registered" and ident not in self._names:
                    self._names[ident] = state["name"]
                elif ident not in self._names:
                    self._refresh_names()
                if ident in self._names:
                    label = labels[key] = self._names[ident]
                else:
                    label = self._label(ident)
            time = state.pop("timestamp")
            state.pop("originator_topic", None)
            yield (
                seq,
                kind,
                label,
                state.get(version_field) if version_field else None,
                state.get(parent_field) if parent_field else None,
                time,
                state.get("node", ""),
                state,
                position,
            )
            produced += 1
            if limit is not None and produced >= limit:
                return

    def _snapshot_rows(self) -> dict[UUID, dict[int, bytes]]:
        """Raw snapshot states per lineage and position, for ``verify`` to hold against the log."""
        store = self._app.snapshots
        if store is None:
            return {}
        return {
            ident: {
                row.originator_version: row.state for row in store.recorder.select_events(ident)
            }
            for ident in self._names
        }

    def _check_snapshots(
        self,
        wanted: dict[UUID, dict[int, bytes]],
        heads: dict[UUID, tuple[int, str]],
        chains_at: dict[tuple[UUID, int], str],
    ) -> int:
        checked = 0
        for ident, rows in wanted.items():
            last = heads.get(ident, (0, GENESIS))[0]
            for position, raw in sorted(rows.items()):
                where = f"snapshot of {self._label(ident)} at position {position}"
                if position > last:
                    raise IntegrityError(
                        f"{where}: the log ends at position {last} — events were removed from its end",
                        hint=_INTEGRITY_HINT,
                    )
                try:
                    state = unpackb(raw)["state"]
                    matches = (
                        state["chain"] == chains_at.get((ident, position))
                        and version_id(state["head_tree"]) == state["head"]
                    )
                except Exception as exc:
                    raise IntegrityError(
                        f"{where}: no longer decodes ({exc})", hint=_INTEGRITY_HINT
                    ) from exc
                if not matches:
                    raise IntegrityError(
                        f"{where}: does not match the log",
                        hint="snapshots are only a shortcut: delete the stored snapshots and they are taken again",
                    )
                checked += 1
        return checked
