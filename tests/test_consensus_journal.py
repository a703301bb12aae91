"""The Raft journal: durable, CRC-checked, pickle-free, and faithful to pysyncobj's API."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pysyncobj.journal import MemoryJournal

from consensus.journal import MAGIC, MAGIC_V1, CrcJournal
from evolution.errors import ConsensusError

PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def fill(journal: CrcJournal, count: int, start: int = 1, term: int = 1) -> None:
    for idx in range(start, start + count):
        journal.add(b"T" + f"entry-{idx}".encode(), idx, term)


def test_roundtrip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 5)
        journal.add(b"\x00\x0a\xff binary\nwith newline", 6, 2)
        journal.sync()
        expected = list(journal)
    with CrcJournal(path) as again:
        assert list(again) == expected
        assert len(again) == 6
        assert again[-1] == (b"\x00\x0a\xff binary\nwith newline", 6, 2)
        assert again[1:3] == expected[1:3]


def test_term_vote_and_commit_index_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (0, None)
        assert journal.getRaftCommitIndex() == 1
        fill(journal, 3)
        journal.setCurrentTerm(7, "node-b")
        journal.setRaftCommitIndex(3)
    with CrcJournal(path) as again:
        assert again.getCurrentTerm() == 7
        assert again.getVotedForNodeId() == "node-b"
        assert again.getRaftCommitIndex() == 3
    meta = msgpack.unpackb((tmp_path / "raft.journal.meta").read_bytes(), raw=False)
    assert meta == {"term": 7, "voted_for": "node-b", "commit_index": 3}


def test_term_is_written_at_once_not_at_close(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = CrcJournal(path)
    try:
        journal.setCurrentTerm(3, "a")
        # A second reader sees it while the first is still open: no buffering.
        meta = msgpack.unpackb((tmp_path / "raft.journal.meta").read_bytes(), raw=False)
        assert meta["term"] == 3 and meta["voted_for"] == "a"
    finally:
        journal.close()


def test_sync_is_one_fsync_per_burst(tmp_path: Path) -> None:
    with CrcJournal(tmp_path / "j") as journal:
        fill(journal, 10)
        assert journal.dirty
        journal.sync()
        journal.sync()
        assert journal.syncs == 1 and not journal.dirty


@pytest.mark.parametrize(
    "tail",
    [
        b"\x40\x00",  # half a header
        (100).to_bytes(4, "little") + b"\x00\x00\x00\x00" + b"short",  # body cut off
        b"\x00" * 64,  # a zero-filled, pre-allocated tail
    ],
)
def test_torn_tail_is_truncated_and_reported(
    tmp_path: Path, tail: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 3)
    good_size = path.stat().st_size
    with path.open("ab") as f:
        f.write(tail)
    with caplog.at_level(logging.WARNING, logger="consensus.journal"):
        again = CrcJournal(path)
    try:
        assert [e[1] for e in again] == [1, 2, 3]
        assert again.truncated_tail_bytes == len(tail)
        assert path.stat().st_size == good_size
        assert "torn record" in caplog.text and str(path) in caplog.text
        again.add(b"T4", 4, 1)  # and appending goes on from the good end
    finally:
        again.close()
    with CrcJournal(path) as third:
        assert [e[1] for e in third] == [1, 2, 3, 4]


def test_last_record_with_bad_crc_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 3)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with CrcJournal(path) as again:
        assert [e[1] for e in again] == [1, 2]


def test_corruption_in_the_middle_raises_naming_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 4)
        second = journal._offsets[1]
    data = bytearray(path.read_bytes())
    data[second + 12] ^= 0x01  # a payload byte of record 2
    path.write_bytes(bytes(data))
    with pytest.raises(ConsensusError) as err:
        CrcJournal(path)
    assert str(path) in str(err.value)
    assert f"offset {second}" in str(err.value)
    assert err.value.hint


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    path.write_bytes(b"PYSYNCOBJ" + b"\x00" * 40)
    with pytest.raises(ConsensusError, match="not a TARS Raft journal"):
        CrcJournal(path)


def test_unreadable_meta_raises(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    CrcJournal(path).close()
    (tmp_path / "raft.journal.meta").write_bytes(b"\xc1garbage")
    with pytest.raises(ConsensusError, match="meta"):
        CrcJournal(path)


def test_no_pickle_in_journal_or_meta(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        for idx in range(1, 50):
            journal.add(b"T" + bytes(range(0x20, 0x7F)) * 3, idx, 2)
        journal.setCurrentTerm(2, "node-a")
        journal.setRaftCommitIndex(49)
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    for header in PICKLE_HEADERS:
        assert header not in blob
        assert header not in (tmp_path / "raft.journal.meta").read_bytes()


def test_delete_entries_from_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 6)
        journal.deleteEntriesFrom(3)
        journal.add(b"Tnew", 4, 2)
    with CrcJournal(path) as again:
        assert [(e[1], e[2]) for e in again] == [(1, 1), (2, 1), (3, 1), (4, 2)]


# ---- the same semantics as pysyncobj's MemoryJournal, operation for operation ---------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.binary(min_size=1, max_size=40), st.integers(0, 3)),
        st.tuples(st.just("from"), st.integers(-8, 12)),
        st.tuples(st.just("to"), st.integers(-8, 12)),
        st.tuples(st.just("reopen")),
        st.tuples(st.just("term"), st.integers(0, 50), st.sampled_from([None, "a", "b"])),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_matches_memory_journal(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "raft.journal"
    model = MemoryJournal()
    journal = CrcJournal(path)
    try:
        next_idx = 1
        for op in ops:
            if op[0] == "add":
                idx = model[-1][1] + 1 if len(model) else next_idx
                model.add(op[1], idx, op[2])
                journal.add(op[1], idx, op[2])
                next_idx = idx + 1
            elif op[0] == "from":
                model.deleteEntriesFrom(op[1])
                journal.deleteEntriesFrom(op[1])
            elif op[0] == "to":
                model.deleteEntriesTo(op[1])
                journal.deleteEntriesTo(op[1])
            elif op[0] == "term":
                model.setCurrentTerm(op[1], op[2])
                journal.setCurrentTerm(op[1], op[2])
            else:
                journal.close()
                journal = CrcJournal(path)
            assert len(journal) == len(model)
            assert list(journal) == [tuple(e) for e in model[:]]
            assert journal.getCurrentTerm() == model.getCurrentTerm()
            assert journal.getVotedForNodeId() == model.getVotedForNodeId()
            if len(model):
                assert journal[0] == model[0] and journal[-1] == model[-1]
    finally:
        journal.close()
    assert not [n for n in os.listdir(path.parent) if n.endswith(".tmp")]


# ---- the acknowledged-index mark: a cut that loses acknowledged entries is an error -----


def acknowledged_journal(path: Path, count: int) -> list[int]:
    """``count`` entries appended and synced in bursts, then a one-second tick: all marked."""
    with CrcJournal(path) as journal:
        for start in range(1, count + 1, 10):
            fill(journal, min(10, count + 1 - start), start=start)
            journal.sync()
        journal.onOneSecondTimer()
        assert journal.acknowledged == count
        return list(journal._offsets)


def test_a_journal_cut_mid_file_is_an_error_not_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    offsets = acknowledged_journal(path, 40)
    cut = offsets[20] + 7  # in the middle of record 21: it looks just like a torn append
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(ConsensusError) as err:
        CrcJournal(path)
    message = str(err.value)
    assert str(path) in message
    assert "up to index 40" in message  # the last acknowledged index
    assert "end at index 20" in message and f"offset {offsets[20]}" in message  # what was found
    assert "tars node repair" in (err.value.hint or "")
    assert path.read_bytes() == data[:cut], "the damaged file is left as found"


def test_a_journal_cut_at_a_record_boundary_is_an_error_too(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    offsets = acknowledged_journal(path, 12)
    path.write_bytes(path.read_bytes()[: offsets[5]])
    with pytest.raises(ConsensusError, match="up to index 12.*end at index 5"):
        CrcJournal(path)


def test_a_journal_cut_to_its_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    offsets = acknowledged_journal(path, 3)
    path.write_bytes(path.read_bytes()[: offsets[0]])
    with pytest.raises(ConsensusError, match="holds no intact record"):
        CrcJournal(path)


def test_an_unacknowledged_torn_last_record_still_recovers(tmp_path: Path) -> None:
    """Entries appended after the last finished fdatasync were never acknowledged."""
    path = tmp_path / "raft.journal"
    acknowledged_journal(path, 10)
    with CrcJournal(path) as journal:
        fill(journal, 1, start=11)  # appended, never synced: the node crashed mid-append
        torn_at = journal._offsets[-1]
        journal._closed = True  # a crash: no close-time sync
        os.close(journal._fd)
    data = path.read_bytes()
    path.write_bytes(data[: torn_at + 5])
    with CrcJournal(path) as again:
        assert [e[1] for e in again] == list(range(1, 11))
        assert again.truncated_tail_bytes == 5
        assert again.acknowledged == 10


def test_the_mark_never_names_an_entry_that_was_not_synced(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    with CrcJournal(path) as journal:
        fill(journal, 5)
        assert journal.acknowledged == 0
        journal.sync()  # entries 1-5 durable; the mark follows with the next fdatasync
        assert journal.acknowledged == 0
        fill(journal, 5, start=6)
        journal.sync()
        assert journal.acknowledged == 5
        journal.onOneSecondTimer()
        assert journal.acknowledged == 10
        syncs = journal.syncs
        journal.onOneSecondTimer()  # nothing new: no fsync
        assert journal.syncs == syncs


def test_raft_dropping_acknowledged_entries_lowers_the_mark(tmp_path: Path) -> None:
    """A new leader may overwrite an acknowledged but uncommitted suffix: not damage."""
    path = tmp_path / "raft.journal"
    acknowledged_journal(path, 10)
    with CrcJournal(path) as journal:
        journal.deleteEntriesFrom(6)
        assert journal.acknowledged == 6
    with CrcJournal(path) as again:
        assert [e[1] for e in again] == list(range(1, 7))
        again.add(b"Tnew", 7, 2)
        again.sync()
    with CrcJournal(path) as third:
        assert third[-1] == (b"Tnew", 7, 2)


def test_compaction_rewrites_with_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    acknowledged_journal(path, 10)
    with CrcJournal(path) as journal:
        journal.deleteEntriesTo(4)
        assert journal.acknowledged == 10
        offsets = list(journal._offsets)
    path.write_bytes(path.read_bytes()[: offsets[2] + 3])
    with pytest.raises(ConsensusError, match="up to index 10.*end at index 6"):
        CrcJournal(path)


def test_a_damaged_mark_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    acknowledged_journal(path, 3)
    data = bytearray(path.read_bytes())
    data[len(MAGIC)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ConsensusError, match="mark"):
        CrcJournal(path)


def v1_journal(path: Path, count: int) -> list[int]:
    """A journal in the first format (no mark), as TARS wrote it before the mark."""
    blob = bytearray(MAGIC_V1)
    offsets = []
    for idx in range(1, count + 1):
        offsets.append(len(blob))
        payload = msgpack.packb([idx, 1, b"T" + f"entry-{idx}".encode()], use_bin_type=True)
        blob += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    path.write_bytes(bytes(blob))
    return offsets


def test_a_journal_without_the_mark_reads_and_recovers_as_before(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    offsets = v1_journal(path, 8)
    path.write_bytes(path.read_bytes()[: offsets[5] + 6])  # cut: a torn tail, as before
    with CrcJournal(path) as journal:
        assert journal.acknowledged is None
        assert [e[1] for e in journal] == [1, 2, 3, 4, 5]
        assert journal.truncated_tail_bytes == 6
        journal.add(b"T6", 6, 1)
        journal.sync()
    assert path.read_bytes().startswith(MAGIC_V1)
    with CrcJournal(path) as again:
        assert [e[1] for e in again] == [1, 2, 3, 4, 5, 6]
        again.deleteEntriesTo(2)  # compaction rewrites it in the current format, marked
    assert path.read_bytes().startswith(MAGIC)
    with CrcJournal(path) as third:
        assert third.acknowledged == 6 and [e[1] for e in third] == [3, 4, 5, 6]
