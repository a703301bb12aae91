"""Which genomes a store holds: lineage id -> genome name, learned from the log.

A lineage id is a hash of its genome's name (:func:`events.domain.lineage_id`), so the
name cannot be computed back; it is read from the lineage's ``Registered`` event.  The
listing, ``verify``, the transfer and the store facade share one :class:`GenomeNames` per
store object, so a name learned by one is known to all.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from events._eventsourcing import ApplicationRecorder, topic_of
from events.domain import Lineage, lineage_id
from events.transcoder import unpackb
from evolution.errors import UnknownGenomeError

__all__ = ["PAGE", "GenomeNames"]

#: Rows fetched per query when listing, verifying or scanning the log.
PAGE = 2000


class GenomeNames:
    """Genome names by lineage id, filled incrementally from ``Registered`` events."""

    def __init__(self, recorder: ApplicationRecorder, url: str) -> None:
        self._recorder = recorder
        self._url = url
        #: lineage id -> genome name (read freely; written by :meth:`learn` and the scans)
        self.by_id: dict[UUID, str] = {}
        #: lineages whose Registered event does not decode: no name, but ``positions`` lists them
        self.unnamed: set[UUID] = set()
        self._upto = 0
        self._topic = topic_of(Lineage.Registered)

    def learn(self, ident: UUID, name: str) -> None:
        """Remember a name this object has just written or imported."""
        self.by_id[ident] = name
        self.unnamed.discard(ident)

    def refresh(self) -> None:
        """Learn genome names from Registered events not yet seen (ids are hashes of names)."""
        # The topic filter is a scan of the events after ``start``: remember how far it went
        # (at least to the newest event when it began) so the next call starts there.
        top = self._recorder.max_notification_id() or 0
        start = self._upto + 1
        while True:
            notes = self._recorder.select_notifications(start, PAGE, topics=[self._topic])
            for note in notes:
                try:
                    self.by_id[cast(UUID, note.originator_id)] = unpackb(note.state)["name"]
                except Exception:  # noqa: S112 - verify names the damaged event
                    self.unnamed.add(cast(UUID, note.originator_id))
                    continue
            if notes:
                self._upto = notes[-1].id
            if len(notes) < PAGE:
                self._upto = max(self._upto, top)
                return
            start = notes[-1].id + 1

    def names(self) -> list[str]:
        """Every genome of the store, sorted."""
        self.refresh()
        return sorted(self.by_id.values())

    def label(self, ident: UUID) -> str:
        """The genome name of a lineage, or a short form of its id if it has none."""
        return self.by_id.get(ident) or f"lineage {ident.hex[:12]}"

    def unknown(self, name: str) -> UnknownGenomeError:
        """The error for a genome this store does not hold, listing the ones it does."""
        known = ", ".join(sorted(self.by_id.values())) or "none"
        return UnknownGenomeError(
            f"genome {name!r} is not registered in store {self._url}",
            hint=f"genomes here: {known}; a node registers a genome when it starts with its folder",
        )

    def target(self, genome: str | None) -> UUID | None:
        """The lineage id of ``genome`` (None for every genome); UnknownGenomeError if absent."""
        if genome is None:
            return None
        target = lineage_id(genome)
        if target not in self.by_id:
            self.refresh()
        if target not in self.by_id:
            raise self.unknown(genome)
        return target

    def length(self, ident: UUID) -> int:
        """The number of events of one lineage (its last position)."""
        last = self._recorder.select_events(ident, desc=True, limit=1)
        return last[0].originator_version if last else 0
