"""The eventsourcing application of genome lineages: recorders, saving, snapshots.

What persists lives here and nothing else: :class:`GenomesApplication` is configured by
the environment :mod:`events.backends` makes from a store URL, records batches of
lineages with a tracking record in one transaction (the machinery, which leans on
eventsourcing internals, is :class:`events._eventsourcing.TrackingApplication`), and
snapshots a lineage every :data:`SNAPSHOT_INTERVAL` events.  The store
(:mod:`events.store`) decides what to write and when; this module only stores it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar
from uuid import UUID

from events._eventsourcing import MutableOrImmutableAggregate, TrackingApplication
from events.domain import Lineage

__all__ = ["SNAPSHOT_INTERVAL", "GenomesApplication", "crosses_snapshot", "project"]

logger = logging.getLogger(__name__)

#: Events of a lineage between snapshots.
SNAPSHOT_INTERVAL = 100


def project(aggregate: Lineage | None, events: Iterable[Lineage.Event]) -> Lineage | None:
    """eventsourcing's ``project_aggregate`` without its per-event ``isinstance`` of a
    runtime-checkable Protocol (tens of µs per event, paid again on every load)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def crosses_snapshot(first: int, last: int) -> bool:
    """Whether new events at positions ``first``..``last`` reach a multiple of the interval."""
    return (first - 1) // SNAPSHOT_INTERVAL != last // SNAPSHOT_INTERVAL


class GenomesApplication(TrackingApplication):
    """eventsourcing application of :class:`Lineage` aggregates, snapshotting every 100 events.

    It records with the backend's *process* recorder, so a write can carry a tracking
    record (the Raft index it applies) in the same transaction: a crash mid-apply then
    neither loses nor doubles an event.
    """

    name = "Genomes"
    snapshotting_intervals: ClassVar[dict[type[MutableOrImmutableAggregate[Any]], int]] = {
        Lineage: SNAPSHOT_INTERVAL
    }

    def after_record(self, events: Sequence[Any], aggregates: Mapping[UUID, Any]) -> None:
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
        for event in events:
            ident = event.originator_id
            first.setdefault(ident, event.originator_version)
            last[ident] = event.originator_version
        for ident, lineage in aggregates.items():
            if ident not in last or not isinstance(lineage, Lineage):
                continue
            if crosses_snapshot(first[ident], last[ident]):
                self.snapshots.put([Lineage.Snapshot.take(lineage)])

    def snapshot(self, lineage: Lineage) -> None:
        """Store a snapshot of ``lineage`` as it is (after an import); failures are only logged."""
        try:
            if self.snapshots is not None:
                self.snapshots.put([Lineage.Snapshot.take(lineage)])
        except Exception:  # snapshots are an optimisation; the events are committed
            logger.warning("snapshot of %s after import failed", lineage.name, exc_info=True)
