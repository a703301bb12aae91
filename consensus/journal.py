"""A durable Raft journal for pysyncobj that never pickles and never lies about fsync.

pysyncobj's own ``FileJournal`` is an mmap that is flushed only at shutdown, and its
meta file (term, vote) is a pickle.  A Raft node that acknowledges an entry it has not
made durable can lose a committed entry when a majority crashes, so this journal
replaces it:

* ``<path>`` — an 8-byte magic, a 16-byte acknowledged-index mark (below), then
  append-only records
  ``<u32 length><u32 crc32(payload)><payload>`` where payload is msgpack
  ``[idx, term, command]``.  Writes go straight to the file descriptor; :meth:`sync`
  makes everything appended (or truncated) since the last sync durable with one
  ``fdatasync``.  The engine calls it before any Raft message leaves the node and before
  committed entries are delivered, so an acknowledgement is never sent for an entry that
  is not on disk, and one fsync covers a whole burst of appends.
* ``<path>.meta`` — msgpack ``{term, voted_for, commit_index}`` replaced atomically
  (tmp, fsync, rename, fsync dir).  Term and vote are written synchronously in
  :meth:`setCurrentTerm` because Raft forbids voting twice in a term across a restart.
  The commit index is only a hint that lets a restarted node re-deliver its committed
  prefix before it hears from a leader; it is written lazily, after a :meth:`sync`, so
  it never points past entries that are on disk.

Opening a journal checks every record.  A torn tail (a crash in the middle of an append
that was never acknowledged) is truncated with a warning; a bad record followed by good
ones is damage to acknowledged history and raises :class:`ConsensusError` naming the
file and the offset.

The acknowledged-index mark (``<u64 index><u32 crc32><u32 0>`` after the magic) tells
the two apart when the damage is a cut: it holds the last index that a finished
``fdatasync`` made durable, so every entry up to it may have been acknowledged to a
leader.  It is written in place and rides on the next ``fdatasync`` (the one that
:meth:`sync` pays anyway, or the one-second timer's), so it never names an entry that is
not on disk and costs no extra fsync on the commit path; a truncation lowers it durably
first.  A journal whose intact records end below its mark lost acknowledged entries:
opening it raises, naming the file, the mark and what was found, instead of truncating
it as a torn tail.  The window the mark does not cover is the last burst before a crash
(at most a second of entries).  Journals of the first format (``MAGIC_V1``, no mark) are
read as before and get the mark when compaction next rewrites them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
from pysyncobj.journal import Journal

from consensus._journal_scan import (
    MAGIC,
    MAGIC_V1,
    REPAIR,
    START,
    Entry,
    encode_record,
    is_header_prefix,
    mark_bytes,
    scan,
)
from evolution.errors import ConsensusError

__all__ = [
    "MAGIC",
    "MAGIC_V1",
    "REPAIR",
    "CrcJournal",
    "Entry",
    "atomic_write",
    "check_journal",
    "fsync_dir",
]

logger = logging.getLogger(__name__)


def fsync_dir(path: Path) -> None:
    """Make a create/rename/truncate of ``path`` itself durable (its directory entry)."""
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` durably: tmp, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path)


class CrcJournal(Journal):
    """pysyncobj ``Journal`` over a CRC-checked, msgpack, fsync-on-demand file.

    Method names are pysyncobj's (camelCase) because pysyncobj calls them.  Everything
    here runs on the engine's single driver thread, so there is no locking.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta")
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        self._dirty = False
        self._closed = False
        self.syncs = 0
        self.truncated_tail_bytes = 0
        #: the mark on disk (None: a first-format journal), and the last index that a
        #: finished fdatasync made durable (what the next mark write records)
        self.acknowledged: int | None = 0
        self._durable = 0
        self._start = START
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._load_meta()
        self._fd = self._open_log()

    # ---- opening -------------------------------------------------------------------

    def _load_meta(self) -> None:
        self._term = 0
        self._voted_for: Any = None
        self._commit_index = 1
        self._meta_saved_commit = 1
        if not self.meta_path.exists():
            return
        raw = self.meta_path.read_bytes()
        try:
            meta = msgpack.unpackb(raw, raw=False)
            term = int(meta["term"])
            commit = int(meta["commit_index"])
            voted = meta["voted_for"]
        except Exception as exc:
            raise ConsensusError(
                f"Raft meta file {self.meta_path} is unreadable ({exc})",
                hint="it is replaced atomically, so this is disk damage or a foreign file; "
                "move it away only if this node's vote in the current term does not matter "
                "(e.g. the whole swarm is stopped)",
            ) from exc
        self._term = term
        self._voted_for = voted
        self._commit_index = commit
        self._meta_saved_commit = commit

    def _open_log(self) -> int:
        fresh = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            data = b""
            if not fresh:
                with open(fd, "rb", closefd=False) as f:
                    data = f.read()
            if len(data) < START and not data.startswith(MAGIC_V1):
                if data and not is_header_prefix(data):
                    scan(self.path, data)  # raises: not a TARS journal
                # New file, or a crash before the header reached the disk: start clean.
                os.ftruncate(fd, 0)
                os.pwrite(fd, MAGIC + mark_bytes(0), 0)
                os.fsync(fd)
                fsync_dir(self.path)
                self._end = START
                return fd
            found = scan(self.path, data)
            self._entries, self._offsets = found.entries, found.offsets
            self._end, self._start, self.acknowledged = found.end, found.start, found.acknowledged
            self._durable = self._entries[-1][1] if self._entries else 0
            if self._end < len(data):
                self.truncated_tail_bytes = len(data) - self._end
                logger.warning(
                    "Raft journal %s: torn record at offset %d (%d bytes) truncated; "
                    "it was never acknowledged (crash during an append)",
                    self.path,
                    self._end,
                    len(data) - self._end,
                )
                os.ftruncate(fd, self._end)
                os.fsync(fd)
            return fd
        except BaseException:
            os.close(fd)
            raise

    # ---- durability ------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._dirty

    def sync(self) -> None:
        """One fdatasync for everything appended or truncated since the last one.

        The acknowledged-index mark of the previous sync is written first and rides on the
        same fdatasync: it names entries already durable, so it never outruns the disk.
        """
        if self._dirty and not self._closed:
            self._write_mark()
            os.fdatasync(self._fd)
            self._dirty = False
            self.syncs += 1
            self._durable = self._entries[-1][1] if self._entries else 0

    def _write_mark(self, index: int | None = None) -> None:
        """Put the mark (by default: what the last finished fdatasync covered) in the header."""
        index = self._durable if index is None else index
        if self.acknowledged is None or index == self.acknowledged:
            return
        os.pwrite(self._fd, mark_bytes(index), len(MAGIC))
        self.acknowledged = index

    def flush(self) -> None:
        self.sync()

    def _store_meta(self) -> None:
        body = {
            "term": self._term,
            "voted_for": self._voted_for,
            "commit_index": self._commit_index,
        }
        atomic_write(self.meta_path, msgpack.packb(body, use_bin_type=True))
        self._meta_saved_commit = self._commit_index

    # ---- pysyncobj Journal interface -----------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        record = encode_record(command, idx, term)
        written = os.pwrite(self._fd, record, self._end)
        if written != len(record):
            raise ConsensusError(
                f"short write to Raft journal {self.path} at offset {self._end}",
                hint="the disk is probably full; free space and restart the node",
            )
        self._offsets.append(self._end)
        self._entries.append((command, idx, term))
        self._end += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._truncate_at(0)

    def _truncate_at(self, position: int) -> None:
        if position >= len(self._entries):
            return
        # Raft may drop entries it acknowledged (a new leader overwrites an uncommitted
        # suffix): lower the mark durably before the cut can reach the disk.
        last = self._entries[position - 1][1] if position > 0 else 0
        if self.acknowledged is not None and self.acknowledged > last:
            self._write_mark(last)
            os.fdatasync(self._fd)
        self._durable = min(self._durable, last)
        self._end = self._offsets[position] if position > 0 else self._start
        del self._entries[position:]
        del self._offsets[position:]
        os.ftruncate(self._fd, self._end)
        self._dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        start, _stop, _step = slice(entryFrom, None).indices(len(self._entries))
        self._truncate_at(start)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the first entries (log compaction); rewrites the file atomically."""
        keep = self._entries[slice(entryTo, None)]
        self.sync()
        # Everything kept is durable now, so the rewritten file is marked up to its end
        # (a first-format journal takes the current format here).
        self._durable = keep[-1][1] if keep else 0
        self.acknowledged = self._durable
        blob = bytearray(MAGIC + mark_bytes(self._durable))
        self._start = START
        offsets = []
        for command, idx, term in keep:
            offsets.append(len(blob))
            blob += encode_record(command, idx, term)
        os.close(self._fd)
        atomic_write(self.path, bytes(blob))
        self._fd = os.open(self.path, os.O_RDWR)
        self._entries = list(keep)
        self._offsets = offsets
        self._end = len(blob)

    def __getitem__(self, item: int | slice) -> Any:
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def _destroy(self) -> None:
        self.close()

    def close(self) -> None:
        """Make everything durable and release the file; safe to call twice."""
        if self._closed:
            return
        try:
            self.sync()
            if self._commit_index != self._meta_saved_commit:
                self._store_meta()
        finally:
            self._closed = True
            os.close(self._fd)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        self._commit_index = int(raftCommitIndex)

    def getRaftCommitIndex(self) -> int:
        return self._commit_index

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        self._term = int(term)
        self._voted_for = votedForNodeId
        # Entries are synced first so the stored commit index never outruns the disk.
        self.sync()
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> Any:
        return self._voted_for

    def onOneSecondTimer(self) -> None:
        if self._closed:
            return
        if self.acknowledged is not None and self.acknowledged != self._durable:
            self._dirty = True  # the mark of the last burst: one fdatasync a second at most
        self.sync()
        if self._commit_index != self._meta_saved_commit:
            self._store_meta()

    def __enter__(self) -> CrcJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.close()


def check_journal(path: Path, repair: str, who: str) -> None:
    """Open and close the journal at ``path`` if there is one: damage raises before a node
    listens, saying ``who`` refuses and naming ``repair`` (the node's own command line)."""
    if not path.exists():
        return
    try:
        CrcJournal(path).close()
    except ConsensusError as exc:
        hint = (exc.hint or "").replace(REPAIR, repair) or f"run `{repair}`"
        raise ConsensusError(f"{who}: {exc}", hint=hint) from exc
