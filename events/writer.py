"""The write path: load a lineage, let a decision trigger events, store them, retry on a race.

Every write of ``GenomeStore`` goes through :class:`LineageWriter`.  Two things make it
more than ``repository.get`` + ``save``: a write that loses a race with another writer of
the same lineage (eventsourcing's record conflict, :class:`~events._eventsourcing.WriteConflict`
here) is decided again on a fresh load, up to :data:`RETRIES` times; and the lineage this
object stored last is kept and reused by its next write, which saves a load (a cache read,
a query for newer events and a deep copy) on every cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

from events._eventsourcing import (
    AggregateMissing,
    ProcessRecorder,
    Tracking,
    WriteConflict,
    translated,
)
from events.application import GenomesApplication, project
from events.domain import Lineage, lineage_id
from events.names import GenomeNames
from evolution.errors import StoreError

__all__ = ["RETRIES", "WRITE_HINT", "LineageWriter"]

T = TypeVar("T")

#: Attempts of a write that lost a race with another writer of the same lineage.
RETRIES = 5

WRITE_HINT = "check free disk space, permissions and that the database is running; nothing of this write was stored"


class LineageWriter:
    """Loads, decides on and stores lineages for one store object (see the module docstring)."""

    def __init__(self, app: GenomesApplication, names: GenomeNames, url: str) -> None:
        self._app = app
        self._names = names
        self._url = url
        # name -> the lineage as this object last stored it, reused by the next write.
        self._working: dict[str, Lineage] = {}

    def forget(self, name: str) -> None:
        """Drop the kept lineage of ``name``: something newer was stored another way."""
        self._working.pop(name, None)

    def applied(self, ledger: str) -> int | None:
        """The highest tracking index recorded for ``ledger`` (``None`` if none)."""
        return cast(ProcessRecorder, self._app.recorder).max_tracking_id(ledger)

    def get(self, name: str) -> Lineage:
        """The genome's lineage as stored (latest snapshot + later events); UnknownGenomeError."""
        try:
            with translated(f"store {self._url}: cannot read {name}", "check the database"):
                return cast(
                    Lineage, self._app.repository.get(lineage_id(name), projector_func=project)
                )
        except AggregateMissing:
            raise self._names.unknown(name) from None

    def save(self, lineage: Lineage, tracking: Tracking | None) -> None:
        """Store the lineage's pending events; :class:`WriteConflict` if another writer won."""
        with translated(
            f"store {self._url}: cannot write {lineage.name}", WRITE_HINT, conflicts=True
        ):
            self._app.record(lineage, tracking=tracking)

    def write(
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
                lineage = self.get(name)
                result = decide(lineage)
            try:
                self.save(lineage, record)
            except WriteConflict:
                continue
            self._working[name] = lineage
            return result
        raise StoreError(
            f"store {self._url}: writes to {name} kept conflicting with another writer",
            hint="retry",
        )
