"""What the MCP server reads from a store: genomes, the log, lineage, diffs, versions.

Each function takes an open :class:`~events.store.GenomeStore` (the server opens the
store read-only per call, as `tars log` does) and returns plain JSON-able values, so the
same function answers a tool call and a resource read.  Every argument a caller typed is
checked here and a bad one raises a :class:`TarsError` that names the argument, says what
was wrong and how to fix it: an agent reads that message and retries, it never sees a
traceback.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.log import _summary_of
from evolution.errors import TarsError, UnknownGenomeError, UnknownVersionError

if TYPE_CHECKING:
    from events.store import GenomeStore, LogRow

#: Events a log query returns unless asked for another number (and at most MAX_EVENTS).
DEFAULT_EVENTS = 50
MAX_EVENTS = 1000
#: Fields of an event's data never sent whole: trees are for replay, not for reading.
_BULKY = frozenset({"tree", "manifest_text"})
_NS = 1_000_000_000


def genome_name(store: GenomeStore, genome: str, argument: str = "genome") -> str:
    """``genome`` if the store holds it; else an error naming the argument and the genomes here."""
    names = store.genomes()
    if genome not in names:
        raise UnknownGenomeError(
            f"argument {argument!r}: genome {genome!r} is not in the store",
            hint=f"pass one of: {', '.join(names) or 'none yet (run cycles on a genome folder)'}",
        )
    return genome


def version_of(store: GenomeStore, genome: str, version: str, argument: str) -> str:
    """The full id of a version given by a unique prefix; errors name ``argument``."""
    text = version.strip().lower()
    if not text or any(c not in "0123456789abcdef" for c in text):
        raise UnknownVersionError(
            f"argument {argument!r}: {version!r} is not a version id (hexadecimal characters)",
            hint="pass a version id or a unique prefix of one, as the `lineage` tool lists them",
        )
    try:
        return store.resolve(genome, text)
    except UnknownVersionError as exc:
        raise UnknownVersionError(
            f"argument {argument!r}: {exc.message}",
            hint=exc.hint
            if "ambiguous" in exc.message
            else "the `lineage` tool lists the versions of the genome",
        ) from exc


def genomes(store: GenomeStore) -> list[dict[str, Any]]:
    """Each genome's head: version, fitness, versions, cycles, and what waits for a human."""
    rows = []
    for name in store.genomes():
        head = store.head(name)
        rows.append(
            {
                "genome": name,
                "head": head.version,
                "fitness": head.fitness,
                "versions": head.versions_count,
                "cycles": head.cycles_completed,
                "held": sorted(head.pending),
                "proposals": sorted(head.proposals),
            }
        )
    return rows


def lineage(store: GenomeStore, genome: str) -> dict[str, Any]:
    """The version tree of ``genome``: each version with its parent, mutator and fitness."""
    from events.projections import lineage as lineage_of

    name = genome_name(store, genome)
    head = store.head(name).version
    return {
        "genome": name,
        "head": head,
        "versions": [
            {
                "version": node.version,
                "parent": node.parent,
                "mutator": node.mutator or "registered",
                "kind": node.kind,
                "fitness": node.fitness,
                "seq": node.seq,
                "rolled_back": node.rolled_back,
                "head": node.version == head,
            }
            for node in lineage_of(store.log(genome=name))
        ],
    }


def diff(store: GenomeStore, genome: str, old: str, new: str) -> str:
    """The unified diff from version ``old`` to version ``new`` (prefixes accepted)."""
    from evolution.patch import make_patch

    name = genome_name(store, genome)
    a = store.materialise(name, version_of(store, name, old, "a"))
    b = store.materialise(name, version_of(store, name, new, "b"))
    return make_patch(a, b)


def manifest(store: GenomeStore, genome: str) -> str:
    """The genome.toml of the genome's head, as text."""
    return store.head(genome_name(store, genome)).manifest_text


def version_info(store: GenomeStore, genome: str, version: str) -> dict[str, Any]:
    """One version: its files (path and size), parent, mutator, fitness, and the event that made it."""
    name = genome_name(store, genome)
    full = version_of(store, name, version, "version")
    tree = store.materialise(name, full)
    made = next(
        (
            row
            for row in store.log_rows(genome=name)
            if row[3] == full and row[1] in ("Registered", "VersionAdopted")
        ),
        None,
    )
    info: dict[str, Any] = {
        "genome": name,
        "version": full,
        "head": store.head(name).version == full,
        "files": [
            {"path": path, "bytes": len(text.encode())} for path, text in sorted(tree.items())
        ],
    }
    if made is not None:
        seq, kind, _, _, parent, time_ns, node, data, _ = made
        info.update(
            made_by=kind,
            seq=seq,
            parent=parent,
            node=node,
            time=_iso(time_ns),
            mutator=data.get("mutator"),
            fitness=data.get("fitness_after", data.get("fitness")),
            ratio=data.get("ratio"),
        )
    return info


def since_ns(since: str | None) -> int | None:
    """An ISO-8601 time (a date, or a date and time; UTC unless it says) as epoch nanoseconds."""
    if since is None or not since.strip():
        return None
    try:
        moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise TarsError(
            f"argument 'since': {since!r} is not an ISO-8601 time",
            hint="pass a time such as 2026-12-05T21:00:00Z or a date such as 2026-12-05",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * _NS)


def query_log(
    store: GenomeStore,
    *,
    genome: str | None = None,
    type: str | None = None,
    node: str | None = None,
    since: str | None = None,
    limit: int = DEFAULT_EVENTS,
    detail: bool = False,
) -> dict[str, Any]:
    """The newest ``limit`` events that match every filter given, oldest first.

    Without filters besides the genome this is the store's tail read (as `tars log ls`);
    with them the genome's log is scanned once and only the newest matches are kept.
    """
    if not 1 <= limit <= MAX_EVENTS:
        raise TarsError(
            f"argument 'limit' is {limit}", hint=f"pass a number of events from 1 to {MAX_EVENTS}"
        )
    name = genome_name(store, genome) if genome is not None else None
    after = since_ns(since)
    if type is None and node is None and after is None:
        rows, earlier = store.log_tail(limit, genome=name)
        return {"events": [event_row(row, detail) for row in rows], "earlier": earlier}
    kept: deque[LogRow] = deque(maxlen=limit)
    matched = 0
    for row in store.log_rows(genome=name):
        if (
            (type is None or row[1] == type)
            and (node is None or row[6] == node)
            and (after is None or row[5] >= after)
        ):
            kept.append(row)
            matched += 1
    return {"events": [event_row(row, detail) for row in kept], "earlier": matched - len(kept)}


def event_row(row: LogRow, detail: bool = False) -> dict[str, Any]:
    """One event as JSON: its columns, a one-line summary, and with ``detail`` its data."""
    seq, kind, genome, version, parent, time_ns, node, data, _ = row
    out: dict[str, Any] = {
        "seq": seq,
        "time": _iso(time_ns),
        "type": kind,
        "genome": genome,
        "version": version,
        "parent": parent,
        "node": node,
        "summary": _summary_of(kind, data, parent),
    }
    if detail:
        out["data"] = {k: v for k, v in data.items() if k not in _BULKY}
    return out


def _iso(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns / _NS, UTC).isoformat().replace("+00:00", "Z")
