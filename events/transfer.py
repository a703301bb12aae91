"""State transfer between nodes: ``positions``, ``export_events``, ``import_events``.

A node whose store is behind a leader's compacted Raft log fetches the missing stored
events from a peer.  Every node stores the same events per lineage (same positions,
bytes and chain), because the ledger applies the same entries deterministically; the
notification order *across* lineages depends on how each node batched its writes.  So
what one node sends another is "lineage X after position P": never a range of sequence
numbers.  Nothing here is thread-safe against other writes to the same store: the
caller pauses the ledger's writer around it.

The import trusts the peer with nothing: every event is checked (positions, topic, the
chain link with :func:`events.chain.check_link`, the check ``verify`` runs, and a replay
onto the lineage) before one transaction stores them all with the tracking record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

from events._eventsourcing import (
    AggregateMissing,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    WriteConflict,
    topic_of,
    translated,
)
from events.application import GenomesApplication, crosses_snapshot, project
from events.chain import GENESIS, ChainMismatch, UndecodableEvent, check_link, event_type
from events.domain import Lineage, lineage_id
from events.names import GenomeNames
from events.transcoder import unpackb
from events.verify import INTEGRITY_HINT
from evolution.errors import IntegrityError, StoreError

__all__ = ["EXPORT_PAGE", "IMPORTABLE_TOPICS", "Transfer"]

#: The only topics ``import_events`` accepts: those of the lineage events this code
#: stores.  eventsourcing turns a stored topic into a class by importing its module, so a
#: topic a peer names must never reach it unchecked (``Lineage.Created`` is the library's
#: generic creation event, which TARS never stores: ``Registered`` creates a lineage).
IMPORTABLE_TOPICS: frozenset[str] = frozenset(
    topic_of(cls)
    for cls in vars(Lineage).values()
    if isinstance(cls, type)
    and issubclass(cls, Lineage.Event)
    and cls not in (Lineage.Event, Lineage.Created)
)
#: The aggregate class topic a ``Registered`` event must carry: eventsourcing resolves it
#: to build the aggregate, and the chain does not cover it (see ``events.chain``).
LINEAGE_TOPIC = topic_of(Lineage)
#: Stored events fetched per query by ``export_events``.
EXPORT_PAGE = 500
IMPORT_HINT = (
    "nothing was imported; fetch the events again, from another peer if this one keeps sending them"
)
_DB_HINT = "check free disk space, permissions and that the database is running; nothing of this write was stored"


def lineage_uuid(text: object, where: str) -> UUID:
    """A lineage id given as 32-hex text (as ``positions`` gives it); a peer sent anything else."""
    try:
        ident = UUID(hex=cast(str, text))
    except (TypeError, ValueError, AttributeError):
        ident = None
    if ident is None or ident.hex != text:
        raise IntegrityError(
            f"{where}: {text!r} is not a lineage id (32 lowercase hex digits)", hint=IMPORT_HINT
        )
    return ident


class Transfer:
    """The transfer reads and the checked import of one store (see the module docstring)."""

    def __init__(self, app: GenomesApplication, names: GenomeNames, url: str) -> None:
        self._app = app
        self._names = names
        self._url = url

    def positions(self) -> dict[str, int]:
        """Every lineage in the store (lineage id as 32-hex text) -> its last position.

        Lineages are found from their ``Registered`` events (every lineage starts with one,
        which ``verify`` checks), with the same incremental scan that learns genome names,
        then one indexed query per lineage for its last position; a lineage whose
        ``Registered`` event does not decode is still listed.
        """
        names = self._names
        with translated(f"store {self._url}: cannot list lineage positions", "check the database"):
            names.refresh()
            found = {ident.hex: names.length(ident) for ident in set(names.by_id) | names.unnamed}
        return {key: found[key] for key in sorted(found) if found[key] > 0}

    def export_events(
        self, lineage: str, after: int, upto: int, max_bytes: int
    ) -> list[tuple[int, str, bytes]]:
        """Raw stored events ``(position, topic, state)`` of one lineage with
        ``after < position <= upto``, in position order, exactly the bytes stored.

        At most ``max_bytes`` of state in all, except that the first event is always
        returned however large, so a caller that asks again from the last position it got
        always progresses.  Fewer events than asked (and no error) where the lineage
        ends before ``upto`` or does not exist here.  Rows at or below a position never
        change once written, so no transaction is needed across the pages read.
        """
        ident = lineage_uuid(lineage, f"store {self._url}: export")
        out: list[tuple[int, str, bytes]] = []
        size = 0
        gt = after
        page = 64  # grows: a small max_bytes should not read hundreds of rows
        recorder = self._app.recorder
        while gt < upto:
            with translated(
                f"store {self._url}: cannot read lineage {lineage} after position {gt}",
                "check the database",
            ):
                rows = recorder.select_events(ident, gt=gt, lte=upto, limit=page)
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
    ) -> tuple[int, list[Lineage]]:
        """Check and store a peer's events with the tracking record in ONE transaction.

        Returns how many events were stored and the lineages they changed (as they are
        now), for the caller's caches.  A peer is trusted with nothing, so everything is
        checked before anything is written, and any failure raises
        :class:`IntegrityError` naming the lineage, the position and what is wrong, with
        nothing stored:

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
        A lineage whose import crossed a multiple of ``SNAPSHOT_INTERVAL`` is snapshotted
        at its new end after the commit (a failure there is only logged).
        """
        ledger, index = tracking
        where_tracking = f"store {self._url}: import up to {ledger} index {index}"
        if not isinstance(index, int) or isinstance(index, bool):
            raise IntegrityError(f"{where_tracking}: the index is not an integer", hint=IMPORT_HINT)
        recorder = cast(ProcessRecorder, self._app.recorder)
        applied = recorder.max_tracking_id(ledger) or 0
        if index <= applied:
            raise IntegrityError(
                f"{where_tracking} refused: this store has already applied {ledger} up to index {applied}",
                hint="nothing was imported; read applied() and positions() again and fetch only what is missing",
            )
        self._names.refresh()
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
        try:
            with translated(
                f"{where_tracking}: cannot write {len(stored)} events", _DB_HINT, conflicts=True
            ):
                recorder.insert_events(stored, tracking=Tracking(ledger, index))
        except WriteConflict as exc:
            raise StoreError(
                f"{where_tracking}: the store changed while importing ({exc})",
                hint="nothing was imported; pause the ledger's writer, read applied() and positions() again and fetch what is missing",
            ) from exc
        for ident, lineage in lineages.items():
            self._names.learn(ident, lineage.name)
            if crosses_snapshot(batch[ident][0].originator_version, lineage.version):
                self._app.snapshot(lineage)
        return len(stored), list(lineages.values())

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
                f"store {self._url}: imported event #{number} is not (lineage, position, topic, state)",
                hint=IMPORT_HINT,
            ) from None
        ident = lineage_uuid(lineage, f"store {self._url}: imported event #{number}")
        label = names.get(ident) or self._names.by_id.get(ident) or f"lineage {ident.hex}"

        def refuse(what: str) -> IntegrityError:
            return IntegrityError(
                f"store {self._url}: import of {label} position {position}: {what}",
                hint=IMPORT_HINT,
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
            state, stored = check_link(previous, kind, ident, position, state_bytes)
        except UndecodableEvent as exc:
            raise refuse(f"{kind} does not decode ({exc})") from exc.__cause__
        except ChainMismatch as exc:
            raise refuse(f"{kind}: {exc}") from None
        if kind == "Registered":
            name = state.get("name")
            if not isinstance(name, str) or lineage_id(name) != ident:
                raise refuse(f"Registered names genome {name!r}, whose lineage is not this one")
            label = name
            if state.get("originator_topic") != LINEAGE_TOPIC:
                raise refuse(
                    f"Registered names aggregate class {state.get('originator_topic')!r}, not {LINEAGE_TOPIC}"
                )
            names[ident] = name
        tips[ident] = (position, stored)
        return ident, position, topic, state_bytes

    def _tip(self, ident: UUID, label: str) -> tuple[int, str]:
        """The store's last position of a lineage and that event's chain ((0, GENESIS) if none)."""
        with translated(f"store {self._url}: cannot read {label}", "check the database"):
            rows = self._app.recorder.select_events(ident, desc=True, limit=1)
        if not rows:
            return 0, GENESIS
        try:
            return rows[0].originator_version, str(unpackb(rows[0].state)["chain"])
        except Exception as exc:
            raise IntegrityError(
                f"store {self._url}: the stored event of {label} at position {rows[0].originator_version} "
                f"does not decode ({type(exc).__name__}: {exc})",
                hint=INTEGRITY_HINT,
            ) from exc

    def _replayed(self, ident: UUID, stored: list[StoredEvent], names: dict[UUID, str]) -> Lineage:
        """The lineage after the imported events, replayed as eventsourcing loads them.

        Proves the events are meaningful, not only chained (a patch gives its version…),
        before anything is written, and gives the state to snapshot after the commit.
        """
        first = stored[0].originator_version
        label = names.get(ident) or self._names.by_id.get(ident) or f"lineage {ident.hex}"
        lineage: Lineage | None = None
        if first > 1:
            where = f"store {self._url}: cannot load {label}"
            try:
                with translated(where, "run `tars log verify`"):
                    lineage = cast(Lineage, self._app.repository.get(ident, projector_func=project))
            except AggregateMissing as exc:
                raise StoreError(f"{where}: {exc}", hint="run `tars log verify`") from exc
            if lineage.version != first - 1:
                raise StoreError(
                    f"store {self._url}: {label} changed while importing (now at position {lineage.version})",
                    hint="nothing was imported; pause the ledger's writer while importing",
                )
        for row in stored:
            try:
                event = cast(Lineage.Event, self._app.mapper.to_domain_event(row))
                lineage = cast(Lineage, event.mutate(lineage))
            except Exception as exc:
                raise IntegrityError(
                    f"store {self._url}: import of {label} position {row.originator_version}: "
                    f"{event_type(row.topic)} does not apply to the lineage ({type(exc).__name__}: {exc})",
                    hint=IMPORT_HINT,
                ) from exc
        assert lineage is not None  # stored is never empty
        return lineage
