"""Everything TARS takes from eventsourcing 9.5.6, and every liberty it takes with it.

The rest of ``events/`` imports the library only through this module, so the day a new
eventsourcing release renames something, this is the one file to read, and
``tests/test_eventsourcing_adapter.py`` (which checks every name in :data:`RELIED_ON`
against the installed library) says which name went.  Three kinds of thing live here:

- the library's public names the package uses, re-exported (aggregate and event base
  classes, ``Application``, ``Tracking``, ``StoredEvent``, the recorder types);
- the private ones, each behind a function or class of our own: recording a batch of
  aggregates with a tracking record and without the library's per-aggregate Protocol
  checks (``Application._record``/``_notify``), creating an aggregate from its creation
  event (``Aggregate._create``), topics (``get_topic``), and the SQLite internals behind
  ``synchronous=FULL`` and the raw notification reader;
- the edge where library errors become :class:`~evolution.errors.TarsError`:
  :func:`translated` turns ``PersistenceError`` into ``StoreError`` worded by the caller,
  and the two outcomes callers act on get their own classes in the tree,
  :class:`WriteConflict` (a ``RecordConflictError``: another writer stored first) and
  :class:`AggregateMissing` (``AggregateNotFoundError``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate, MutableOrImmutableAggregate
from eventsourcing.persistence import (
    ApplicationRecorder,
    Notification,
    PersistenceError,
    ProcessRecorder,
    RecordConflictError,
    StoredEvent,
    Tracking,
    Transcoder,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteFactory,
    SQLiteProcessRecorder,
)
from eventsourcing.utils import Environment, EnvType, get_topic

from evolution.errors import StoreError

__all__ = [
    "RELIED_ON",
    "Aggregate",
    "AggregateMissing",
    "ApplicationRecorder",
    "DurableSQLiteFactory",
    "MutableOrImmutableAggregate",
    "Notification",
    "ProcessRecorder",
    "RawRow",
    "StoredEvent",
    "Tracking",
    "TrackingApplication",
    "Transcoder",
    "WriteConflict",
    "create_aggregate",
    "raw_notifications",
    "sqlite_quick_check",
    "topic_of",
    "translated",
]

logger = logging.getLogger(__name__)

A = TypeVar("A")

#: (module, dotted name) of everything above that the library must go on providing; the
#: underscore names are the ones no release note would announce.
RELIED_ON: tuple[tuple[str, str], ...] = (
    ("eventsourcing.application", "Application._record"),
    ("eventsourcing.application", "Application._notify"),
    ("eventsourcing.application", "Application.construct_recorder"),
    ("eventsourcing.application", "AggregateNotFoundError"),
    ("eventsourcing.application", "ProcessingEvent"),
    ("eventsourcing.domain", "Aggregate._create"),
    ("eventsourcing.domain", "Aggregate.trigger_event"),
    ("eventsourcing.domain", "Aggregate.collect_events"),
    ("eventsourcing.domain", "MutableOrImmutableAggregate"),
    ("eventsourcing.persistence", "ApplicationRecorder"),
    ("eventsourcing.persistence", "Notification"),
    ("eventsourcing.persistence", "PersistenceError"),
    ("eventsourcing.persistence", "IntegrityError"),
    ("eventsourcing.persistence", "ProcessRecorder.insert_events"),
    ("eventsourcing.persistence", "ProcessRecorder.max_tracking_id"),
    ("eventsourcing.persistence", "ApplicationRecorder.select_notifications"),
    ("eventsourcing.persistence", "ApplicationRecorder.max_notification_id"),
    ("eventsourcing.persistence", "ApplicationRecorder.select_events"),
    ("eventsourcing.persistence", "RecordConflictError"),
    ("eventsourcing.persistence", "StoredEvent"),
    ("eventsourcing.persistence", "Tracking"),
    ("eventsourcing.persistence", "Transcoder"),
    ("eventsourcing.sqlite", "SQLiteApplicationRecorder"),
    ("eventsourcing.sqlite", "SQLiteConnection"),
    ("eventsourcing.sqlite", "SQLiteConnectionPool._create_connection"),
    ("eventsourcing.sqlite", "SQLiteFactory"),
    ("eventsourcing.sqlite", "SQLiteProcessRecorder"),
    ("eventsourcing.utils", "Environment"),
    ("eventsourcing.utils", "EnvType"),
    ("eventsourcing.utils", "get_topic"),
)


# ---- errors: translated at this edge ----


class WriteConflict(StoreError):
    """Another writer stored events at the same positions (or the same tracking index) first.

    Raised by :func:`translated` with ``conflicts=True`` in place of eventsourcing's
    ``RecordConflictError``; its message is the library's.  Writers redo their decision
    on a fresh load, the import reports that the store moved under it.
    """


class AggregateMissing(StoreError):
    """eventsourcing's ``AggregateNotFoundError``: no event of this aggregate is stored."""


