"""The store's start-up check (``GenomeStore.check``): damage found on disk, fast on a sound store.

The attacks are made on the real SQLite file, as a disk or a careless hand would: a byte
flipped inside an old event (the file stays a valid database), a flipped B-tree page
header, rows removed, the applied index moved back.  Each must be refused naming what is
wrong; a sound store is checked from its last mark, and a deleted store is not damage.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from storekit import MemoryBackend, PostgresBackend

from events.backends import sqlite_path
from events.records import Adoption, CandidateRecord
from events.store import GenomeStore, StoreCheck
from evolution.errors import IntegrityError, StoreError
from evolution.patch import make_patch
from evolution.tree import version_id

TREE = {"g/core.py": "def f(x):\n    return x\n\nLIMIT = 0\n"}


def evolve(tree: dict[str, str], i: int) -> dict[str, str]:
    return {"g/core.py": tree["g/core.py"].rsplit("LIMIT = ", 1)[0] + f"LIMIT = {i}\n"}


def candidate(tree: dict[str, str], i: int) -> CandidateRecord:
    new = evolve(tree, 1000 + i)
    return CandidateRecord(
        version_id(new),
        version_id(tree),
        make_patch(tree, new),
        "tune",
        "constant",
        "reject",
        [f"no gain {i:05d}"],
        1.01,
        0.97,
        1.04,
        True,
    )


def history(store: GenomeStore, adoptions: int = 3, evaluated: int = 120) -> dict[str, str]:
    """A genome with ``adoptions`` adoptions and enough events for a snapshot or two."""
    store.register("g", "", TREE, 1.0, "node-1")
    tree = TREE
    for i in range(1, adoptions + 1):
        new = evolve(tree, i)
        store.adopt(
            "g",
            Adoption(
                version_id(new), version_id(tree), make_patch(tree, new), "tune", "constant",
                1.0, 0.9, 1.11, 1.05, 1.2, {"note": "ok"},
            ),
            "node-1",
        )  # fmt: skip
        tree = new
    for start in range(0, evaluated, 40):
        store.record_cycle("g", "node-1", evaluated=[candidate(tree, start + k) for k in range(40)])
    return tree


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    """A stopped node's store with history, checked once (so it has a mark)."""
    path, mark = tmp_path / "store.db", tmp_path / "store.verified"
    with GenomeStore.open(f"sqlite:///{path}") as store:
        history(store)
        first = store.check(mark)
    assert first.walked == first.events > 120 and first.snapshots >= 1
    assert mark.exists()
    return path, mark


def checked(path: Path, mark: Path, ledgers: tuple[str, ...] = ()) -> StoreCheck:
    """Open the store file, check it, close it (as a node's start does)."""
    with GenomeStore.open(f"sqlite:///{path}") as store:
        return store.check(mark, ledgers)


def flip(path: Path, needle: bytes, at: int = 0) -> None:
    """Flip one bit of the byte ``at`` into the (unique) ``needle`` in the file itself."""
    data = bytearray(path.read_bytes())
    where = data.find(needle)
    assert where > 0 and data.find(needle, where + 1) == -1, needle
    data[where + at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_sound_store_is_checked_from_its_mark(made: tuple[Path, Path]) -> None:
    path, mark = made
    with GenomeStore.open(f"sqlite:///{path}") as store:
        again = store.check(mark)
        assert again.walked == 0 and again.digested == again.events
        store.record_cycle("g", "node-1", evaluated=[candidate(TREE, 900)])
        third = store.check(mark)
    assert third.walked == 1 and third.digested == again.events
    assert third.quick_check == "ok"
    assert "sound" in str(third)


def test_a_byte_flipped_in_an_old_event_is_found_and_named(made: tuple[Path, Path]) -> None:
    path, mark = made
    flip(path, b"no gain 00007", at=12)  # inside one CandidateEvaluated's reasons: valid SQLite
    with pytest.raises(IntegrityError) as err:
        checked(path, mark)
    assert "CandidateEvaluated" in str(err.value) and "event seq" in str(err.value)
    assert "hash chain broken" in str(err.value)
    assert err.value.hint and "rebuild" in err.value.hint


def test_a_change_the_chain_does_not_cover_is_found_by_the_digest(
    made: tuple[Path, Path],
) -> None:
    """The chain hashes an event's short type, not its module: a changed topic module chains
    as before but no longer loads.  The digest over the raw rows sees every byte."""
    path, mark = made
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_events SET topic = replace(topic, 'events.domain', 'eventz.domain') "
            "WHERE rowid = 5"
        )
    with GenomeStore.open(f"sqlite:///{path}") as store:
        assert store.verify().events > 5  # the full chain walk is content with it
        with pytest.raises(IntegrityError, match="up to seq .* changed since they were verified"):
            store.check(mark)


