"""Read models computed from the log: lineage tree, fitness history, mutator statistics.

Pure functions over :class:`~events.records.LogEntry` iterables, so they work on
``GenomeStore.log()``, on an exported file read back, or on a list built in a test, and
they are rebuilt from history whenever asked rather than kept as state that could drift
from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from events.records import LogEntry


@dataclass(frozen=True)
class VersionNode:
    """One version in a genome's lineage; ``rolled_back`` if a rollback left it and it was not re-adopted."""

    genome: str
    version: str
    parent: str | None
    mutator: str | None
    kind: str | None
    fitness: float | None
    seq: int
    rolled_back: bool = False


def lineage(entries: Iterable[LogEntry]) -> list[VersionNode]:
    """Every version registered or adopted, in the order it first appeared."""
    nodes: dict[tuple[str, str], VersionNode] = {}
    for entry in entries:
        if entry.version is None:
            continue
        key = (entry.genome, entry.version)
        if entry.type == "Registered":
            nodes.setdefault(
                key,
                VersionNode(
                    entry.genome,
                    entry.version,
                    None,
                    None,
                    None,
                    entry.data.get("fitness"),
                    entry.seq,
                ),
            )
        elif entry.type == "VersionAdopted":
            if key in nodes:
                nodes[key] = replace(nodes[key], rolled_back=False)
            else:
                nodes[key] = VersionNode(
                    entry.genome,
                    entry.version,
                    entry.parent,
                    entry.data.get("mutator"),
                    entry.data.get("kind"),
                    entry.data.get("fitness_after"),
                    entry.seq,
                )
        elif entry.type == "RolledBack" and entry.parent is not None:
            _mark_rolled_back(nodes, entry.genome, entry.parent, entry.version)
    return list(nodes.values())


def _mark_rolled_back(
    nodes: dict[tuple[str, str], VersionNode], genome: str, start: str, target: str
) -> None:
    """Mark the versions from ``start`` back to (not including) ``target`` as rolled back."""
    current: str | None = start
    seen: set[str] = set()
    while current is not None and current != target and current not in seen:
        seen.add(current)
        node = nodes.get((genome, current))
        if node is None:
            return
        nodes[(genome, current)] = replace(node, rolled_back=True)
        current = node.parent


def fitness_history(entries: Iterable[LogEntry]) -> list[tuple[int, str, float | None]]:
    """(seq, head version, fitness) each time the head changed: registration, adoption, rollback."""
    history: list[tuple[int, str, float | None]] = []
    for entry in entries:
        if entry.version is None:
            continue
        if entry.type == "Registered":
            history.append((entry.seq, entry.version, entry.data.get("fitness")))
        elif entry.type == "VersionAdopted":
            history.append((entry.seq, entry.version, entry.data.get("fitness_after")))
        elif entry.type == "RolledBack":
            history.append((entry.seq, entry.version, entry.data.get("fitness")))
    return history


def mutator_stats(entries: Iterable[LogEntry]) -> dict[tuple[str, str], tuple[int, int]]:
    """(mutator, kind) → (tries, wins) over evaluated candidates; a verdict "adopt" is a win."""
    stats: dict[tuple[str, str], tuple[int, int]] = {}
    for entry in entries:
        if entry.type != "CandidateEvaluated":
            continue
        key = (str(entry.data.get("mutator")), str(entry.data.get("kind")))
        tries, wins = stats.get(key, (0, 0))
        stats[key] = (tries + 1, wins + (entry.data.get("verdict") == "adopt"))
    return stats


def evaluated_on(entries: Iterable[LogEntry]) -> dict[str, set[str]]:
    """Parent version → ids of the candidates already evaluated on it.

    A candidate id is its parent and patch, so one seen here has had its verdict: with an
    exact measure, trying it again would repeat the same numbers; with a timed one, it
    would give noise a second chance to adopt what was rejected.
    """
    seen: dict[str, set[str]] = {}
    for entry in entries:
        if entry.type == "CandidateEvaluated":
            seen.setdefault(str(entry.data.get("parent")), set()).add(
                str(entry.data.get("candidate"))
            )
    return seen
