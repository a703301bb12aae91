"""The snapshot file: what a compacted Raft log keeps of everything before its start.

pysyncobj compacts by pickling the whole object into a "full dump" file and ships that
file to a follower whose log no longer overlaps the leader's.  Here the dump is a small
manifest instead, never a pickle:

``MAGIC, <u32 crc32(payload)>, payload`` with payload msgpack
``{"index", "term", "entries": [[command, idx, term] × 2], "members": [...], "state"}``

* ``entries`` are the last two log entries the snapshot covers (pysyncobj keeps them as
  the new start of its log, so the next append_entries has a previous entry to match);
* ``members`` is the Raft membership when the snapshot was taken;
* ``state`` is the application's blob (the ledger's member list); the application's
  bulk state (the event store) is fetched from a peer over its own channel.

The same bytes are what a leader sends a lagging follower, so :func:`decode` is also
the wire check of a snapshot offer: anything malformed raises :class:`ConsensusError`.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import msgpack

from consensus.journal import atomic_write, fsync_dir
from evolution.errors import ConsensusError

MAGIC = b"TRSSNAP1"
_CRC = struct.Struct("<I")
#: A manifest holds two log entries (each at most a few MiB) and a small blob.
MAX_BYTES = 64 << 20

Entry = tuple[bytes, int, int]


class Manifest(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    term: int
    entries: tuple[Entry, Entry]
    members: list[str]
    state: bytes


def encode(entries: Sequence[Entry], members: Sequence[str], state: bytes) -> bytes:
    """The file bytes of a snapshot ending at ``entries[-1]`` (``entries``: the last two)."""
    if len(entries) != 2 or entries[1][1] != entries[0][1] + 1:
        raise ConsensusError(
            f"a snapshot needs two consecutive entries, got {[e[1] for e in entries]}"
        )
    last = entries[1]
    payload = msgpack.packb(
        {
            "index": last[1],
            "term": last[2],
            "entries": [[bytes(c), i, t] for c, i, t in entries],
            "members": sorted(members),
            "state": bytes(state),
        },
        use_bin_type=True,
    )
    return MAGIC + _CRC.pack(zlib.crc32(payload)) + payload


def decode(data: bytes, where: str, command_ok: Callable[[Any], bool]) -> Manifest:
    """Parse and check snapshot bytes; ``where`` names the file or the peer in errors."""
    head = len(MAGIC) + _CRC.size
    if len(data) > MAX_BYTES:
        raise ConsensusError(
            f"snapshot from {where} is {len(data)} bytes, over the {MAX_BYTES} limit"
        )
    if len(data) < head or data[: len(MAGIC)] != MAGIC:
        raise ConsensusError(f"snapshot from {where} is not a TARS snapshot (bad magic)")
    payload = data[head:]
    if _CRC.unpack(data[len(MAGIC) : head])[0] != zlib.crc32(payload):
        raise ConsensusError(f"snapshot from {where} is damaged (CRC mismatch)")
    try:
        body = msgpack.unpackb(payload, raw=False)
        index, term, state = body["index"], body["term"], body["state"]
        raw_entries, members = body["entries"], body["members"]
        entries = tuple((bytes(c), i, t) for c, i, t in raw_entries)
    except Exception as exc:
        raise ConsensusError(f"snapshot from {where} does not decode: {exc}") from exc
    ok = (
        type(index) is int
        and type(term) is int
        and isinstance(state, bytes)
        and isinstance(members, list)
        and all(isinstance(m, str) for m in members)
        and len(entries) == 2
        and all(command_ok(c) and type(i) is int and type(t) is int for c, i, t in entries)
        and entries[1][1] == index
        and entries[0][1] == index - 1
        and entries[1][2] == term
    )
    if not ok:
        raise ConsensusError(f"snapshot from {where} is malformed")
    return Manifest(index, term, (entries[0], entries[1]), members, state)


def write(path: Path, data: bytes) -> None:
    """Replace the snapshot file durably (tmp, fsync, rename, fsync of the directory)."""
    atomic_write(path, data)


def read(path: Path, command_ok: Callable[[Any], bool]) -> Manifest:
    """Read and check the snapshot file, and make sure it is on disk (it may have just
    been received: pysyncobj renames an incoming snapshot into place without fsync)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = b""
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path)
    return decode(data, str(path), command_ok)