def test_a_flipped_page_header_fails_quick_check(made: tuple[Path, Path]) -> None:
    path, mark = made
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    # The last page of the file is a B-tree page of the events table: flip its type byte.
    offset = (len(data) // page - 1) * page
    assert data[offset] in (0x02, 0x05, 0x0A, 0x0D)
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        store = GenomeStore.open(f"sqlite:///{path}")
        try:
            store.check(mark)
        finally:
            store.close()
    assert "quick_check" in str(err.value) or "malformed" in str(err.value)
    assert str(path) in str(err.value)


def test_events_removed_from_the_end_are_found(made: tuple[Path, Path]) -> None:
    path, mark = made
    with sqlite3.connect(path) as db:
        db.execute(
            "DELETE FROM stored_events WHERE rowid > (SELECT max(rowid) - 3 FROM stored_events)"
        )
    with pytest.raises(IntegrityError, match="verified|removed"):
        checked(path, mark)


def test_an_applied_index_that_went_back_is_found(tmp_path: Path) -> None:
    path, mark = tmp_path / "store.db", tmp_path / "store.verified"
    with GenomeStore.open(f"sqlite:///{path}") as store:
        history(store, evaluated=0)
        store.mark_applied("ledger", 40)
        store.check(mark, ["ledger"])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tracking SET notification_id = 12 WHERE application_name = 'ledger'")
    with pytest.raises(IntegrityError, match="applied up to index 40 at the last check, now 12"):
        checked(path, mark, ("ledger",))


def test_a_changed_snapshot_is_found(made: tuple[Path, Path]) -> None:
    path, mark = made
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE stored_snapshots SET state = CAST(state || x'00' AS BLOB) WHERE "
            "originator_version = "
            "(SELECT min(originator_version) FROM stored_snapshots)"
        )
    with pytest.raises(IntegrityError, match="snapshot of g at position .* changed"):
        checked(path, mark)


def test_a_row_sqlite_cannot_read_is_a_store_error(made: tuple[Path, Path]) -> None:
    path, mark = made
    with sqlite3.connect(path) as db:  # an event whose state became text that is not UTF-8
        db.execute("UPDATE stored_events SET state = state || x'00' WHERE rowid = 3")
    with pytest.raises(StoreError, match="cannot be read for the check"):
        checked(path, mark)


def test_a_deleted_store_is_not_damage(
    made: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A node whose store was deleted rebuilds it from the ledger, as before the check."""
    path, mark = made
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with GenomeStore.open(f"sqlite:///{path}") as store:
        with caplog.at_level(logging.WARNING, logger="events.verify"):
            found = store.check(mark)
        assert found.events == 0 and "deleted or replaced" in caplog.text
        history(store, evaluated=0)
        assert store.check(mark).walked > 0


def test_an_unreadable_mark_means_a_full_walk(
    made: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    path, mark = made
    mark.write_bytes(b"\xc1 not msgpack")
    with caplog.at_level(logging.WARNING, logger="events.verify"):
        found = checked(path, mark)
    assert found.walked == found.events and "unreadable" in caplog.text
    assert sqlite_path(f"sqlite:///{path}") == path


class TestMemory(MemoryBackend):
    def test_other_backends_skip_quick_check_and_say_so(self) -> None:
        store = self.create_store()
        history(store, evaluated=0)
        found = store.check()
        assert found.quick_check.startswith("skipped") and found.walked == found.events


@pytest.mark.postgres
class TestPostgres(PostgresBackend):
    def test_postgres_skips_quick_check_and_walks_from_the_mark(self) -> None:
        store = self.create_store()
        history(store, evaluated=40)
        mark = self.tmp_path / "store.verified"
        first = store.check(mark)
        assert first.quick_check.startswith("skipped") and first.walked == first.events
        assert store.check(mark).walked == 0