@contextmanager
def translated(what: str, hint: str, *, conflicts: bool = False) -> Iterator[None]:
    """Library failures inside the block become ``StoreError(f"{what}: {exc}", hint=hint)``.

    With ``conflicts``, a record conflict raises :class:`WriteConflict` instead (it is
    also a ``PersistenceError``, which without the flag it is treated as); a missing
    aggregate always raises :class:`AggregateMissing`.
    """
    try:
        yield
    except AggregateNotFoundError as exc:
        raise AggregateMissing(str(exc)) from exc
    except RecordConflictError as exc:
        if conflicts:
            raise WriteConflict(str(exc)) from exc
        if not isinstance(exc, PersistenceError):
            raise
        raise StoreError(f"{what}: {exc}", hint=hint) from exc
    except PersistenceError as exc:
        raise StoreError(f"{what}: {exc}", hint=hint) from exc


# ---- domain ----


def create_aggregate(cls: type[A], event_class: type[Any], **kwargs: Any) -> A:
    """A new aggregate of ``cls`` from its creation event (eventsourcing's ``_create``)."""
    created: A = cls._create(event_class, **kwargs)  # type: ignore[attr-defined]
    return created


def topic_of(cls: type) -> str:
    """The topic eventsourcing stores for a class (``module:QualName``)."""
    return get_topic(cls)


# ---- application ----


class TrackingApplication(Application[UUID]):
    """An eventsourcing ``Application`` that records whole batches with a tracking record.

    It records with the backend's *process* recorder, so a write can carry the Raft index
    it applies in the same transaction.  :meth:`record` is ``Application.save`` for
    aggregates in hand, without the two runtime-checkable Protocol ``isinstance`` tests
    per aggregate that ``ProcessingEvent.collect_events`` makes (the slow part of it), and
    with the snapshot policy left to :meth:`after_record`.
    """

    def construct_recorder(self) -> ApplicationRecorder:
        return self.factory.process_recorder()

    def record(self, *aggregates: Any, tracking: Tracking | None = None) -> None:
        """Store the aggregates' pending events (and the tracking record) in one transaction."""
        processing: ProcessingEvent[UUID] = ProcessingEvent(tracking=tracking)
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing)
        try:
            self.after_record(processing.events, processing.aggregates)
        except Exception:  # snapshots are an optimisation; the events are committed
            logger.warning(
                "snapshot of %s failed after commit",
                ", ".join(str(getattr(x, "name", x)) for x in aggregates),
                exc_info=True,
            )
        self._notify(recordings)

    def after_record(self, events: Sequence[Any], aggregates: Mapping[UUID, Any]) -> None:
        """Called after each committed :meth:`record` (snapshots); failures are only logged."""


# ---- SQLite: durability and the fast reader ----


class DurableSQLiteConnectionPool(SQLiteConnectionPool):
    """eventsourcing's pool, with ``synchronous=FULL`` set on each new connection."""

    def _create_connection(self) -> SQLiteConnection:
        connection = super()._create_connection()
        connection._sqlite_conn.execute("PRAGMA synchronous=FULL")
        return connection


class DurableSQLiteFactory(SQLiteFactory):
    """``SQLiteFactory`` whose connections are WAL (eventsourcing's choice) and fsync on every commit."""

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        old = self.datastore.pool
        self.datastore.pool = DurableSQLiteConnectionPool(
            db_name=old.db_name, lock_timeout=old.lock_timeout
        )
        old.close()


#: (seq, originator id as text, position, topic, state) as stored, with no objects built
#: per row; the id text is the key readers map to a ``UUID`` once per lineage.
RawRow = tuple[int, str, int, str, bytes]


def raw_notifications(recorder: object) -> Callable[[int, int], list[RawRow]] | None:
    """A fast reader of the notification log for backends that have one, else None.

    Listing a long log (``tars log ls``) through eventsourcing builds a ``Notification``
    and a ``UUID`` per row, which is most of the time at 100,000 events.  For SQLite the
    same rows come straight from one SELECT, as SQLite returns them.
    """
    reader = _RAW_READERS.get(type(recorder))
    return None if reader is None else functools.partial(reader, recorder)


def _sqlite_rows(recorder: SQLiteApplicationRecorder, start: int, limit: int) -> list[RawRow]:
    statement = (
        f"SELECT rowid, originator_id, originator_version, topic, state FROM {recorder.events_table_name} "
        "WHERE rowid>=? ORDER BY rowid LIMIT ?"
    )
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.sqlite_cursor.row_factory = None  # plain tuples (this cursor only), not sqlite3.Row
        cursor.execute(statement, (start, limit))
        rows: list[RawRow] = cursor.fetchall()
    return rows


_RAW_READERS: dict[type, Callable[..., list[RawRow]]] = {
    SQLiteApplicationRecorder: _sqlite_rows,
    SQLiteProcessRecorder: _sqlite_rows,
}


def sqlite_quick_check(recorder: object) -> list[str] | None:
    """SQLite's ``PRAGMA quick_check`` of the store's file: ``["ok"]`` when it is sound, else
    what SQLite found (an error opening a page is a finding too); None for other backends.

    It reads every page and B-tree and checks each record's format, in about 0.1 s for
    100,000 events; it does not see a changed byte inside a stored value, which is what the
    hash chain is for.
    """
    if not isinstance(recorder, SQLiteApplicationRecorder):
        return None
    try:
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.sqlite_cursor.row_factory = None
            cursor.execute("PRAGMA quick_check")
            return [str(row[0]) for row in cursor.fetchall()]
    except Exception as exc:  # SQLite refuses a page it cannot read: that is the finding
        return [f"{type(exc).__name__}: {exc}"]
