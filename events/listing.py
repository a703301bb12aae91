"""Listing the log: ``log``, ``log_rows``, ``log_tail``, decoded straight from raw rows.

Listing history builds no domain objects: rows come from the recorder's notification log
(for SQLite, one plain ``SELECT`` per page, :func:`events.backends.raw_notifications`)
and their msgpack state is decoded as it is, because building an event object per row
would make listing a long log slow.  The per-row loop (:meth:`LogReader.decoded`) does
only dictionary lookups; everything per lineage or per topic is worked out once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast
from uuid import UUID

from events.application import GenomesApplication
from events.backends import RawRow, raw_notifications
from events.chain import event_type
from events.names import PAGE, GenomeNames
from events.records import LogEntry
from events.transcoder import unpackb, unpackb_ns

__all__ = ["VERSION_FIELDS", "LogReader", "LogRow"]

#: One event as ``GenomeStore.log_rows`` lists it: (seq, type, genome, version, parent,
#: time in ns since the epoch, node, data, position in its genome's lineage).
LogRow = tuple[int, str, str, str | None, str | None, int, str, dict[str, Any], int]

#: Which stored field is the event's "version" and which its "parent", per event type.
VERSION_FIELDS: dict[str, tuple[str | None, str | None]] = {
    "Registered": ("version", None),
    "CandidateEvaluated": ("candidate", "parent"),
    "VersionAdopted": ("version", "parent"),
    "RolledBack": ("to_version", "from_version"),
    "ApprovalRequested": ("candidate", "parent"),
    "Approved": ("candidate", None),
    "ApprovalGiven": ("candidate", None),
    "CycleCompleted": ("adopted", None),
    "ProposalSubmitted": ("version", "parent"),
    "VoteCast": ("version", None),
    "ProposalRebased": ("version", "parent"),
    "ProposalRejected": ("version", None),
    "RolloutStepped": ("version", "blue"),
}


class LogReader:
    """The store's log, listed from raw rows (the ``log*`` reads of ``GenomeStore``)."""

    def __init__(self, app: GenomesApplication, names: GenomeNames) -> None:
        self._app = app
        self._names = names

    def log(self, genome: str | None, start: int, limit: int | None) -> Iterator[LogEntry]:
        """Events in store order from sequence number ``start``, optionally of one genome."""
        return self._entries(self._names.target(genome), start, limit)  # unknown raises now

    def _entries(self, target: UUID | None, start: int, limit: int | None) -> Iterator[LogEntry]:
        for seq, kind, label, version, parent, time, node, state, position in self.decoded(
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

    def log_rows(self, genome: str | None, start: int, limit: int | None) -> Iterator[LogRow]:
        """The same events as :meth:`log`, as plain tuples, times as integer ns."""
        # an unknown genome raises now, not at the first row
        target = self._names.target(genome)
        return cast(Iterator[LogRow], self.decoded(target, start, limit, unpackb_ns))

    def log_tail(self, count: int, genome: str | None) -> tuple[list[LogRow], int]:
        """The newest ``count`` rows in store order, and how many earlier events there are.

        It reads the log backwards in growing windows of sequence numbers from the newest,
        so it costs the events it returns (plus, with ``genome``, the other genomes' rows in
        those windows, which are skipped undecoded), not the length of the log.  The count
        of earlier events comes from lineage positions, which are dense: with ``genome``,
        the first row's position minus one; without, that of every lineage whose events
        are shown, plus the whole length of every other lineage.
        """
        target = self._names.target(genome)  # an unknown genome raises now
        top = self._app.recorder.max_notification_id()
        if top is None:
            return [], 0
        chunks: list[list[LogRow]] = []
        found = 0
        stop = top
        window = max(count, 64)
        while count > 0 and found < count and stop >= 1:
            start = max(1, stop - window + 1)
            chunk = cast(list[LogRow], list(self.decoded(target, start, None, unpackb_ns, stop)))
            chunks.append(chunk)
            found += len(chunk)
            stop = start - 1
            window *= 2
        rows = [row for chunk in reversed(chunks) for row in chunk][-count:] if count > 0 else []
        return rows, self._earlier(target, rows)

    def _earlier(self, target: UUID | None, rows: list[LogRow]) -> int:
        """How many events (of ``target``, or of every lineage) come before ``rows``."""
        names = self._names
        if target is not None:
            return rows[0][8] - 1 if rows else names.length(target)
        first: dict[str, int] = {}  # genome -> its first position among the rows
        for row in rows:
            first.setdefault(row[2], row[8])
        names.refresh()
        return sum(
            first[name] - 1 if name in first else names.length(ident)
            for ident, name in names.by_id.items()
        )

    def notifications(self, start: int) -> Iterator[Any]:
        """The recorder's notifications (eventsourcing ``Notification``) from ``start``, paged."""
        recorder = self._app.recorder
        while True:
            notes = recorder.select_notifications(start, PAGE)
            yield from notes
            if len(notes) < PAGE:
                return
            start = notes[-1].id + 1

    def rows(self, start: int, stop: int | None = None) -> Iterator[RawRow]:
        """The log as raw rows from ``start`` (up to ``stop`` inclusive): the backend's fast reader where it has one."""
        fast = raw_notifications(self._app.recorder)
        if fast is None:
            for note in self.notifications(start):
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
            if stop is not None and rows and rows[-1][0] > stop:  # ids have gaps: may pass stop
                yield from (row for row in rows if row[0] <= stop)
                return
            yield from rows
            if len(rows) < page:
                return
            start = rows[-1][0] + 1

    def decoded(
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
        names = self._names
        for seq, key, position, topic, raw in self.rows(max(start, 1), stop):
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
                fields = kinds[topic] = (kind, *VERSION_FIELDS.get(kind, (None, None)))
            kind, version_field, parent_field = fields
            state = decode(raw)
            label = labels.get(key)
            if label is None:
                if kind == "Registered" and ident not in names.by_id:
                    names.by_id[ident] = state["name"]
                elif ident not in names.by_id:
                    names.refresh()
                if ident in names.by_id:
                    label = labels[key] = names.by_id[ident]
                else:
                    label = names.label(ident)
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
