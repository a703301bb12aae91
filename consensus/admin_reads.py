"""The admin channel's read ops for the dashboard: ``log``, ``genome`` and ``version``.

The dashboard (``tars dashboard`` for a whole swarm, or a node's own) reads every node
the way `tars cluster status` does, over the admin channel with the admin key, so it
needs no file of the node and works with the Docker launcher too.  These ops only read
the node's store; their answers are plain lists and maps (msgpack on the wire) and are
bounded: a log page holds at most :data:`MAX_ROWS` events, and an event's bulky fields
(trees, manifests, patches) are left out of log rows; a version's patch comes with
``version`` alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from events.store import GenomeStore
from evolution.errors import TarsError, UnknownGenomeError

__all__ = ["MAX_ROWS", "read_ops"]

#: the most events one ``log`` answer carries
MAX_ROWS = 2000
#: the most recent candidates a ``genome`` answer lists (rejected, held) beside its versions
RECENT_CANDIDATES = 400
#: an event's fields never sent in a log row (bulky; ``version`` sends the patch)
_BULKY = {"tree", "manifest_text", "patch", "evidence", "figures"}


def read_ops(store: GenomeStore) -> dict[str, Callable[[dict[str, Any]], Any]]:
    """The read ops, to be merged into ``Admin(ops=...)``."""
    reads = _Reads(store)
    return {"log": reads.log, "genome": reads.genome, "version": reads.version}


def _slim(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _BULKY:
            continue
        if isinstance(value, str):
            out[key] = value[:400]
        elif isinstance(value, int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list) and len(value) <= 20:
            out[key] = [str(item)[:200] for item in value]
    return out


def _searchable(row: tuple[Any, ...]) -> str:
    """What a search looks in: the row's columns and every field but trees and manifests
    (a patch's text included)."""
    data = {k: v for k, v in row[7].items() if k not in ("tree", "manifest_text")}
    return f"{row[1]} {row[2]} {row[3]} {row[4]} {row[6]} {data!r}".lower()


def _row(row: tuple[Any, ...]) -> list[Any]:
    seq, kind, genome, version, parent, time_ns, node, data, _ = row
    return [seq, kind, genome, version, parent, time_ns, node, _slim(data)]


class _Reads:
    def __init__(self, store: GenomeStore) -> None:
        self.store = store

    def log(self, body: dict[str, Any]) -> dict[str, Any]:
        """Events, newest ``limit`` of those that match; ``after``: only newer ones (live)."""
        genome = body.get("genome") or None
        limit = max(1, min(int(body.get("limit") or 200), MAX_ROWS))
        after = int(body.get("after") or 0)
        kind, node = body.get("type") or None, body.get("node") or None
        text = str(body.get("q") or "").lower()
        since, until = int(body.get("since") or 0), int(body.get("until") or 0)
        filtered = bool(kind or node or text or since or until)
        try:
            if after:
                rows = [
                    _row(r)
                    for r in self.store.log_rows(genome=genome, start=after + 1, limit=MAX_ROWS)
                ]
                return {"ok": True, "rows": rows[:limit], "earlier": 0}
            if not filtered:
                tail, earlier = self.store.log_tail(limit, genome=genome)
                return {"ok": True, "rows": [_row(r) for r in tail], "earlier": earlier}
            kept: deque[list[Any]] = deque(maxlen=limit)
            matched = 0
            for raw in self.store.log_rows(genome=genome):
                if kind and raw[1] != kind or node and raw[6] != node:
                    continue
                if since and raw[5] < since or until and raw[5] > until:
                    continue
                if text and text not in _searchable(raw):
                    continue
                row = _row(raw)
                matched += 1
                kept.append(row)
        except TarsError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "rows": list(kept), "earlier": matched - len(kept)}

    def genome(self, body: dict[str, Any]) -> dict[str, Any]:
        """A genome's head, held candidates, waiting proposals and lineage (every version, and
        the most recent rejected or held candidates), with each version's figures."""
        name = str(body.get("genome") or "")
        try:
            head = self.store.head(name)
        except (UnknownGenomeError, TarsError) as exc:
            return {"ok": False, "error": str(exc)}
        versions: dict[str, list[Any]] = {}
        candidates: deque[list[Any]] = deque(maxlen=RECENT_CANDIDATES)
        rollbacks: list[list[Any]] = []
        for seq, kind, _, version, parent, time_ns, node, data, _ in self.store.log_rows(
            genome=name
        ):
            if kind == "Registered" and version is not None:
                versions.setdefault(
                    version, [version, None, "registered", data.get("fitness"), seq, time_ns, node, "adopted", {}, None]
                )  # fmt: skip
            elif kind == "VersionAdopted" and version is not None:
                figures = _figures((data.get("evidence") or {}).get("figures"), "candidate")
                if version in versions:
                    versions[version][7] = "adopted"
                else:
                    versions[version] = [
                        version, parent, data.get("mutator"), data.get("fitness_after"), seq,
                        time_ns, node, "adopted", figures, data.get("ratio"),
                    ]  # fmt: skip
                    _first_figures(versions, parent, data)
            elif kind == "RolledBack" and parent is not None and version is not None:
                rollbacks.append([seq, parent, version, data.get("reason"), time_ns, node])
                _mark_rolled_back(versions, parent, version)
            elif kind == "CandidateEvaluated" and data.get("verdict") != "adopt":
                candidates.append([version, parent, data.get("mutator"), data.get("verdict"),
                                   data.get("ratio"), seq, time_ns])  # fmt: skip
            elif kind in ("ProposalRejected", "ApprovalRequested"):
                verdict = "rejected" if kind == "ProposalRejected" else "held"
                candidates.append([version, parent, data.get("mutator"), verdict,
                                   data.get("ratio"), seq, time_ns])  # fmt: skip
        pending = [
            {"candidate": held.candidate, "parent": held.parent, "mutator": held.mutator,
             "kind": held.kind, "reasons": list(held.reasons), "evidence": _plain(held.evidence)}
            for held in head.pending.values()
        ]  # fmt: skip
        return {
            "ok": True,
            "genome": name,
            "head": head.version,
            "fitness": head.fitness,
            "versions_count": head.versions_count,
            "cycles": head.cycles_completed,
            "manifest": head.manifest_text,
            "pending": pending,
            "proposals": _plain(head.proposals),
            "versions": list(versions.values()),
            "candidates": list(candidates),
            "rollbacks": rollbacks,
        }

    def version(self, body: dict[str, Any]) -> dict[str, Any]:
        """Every event about one version or candidate (a prefix will do): its patch, its
        evidence (tests, A/B interval or counts, figures), the votes and who cast them."""
        name, wanted = str(body.get("genome") or ""), str(body.get("version") or "").lower()
        if len(wanted) < 6:
            return {"ok": False, "error": "give at least 6 characters of the version"}
        events: list[dict[str, Any]] = []
        try:
            for seq, kind, _, version, parent, time_ns, node, data, _ in self.store.log_rows(
                genome=name
            ):
                ids = (
                    version or "",
                    str(data.get("proposal") or ""),
                    str(data.get("candidate") or ""),
                )
                if not any(i.startswith(wanted) for i in ids if i):
                    continue
                fields = {k: v for k, v in data.items() if k not in ("tree", "manifest_text")}
                events.append({"seq": seq, "type": kind, "version": version, "parent": parent,
                               "time_ns": time_ns, "node": node, "data": _plain(fields)})  # fmt: skip
        except TarsError as exc:
            return {"ok": False, "error": str(exc)}
        if not events:
            return {"ok": False, "error": f"no event of {name} names a version {wanted}"}
        return {"ok": True, "genome": name, "events": events[-200:]}


def _figures(figures: Any, side: str) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(figures, dict):
        for key, row in figures.items():
            if isinstance(row, dict) and isinstance(row.get(side), int | float):
                out[str(key)] = float(row[side])
    return out


def _first_figures(
    versions: dict[str, list[Any]], parent: str | None, data: dict[str, Any]
) -> None:
    """The registered version's figures, read from its first child's ``parent`` side."""
    row = versions.get(parent or "")
    if row is not None and not row[8]:
        row[8] = _figures((data.get("evidence") or {}).get("figures"), "parent")


def _mark_rolled_back(versions: dict[str, list[Any]], start: str, target: str) -> None:
    current: str | None = start
    seen: set[str] = set()
    while current is not None and current != target and current not in seen:
        seen.add(current)
        row = versions.get(current)
        if row is None:
            return
        row[7] = "rolled_back"
        current = row[1]


def _plain(value: Any) -> Any:
    """A value as msgpack carries it (tuples as lists, keys as text, others as text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
