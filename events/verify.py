"""``tars log verify``: every stored event and snapshot held against the hash chain.

It judges the bytes on disk, not what the domain makes of them: it walks the raw stored
events in store order, checks each lineage's positions are dense and start with
``Registered``, checks every link with :func:`events.chain.check_link` (the check the
state-transfer import runs too), and names the first bad event.  Then each snapshot is
held against the log.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from events.application import GenomesApplication
from events.chain import GENESIS, ChainMismatch, UndecodableEvent, check_link, event_type
from events.listing import LogReader
from events.names import GenomeNames
from events.records import VerifyReport
from events.transcoder import unpackb
from evolution.errors import IntegrityError
from evolution.tree import version_id

__all__ = ["INTEGRITY_HINT", "verify"]

INTEGRITY_HINT = "the store was changed outside TARS; rebuild it from the ledger and the peers, or restore a backup"


def verify(app: GenomesApplication, names: GenomeNames, reader: LogReader) -> VerifyReport:
    """Recompute every chain from the raw stored rows; raise naming the first bad event."""
    names.refresh()
    wanted = _snapshot_rows(app, names)
    heads: dict[UUID, tuple[int, str]] = {}
    chains_at: dict[tuple[UUID, int], str] = {}
    count = 0
    for note in reader.notifications(1):
        kind = event_type(note.topic)
        ident = cast(UUID, note.originator_id)
        position = note.originator_version
        where = f"event seq {note.id} ({kind} of {names.label(ident)}, position {position})"
        last, previous = heads.get(ident, (0, GENESIS))
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
            _, stored = check_link(previous, kind, ident, position, note.state)
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
        heads[ident] = (position, stored)
        if position in wanted.get(ident, {}):
            chains_at[(ident, position)] = stored
        count += 1
    snapshots = _check_snapshots(names, wanted, heads, chains_at)
    return VerifyReport(
        events=count,
        genomes=len(heads),
        snapshots=snapshots,
        heads={names.label(ident): chain for ident, (_, chain) in heads.items()},
    )


def _snapshot_rows(app: GenomesApplication, names: GenomeNames) -> dict[UUID, dict[int, bytes]]:
    """Raw snapshot states per lineage and position, for ``verify`` to hold against the log."""
    store = app.snapshots
    if store is None:
        return {}
    return {
        ident: {row.originator_version: row.state for row in store.recorder.select_events(ident)}
        for ident in names.by_id
    }


def _check_snapshots(
    names: GenomeNames,
    wanted: dict[UUID, dict[int, bytes]],
    heads: dict[UUID, tuple[int, str]],
    chains_at: dict[tuple[UUID, int], str],
) -> int:
    checked = 0
    for ident, rows in wanted.items():
        last = heads.get(ident, (0, GENESIS))[0]
        for position, raw in sorted(rows.items()):
            where = f"snapshot of {names.label(ident)} at position {position}"
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
