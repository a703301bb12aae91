"""The edge between TARS and eventsourcing: pinned names, translated errors, one chain check.

``events/_eventsourcing.py`` is the only module of ``events/`` that imports the library;
these tests fail the day the pinned eventsourcing (9.5.6) lacks a name it relies on, or
the day another module starts importing the library around it.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import version
from pathlib import Path
from uuid import uuid4

import pytest

from events._eventsourcing import (
    RELIED_ON,
    AggregateMissing,
    WriteConflict,
    raw_notifications,
    translated,
)
from events.chain import GENESIS, ChainMismatch, UndecodableEvent, check_link, link
from events.domain import Lineage, lineage_id
from events.store import GenomeStore
from events.transcoder import packb
from evolution.errors import StoreError, TarsError

EVENTS = Path(__file__).resolve().parents[1] / "events"


def test_pinned_version_is_installed() -> None:
    pyproject = (EVENTS.parent / "pyproject.toml").read_text()
    pinned = re.search(r'"eventsourcing\[postgres\]==([0-9.]+)"', pyproject)
    assert pinned is not None
    assert version("eventsourcing") == pinned.group(1) == "9.5.6"


@pytest.mark.parametrize(("module", "dotted"), RELIED_ON, ids=[f"{m}:{d}" for m, d in RELIED_ON])
def test_relied_on_name_exists(module: str, dotted: str) -> None:
    found: object = importlib.import_module(module)
    for part in dotted.split("."):
        assert hasattr(found, part), f"{module} no longer has {dotted}"
        found = getattr(found, part)


def test_relied_on_error_hierarchy() -> None:
    from eventsourcing.persistence import IntegrityError, PersistenceError, RecordConflictError

    # a conflict is both: translated() must test for the conflict first
    assert issubclass(IntegrityError, RecordConflictError)
    assert issubclass(IntegrityError, PersistenceError)


def test_sqlite_internals_behind_durability_and_the_raw_reader(tmp_path: Path) -> None:
    """The instance attributes the SQLite pieces use, on a live store."""
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.register("g", "", {"a.py": "x = 1\n"}, None, "n1")
        recorder = store._app.recorder
        assert isinstance(recorder.events_table_name, str)  # type: ignore[attr-defined]
        pool = store._app.factory.datastore.pool  # type: ignore[attr-defined]
        assert type(pool).__name__ == "DurableSQLiteConnectionPool"
        assert (pool.db_name, pool.lock_timeout) == (str(tmp_path / "s.db"), 30)
        with recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            assert cursor.sqlite_cursor is not None
        connection = pool._create_connection()
        try:
            assert connection._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        finally:
            connection.close()
        reader = raw_notifications(recorder)
        assert reader is not None
        ((seq, ident, position, topic, state),) = reader(1, 10)
        assert (seq, ident, position) == (1, lineage_id("g").hex, 1)
        assert topic == "events.domain:Lineage.Registered" and isinstance(state, bytes)
    with GenomeStore.open("memory://") as store:
        assert raw_notifications(store._app.recorder) is None  # the general path


def test_only_the_adapter_imports_eventsourcing() -> None:
    importing = re.compile(r"^\s*(from|import)\s+eventsourcing\b", re.M)
    users = sorted(p.name for p in EVENTS.glob("*.py") if importing.search(p.read_text()))
    assert users == ["_eventsourcing.py"]


# ---- errors translated at the edge ----


def test_persistence_failure_becomes_store_error() -> None:
    from eventsourcing.persistence import OperationalError

    with (
        pytest.raises(StoreError, match="^store x: cannot write g: disk full — check") as caught,
        translated("store x: cannot write g", "check the disk"),
    ):
        raise OperationalError("disk full")
    assert type(caught.value) is StoreError
    assert isinstance(caught.value.__cause__, OperationalError)


def test_conflicts_only_when_asked() -> None:
    from eventsourcing.persistence import IntegrityError

    with (
        pytest.raises(WriteConflict, match="^UNIQUE constraint failed$"),
        translated("w", "h", conflicts=True),
    ):
        raise IntegrityError("UNIQUE constraint failed")
    with (
        pytest.raises(StoreError, match="^w: UNIQUE constraint failed — h$") as caught,
        translated("w", "h"),
    ):
        raise IntegrityError("UNIQUE constraint failed")
    assert not isinstance(caught.value, WriteConflict)


def test_missing_aggregate_and_other_errors() -> None:
    from eventsourcing.application import AggregateNotFoundError

    with pytest.raises(AggregateMissing), translated("r", "h"):
        raise AggregateNotFoundError("nope")
    assert issubclass(AggregateMissing, TarsError) and issubclass(WriteConflict, StoreError)
    with pytest.raises(KeyError), translated("r", "h"):  # not the library's: untouched
        raise KeyError("x")


def test_unknown_genome_still_named_through_the_adapter() -> None:
    with GenomeStore.open("memory://") as store:
        store.register("known", "", {"a.py": "x = 1\n"}, None, "n1")
        with pytest.raises(
            TarsError, match=r"genome 'nope' is not registered.*genomes here: known"
        ):
            store.head("nope")


# ---- the one chain check ----


def stored_registration() -> tuple[bytes, str]:
    lineage = Lineage.register("g", "", {"a.py": "x = 1\n"}, None, "n1")
    (event,) = lineage.collect_events()
    state = dict(vars(event))
    state.pop("originator_id")
    state.pop("originator_version")
    return packb(state), state["chain"]


def test_check_link_accepts_and_returns_the_state() -> None:
    raw, chain = stored_registration()
    state, stored = check_link(GENESIS, "Registered", lineage_id("g"), 1, raw)
    assert stored == chain == state["chain"]
    assert state["name"] == "g"


def test_check_link_refuses_a_wrong_predecessor_or_position() -> None:
    raw, chain = stored_registration()
    for previous, position in (("1" * 64, 1), (GENESIS, 2)):
        with pytest.raises(ChainMismatch) as caught:
            check_link(previous, "Registered", lineage_id("g"), position, raw)
        assert caught.value.stored == chain
        assert str(caught.value) == (
            f"hash chain broken — stored chain {chain[:12]}… != recomputed "
            f"{caught.value.recomputed[:12]}…"
        )
    with pytest.raises(ChainMismatch):
        check_link(GENESIS, "Registered", uuid4(), 1, raw)  # another lineage


def test_check_link_refuses_what_does_not_decode() -> None:
    raw, _ = stored_registration()
    with pytest.raises(UndecodableEvent, match=r"^\w+: ") as caught:
        check_link(GENESIS, "Registered", lineage_id("g"), 1, raw[:20])
    assert caught.value.__cause__ is not None
    with pytest.raises(UndecodableEvent, match="^KeyError: 'chain'$"):
        check_link(GENESIS, "Registered", lineage_id("g"), 1, packb({"timestamp": 1}))
    assert (
        link(GENESIS, "Registered", lineage_id("g"), 1, *_when_and_payload(raw))
        == (check_link(GENESIS, "Registered", lineage_id("g"), 1, raw)[1])
    )


def _when_and_payload(raw: bytes) -> tuple[object, dict[str, object]]:
    from events.chain import payload_of
    from events.transcoder import unpackb

    state = unpackb(raw)
    return state["timestamp"], payload_of(state)
