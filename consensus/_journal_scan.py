"""Reading a Raft journal file (``consensus.journal``): its records, its mark, and what a cut lost.

Pure functions over the file's bytes, so the journal class keeps the writing side and
these can be read (and tested) on their own.  The format is described in
:mod:`consensus.journal`; the rules here are the ones that tell a torn tail (an append
never acknowledged: truncated with a warning by the caller) from damage to acknowledged
history (an error naming the file, the offset or the mark, and the repair):

* a bad record followed by intact ones is damage in the middle of the file;
* intact records that end below the acknowledged-index mark lost acknowledged entries,
  whether the file was cut mid-record or at a record boundary;
* indexes must follow one another.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import msgpack

from evolution.errors import ConsensusError

#: The current format: magic, then the acknowledged-index mark, then records.
MAGIC = b"TRSRJ\x00\x02\n"
#: The first format: magic, then records (no mark); still read, rewritten on compaction.
MAGIC_V1 = b"TRSRJ\x00\x01\n"
HEADER = struct.Struct("<II")
MARK = struct.Struct("<QII")
#: Where records begin in the current format.
START = len(MAGIC) + MARK.size
MAX_RECORD = 1 << 30
REPAIR = "tars node repair --config <cluster.yml> --id <node>"
_REPAIR_HINT = (
    f"stop the node and run `{REPAIR}`: it moves the journal and the store aside (never "
    "deleting them) and the node rebuilds from the swarm; the damaged file is left as found"
)

Entry = tuple[bytes, int, int]


class Scanned(NamedTuple):
    entries: list[Entry]
    offsets: list[int]
    #: where the intact records end (anything after it is a torn tail)
    end: int
    #: the acknowledged-index mark; None for a first-format journal
    acknowledged: int | None
    #: where records begin
    start: int


def encode_record(command: bytes, idx: int, term: int) -> bytes:
    payload = msgpack.packb([idx, term, command], use_bin_type=True)
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def mark_bytes(index: int) -> bytes:
    """The mark as stored: ``<u64 index><u32 crc32 of the index bytes><u32 0>``."""
    return MARK.pack(index, zlib.crc32(struct.pack("<Q", index)), 0)


def is_header_prefix(data: bytes) -> bool:
    """Whether a file shorter than a header is one cut before its header reached the disk."""
    head = data[: len(MAGIC)]
    return MAGIC.startswith(head) or MAGIC_V1.startswith(head)


def scan(path: Path, data: bytes) -> Scanned:
    """Every intact record of a journal file with a full header; raise on damage."""
    if data.startswith(MAGIC_V1):
        acknowledged, start = None, len(MAGIC_V1)
    elif data[: len(MAGIC)] == MAGIC:
        acknowledged, start = _read_mark(path, data), START
    else:
        raise ConsensusError(
            f"{path} is not a TARS Raft journal (bad magic at offset 0)",
            hint="point journal_path at a TARS journal, or at a new file",
        )
    entries: list[Entry] = []
    offsets: list[int] = []
    offset = start
    while offset < len(data):
        parsed = parse_at(data, offset)
        if parsed is None:
            if later_record_is_valid(data, offset):
                raise ConsensusError(
                    f"Raft journal {path} is corrupt at offset {offset}: a record fails its "
                    "length/CRC check but later records are intact",
                    hint=f"acknowledged entries are damaged: {_REPAIR_HINT}",
                )
            break
        entry, nxt = parsed
        if entries and entry[1] != entries[-1][1] + 1:
            raise ConsensusError(
                f"Raft journal {path} is inconsistent at offset {offset}: index {entry[1]} "
                f"follows {entries[-1][1]}",
                hint=f"the file was edited or mixed with another journal: {_REPAIR_HINT}",
            )
        entries.append(entry)
        offsets.append(offset)
        offset = nxt
    found = Scanned(entries, offsets, offset, acknowledged, start)
    _check_acknowledged(path, data, found)
    return found


def _read_mark(path: Path, data: bytes) -> int:
    if len(data) < START:
        return 0  # the caller starts such a file afresh
    index, crc, _ = MARK.unpack_from(data, len(MAGIC))
    if zlib.crc32(struct.pack("<Q", index)) != crc:
        raise ConsensusError(
            f"Raft journal {path}: its acknowledged-index mark (offset {len(MAGIC)}) fails its "
            "CRC, so which entries were acknowledged is unknown",
            hint=f"the journal is damaged: {_REPAIR_HINT}",
        )
    return int(index)


def _check_acknowledged(path: Path, data: bytes, found: Scanned) -> None:
    """Entries up to the mark were on disk: ending below it is lost history, not a torn tail."""
    last = found.entries[-1][1] if found.entries else 0
    if not found.acknowledged or last >= found.acknowledged:
        return
    what = (
        f"its intact records end at index {last} (offset {found.end})"
        if found.entries
        else "it holds no intact record"
    )
    rest = len(data) - found.end
    raise ConsensusError(
        f"Raft journal {path} lost acknowledged entries: it was durable up to index "
        f"{found.acknowledged}, but {what}"
        + (f", followed by {rest} unreadable bytes" if rest else " and the file ends there")
        + " — it was truncated or damaged",
        hint=f"this node may have acknowledged those entries to a leader, so it must not go on "
        f"without them: {_REPAIR_HINT}",
    )


def parse_at(data: bytes, offset: int) -> tuple[Entry, int] | None:
    """Decode the record at ``offset``; None if it is torn, short or fails its CRC."""
    if offset + HEADER.size > len(data):
        return None
    length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    if length == 0 or length > MAX_RECORD or start + length > len(data):
        return None
    payload = data[start : start + length]
    if zlib.crc32(payload) != crc:
        return None
    try:
        idx, term, command = msgpack.unpackb(payload, raw=False)
    except Exception:
        return None
    if not (isinstance(idx, int) and isinstance(term, int) and isinstance(command, bytes)):
        return None
    return (command, idx, term), start + length


def later_record_is_valid(data: bytes, offset: int) -> bool:
    """Whether any well-formed record follows a bad one (then the damage is mid-file)."""
    if offset + HEADER.size > len(data):
        return False
    length, _crc = HEADER.unpack_from(data, offset)
    nxt = offset + HEADER.size + length
    if length == 0 or length > MAX_RECORD or nxt >= len(data):
        return False
    while nxt < len(data):
        parsed = parse_at(data, nxt)
        if parsed is None:
            return False
        nxt = parsed[1]
    return True
