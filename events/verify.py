"""``tars log verify`` and a node's start-up check: stored events and snapshots held against the hash chain.

Both judge the bytes on disk, not what the domain makes of them: they walk the raw stored
events in store order, check each lineage's positions are dense and start with
``Registered``, check every link with :func:`events.chain.check_link` (the check the
state-transfer import runs too), and name the first bad event.  Then each snapshot is
held against the log.

:func:`verify` walks everything, every time.  :func:`check` is what a node runs before it
starts (``GenomeStore.check``), and must stay fast as history grows (about 0.3 s for
100,000 events where the full walk takes 2.4 s): it runs SQLite's ``PRAGMA quick_check``
(the file's structure: pages, B-trees, records), then holds the events up to the *mark*
— a small file written after the last check, see :class:`Mark` — against the digest of
their raw bytes the mark recorded (one hash over the rows, nothing decoded), and walks
the chain only from the mark on, from the chain heads it recorded.  A byte changed
anywhere in verified history changes the digest; a digest that differs is then walked in
full to name the first bad event.  Snapshots the mark knows are held against their
recorded digests, new ones against the chain.  A store that comes back empty although
the mark says it held events was deleted or replaced by a new one (the node rebuilds it
from the ledger), which is not damage: the mark is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast
from uuid import UUID

import msgpack

from events._eventsourcing import ProcessRecorder, RawRow, sqlite_quick_check, translated
from events.application import GenomesApplication
from events.chain import GENESIS, ChainMismatch, UndecodableEvent, check_link, event_type
from events.listing import LogReader
from events.names import GenomeNames
from events.records import VerifyReport
from events.transcoder import unpackb
from evolution.errors import IntegrityError
from evolution.tree import version_id

__all__ = ["INTEGRITY_HINT", "Mark", "StoreCheck", "check", "verify"]

logger = logging.getLogger(__name__)

INTEGRITY_HINT = "the store was changed outside TARS; rebuild it from the ledger and the peers, or restore a backup"

#: Lineage id (32 hex) -> (last position, last chain link).
Heads = dict[str, tuple[int, str]]


def verify(app: GenomesApplication, names: GenomeNames, reader: LogReader) -> VerifyReport:
    """Recompute every chain from the raw stored rows; raise naming the first bad event."""
    names.refresh()
    wanted = _snapshot_rows(app, names)
    walk = _Walk(names, {}, {ident: set(rows) for ident, rows in wanted.items()})
    for row in reader.rows(1):
        walk.feed(row)
    snapshots = _check_snapshots(names, wanted, walk.heads, walk.chains_at)
    return VerifyReport(
        events=walk.count,
        genomes=len(walk.heads),
        snapshots=snapshots,
        heads={names.label(UUID(ident)): chain for ident, (_, chain) in walk.heads.items()},
    )


class _Walk:
    """The chain walk over raw rows in store order, from given heads (GENESIS if none)."""

    def __init__(self, names: GenomeNames, heads: Heads, wanted: dict[str, set[int]]) -> None:
        self.names = names
        self.heads = heads
        #: the chain at the positions of snapshots still to be held against the log
        self.wanted = wanted
        self.chains_at: dict[tuple[str, int], str] = {}
        self.count = 0

    def feed(self, row: RawRow) -> None:
        seq, ident, position, topic, state = row
        kind = event_type(topic)
        where = f"event seq {seq} ({kind} of {self.names.label(UUID(ident))}, position {position})"
        last, previous = self.heads.get(ident, (0, GENESIS))
        if position <= last:
            raise IntegrityError(
                f"{where}: out of order — it follows position {last}", hint=INTEGRITY_HINT
            )
        if position != last + 1:
            missing = (
                f"position {last + 1}"
                if position == last + 2
                else f"positions {last + 1}–{position - 1}"
            )
            raise IntegrityError(
                f"{where}: {missing} missing — events were removed", hint=INTEGRITY_HINT
            )
        try:
            _, stored = check_link(previous, kind, UUID(ident), position, state)
        except UndecodableEvent as exc:
            raise IntegrityError(f"{where}: no longer decodes ({exc})", hint=INTEGRITY_HINT) from (
                exc.__cause__
            )
        except ChainMismatch as exc:
            raise IntegrityError(f"{where}: {exc}", hint=INTEGRITY_HINT) from None
        if position == 1 and kind != "Registered":
            raise IntegrityError(
                f"{where}: a lineage must start with Registered", hint=INTEGRITY_HINT
            )
        self.heads[ident] = (position, stored)
        if position in self.wanted.get(ident, ()):
            self.chains_at[(ident, position)] = stored
        self.count += 1


def _snapshot_rows(app: GenomesApplication, names: GenomeNames) -> dict[str, dict[int, bytes]]:
    """Raw snapshot states per lineage (32 hex) and position, to hold against the log."""
    store = app.snapshots
    if store is None:
        return {}
    return {
        ident.hex: {
            row.originator_version: row.state for row in store.recorder.select_events(ident)
        }
        for ident in names.by_id
    }


def _check_snapshots(
    names: GenomeNames,
    wanted: dict[str, dict[int, bytes]],
    heads: Heads,
    chains_at: dict[tuple[str, int], str],
) -> int:
    checked = 0
    for ident, rows in wanted.items():
        last = heads.get(ident, (0, GENESIS))[0]
        for position, raw in sorted(rows.items()):
            where = f"snapshot of {names.label(UUID(ident))} at position {position}"
            if position > last:
                raise IntegrityError(
                    f"{where}: the log ends at position {last} — events were removed from its end",
                    hint=INTEGRITY_HINT,
                )
            try:
                state = unpackb(raw)["state"]
                matches = (
                    state["chain"] == chains_at.get((ident, position))
                    and version_id(state["head_tree"]) == state["head"]
                )
            except Exception as exc:
                raise IntegrityError(
                    f"{where}: no longer decodes ({exc})", hint=INTEGRITY_HINT
                ) from exc
            if not matches:
                raise IntegrityError(
                    f"{where}: does not match the log",
                    hint="snapshots are only a shortcut: delete the stored snapshots and they are taken again",
                )
            checked += 1
    return checked


# ---- the start-up check ---------------------------------------------------------------


class Mark(NamedTuple):
    """What the last check verified, kept in a small file (msgpack) beside the node's state.

    ``seq``/``events``/``digest``: the last event's sequence number, the number of events
    up to it and a BLAKE2b digest of their raw rows in store order; ``heads``: each
    lineage's last position and chain link there; ``snapshots``: lineage -> position ->
    digest of the stored snapshot; ``tracking``: ledger name -> applied index.
    """

    seq: int
    events: int
    digest: str
    heads: Heads
    snapshots: dict[str, dict[int, str]]
    tracking: dict[str, int]


class StoreCheck(NamedTuple):
    """What :func:`check` found: all of it sound, or it would have raised."""

    events: int
    #: events checked against the mark's digest (no decoding) and walked link by link
    digested: int
    walked: int
    snapshots: int
    #: ``ok``, or why SQLite's quick_check was not run (another backend)
    quick_check: str

    def __str__(self) -> str:
        return (
            f"{self.events} events sound ({self.digested} held against the last check's digest, "
            f"{self.walked} walked), {self.snapshots} snapshot(s); quick_check: {self.quick_check}"
        )


def check(
    app: GenomesApplication,
    names: GenomeNames,
    reader: LogReader,
    url: str,
    mark_path: Path | None,
    ledgers: Sequence[str] = (),
) -> StoreCheck:
    """Check the store since the mark (all of it without one); write the new mark; raise on damage."""
    problems = sqlite_quick_check(app.recorder)
    if problems is not None and problems != ["ok"]:
        raise IntegrityError(
            f"store {url}: SQLite's quick_check reports damage: {'; '.join(problems[:3])}",
            hint=INTEGRITY_HINT,
        )
    quick = (
        "ok" if problems is not None else "skipped (not SQLite: the database checks its own pages)"
    )
    names.refresh()
    recorder = cast(ProcessRecorder, app.recorder)
    tracking = {name: recorder.max_tracking_id(name) or 0 for name in ledgers}
    mark = _load_mark(mark_path)
    if (
        mark is not None
        and mark.seq
        and not recorder.max_notification_id()
        and not any(tracking.values())
    ):
        logger.warning(
            "store %s is empty but %s says it held %d events: it was deleted or replaced, and is "
            "checked as a new store",
            url,
            mark_path,
            mark.events,
        )
        mark = None
    hint = _hint(mark_path)
    if mark is not None:
        for name, index in mark.tracking.items():
            if tracking.get(name, index) < index:
                raise IntegrityError(
                    f"store {url}: ledger {name!r} applied up to index {index} at the last check, "
                    f"now {tracking.get(name)}",
                    hint=hint,
                )
    with translated(f"store {url}: a row cannot be read for the check", hint):
        found = _walk_from(app, names, reader, url, mark, hint)
    new = Mark(found.seq, found.events, found.digest, found.walk.heads, found.snapshots, tracking)
    if mark_path is not None:
        _store_mark(mark_path, new)
    return StoreCheck(found.events, found.digested, found.walk.count, found.checked, quick)


class _Found(NamedTuple):
    seq: int
    events: int
    digest: str
    digested: int
    walk: _Walk
    snapshots: dict[str, dict[int, str]]
    checked: int


def _walk_from(
    app: GenomesApplication,
    names: GenomeNames,
    reader: LogReader,
    url: str,
    mark: Mark | None,
    hint: str,
) -> _Found:
    snaps = _snapshot_rows(app, names)
    digests = {
        ident: {pos: hashlib.blake2b(raw, digest_size=16).hexdigest() for pos, raw in rows.items()}
        for ident, rows in snaps.items()
    }
    known = mark.snapshots if mark is not None else {}
    fresh: dict[str, dict[int, bytes]] = {}
    for ident, rows in digests.items():
        for pos, now in rows.items():
            before = known.get(ident, {}).get(pos)
            if before is None:
                fresh.setdefault(ident, {})[pos] = snaps[ident][pos]
            elif before != now:
                raise IntegrityError(
                    f"store {url}: the snapshot of {names.label(UUID(ident))} at position {pos} "
                    "changed since it was verified",
                    hint=hint,
                )
    walk = _Walk(names, dict(mark.heads) if mark else {}, {i: set(r) for i, r in fresh.items()})
    digest = hashlib.blake2b(digest_size=32)
    seq = count = digested = 0
    if mark is not None:
        for row in reader.rows(1, mark.seq):
            _absorb(digest, row)
            seq, count = row[0], count + 1
        if (count, seq, digest.hexdigest()) != (mark.events, mark.seq, mark.digest):
            verify(app, names, reader)  # names the first bad event when it can
            raise IntegrityError(
                f"store {url}: the events up to seq {mark.seq} changed since they were verified "
                f"({count} of them now, {mark.events} then)",
                hint=hint,
            )
        digested = count
    for row in reader.rows(seq + 1):
        walk.feed(row)
        _absorb(digest, row)
        seq, count = row[0], count + 1
    if any((i, p) not in walk.chains_at for i, rows in fresh.items() for p in rows):
        verify(app, names, reader)  # a snapshot older than the mark it never saw: walk it all
    else:
        _check_snapshots(names, fresh, walk.heads, walk.chains_at)
    checked = sum(len(rows) for rows in digests.values())
    return _Found(seq, count, digest.hexdigest(), digested, walk, digests, checked)


def _absorb(digest: Any, row: RawRow) -> None:
    seq, ident, position, topic, state = row
    digest.update(b"%d %s %d %s %d\n" % (seq, ident.encode(), position, topic.encode(), len(state)))
    digest.update(state)


def _hint(mark_path: Path | None) -> str:
    restored = (
        f"; if you restored an older copy of the store on purpose, delete {mark_path} and it is "
        "checked from the start"
        if mark_path is not None
        else ""
    )
    return INTEGRITY_HINT + restored


# ---- the mark file ------------------------------------------------------------------


def _load_mark(path: Path | None) -> Mark | None:
    """The mark, or None (no file yet; an unreadable one is reported and the store walked in full)."""
    if path is None or not path.exists():
        return None
    try:
        body = msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)
        return Mark(
            int(body["seq"]),
            int(body["events"]),
            str(body["digest"]),
            {str(i): (int(p), str(c)) for i, (p, c) in body["heads"].items()},
            {str(i): {int(p): str(d) for p, d in r.items()} for i, r in body["snapshots"].items()},
            {str(n): int(i) for n, i in body["tracking"].items()},
        )
    except Exception as exc:
        logger.warning("%s is unreadable (%s): the store is checked from the start", path, exc)
        return None


def _store_mark(path: Path, mark: Mark) -> None:
    """Replace the mark durably (tmp, fsync, rename, fsync of the directory)."""
    body = msgpack.packb(
        {**mark._asdict(), "heads": {i: list(h) for i, h in mark.heads.items()}},
        use_bin_type=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as stream:
        stream.write(body)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
