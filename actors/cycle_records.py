"""What a cycle's run gives and where its decisions go: the Coordinator's records.

Apart from actors/coordinator.py so the conductor stays one concept; node.py and the
swarm's recorder build on these types without the Coordinator's imports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.generate import Candidate

Progress = Callable[[str, dict[str, Any]], None]


class Recorder(Protocol):
    """Where a cycle's decisions go: the local store, or the swarm's ledger.

    Returns whether the cycle's adoption (if any) became the head: locally it always
    does; in a swarm the peers' votes decide, and a losing proposal is not an adoption.
    """

    def __call__(
        self,
        genome: str,
        node: str,
        cycle: int,
        seed: int,
        evaluated: list[CandidateRecord],
        adoption: Adoption | None,
        held: list[Held],
        llm: dict[str, Any] | None = None,
    ) -> bool: ...


#: Commits a cycle's candidates (genome, parent version, candidates) as an offer before peers
#: are asked to prove them; returns the offer's id, or None when only local incubators prove
#: them (see actors/spread.py).
Offerer = Callable[[str, str, Sequence[Candidate]], str | None]


def store_recorder(store: GenomeStore) -> Recorder:
    """One node alone: the whole cycle in one store transaction."""

    def record(
        genome: str,
        node: str,
        cycle: int,
        seed: int,
        evaluated: list[CandidateRecord],
        adoption: Adoption | None,
        held: list[Held],
        llm: dict[str, Any] | None = None,
    ) -> bool:
        store.record_cycle(
            genome, node, evaluated=evaluated, adopted=adoption, held=held, cycle=cycle, seed=seed,
            llm=llm,
        )  # fmt: skip
        return adoption is not None

    return record


def _quiet(stage: str, info: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class CycleResult:
    cycle: int
    candidates: int
    adopted: str | None
    held: int
    overhead_ms: float
    #: the cycle's wall time, and the part of it spent in the genome's own processes
    wall_seconds: float = 0.0
    child_seconds: float = 0.0
    #: why the search stopped at this cycle (nothing left worth a candidate), or None
    stopped: str | None = None


@dataclass
class RunSummary:
    genome: str
    start_version: str
    head: str
    cycles: list[CycleResult] = field(default_factory=list)
    #: why the run ended before its cycles were all run, or None
    stopped: str | None = None

    @property
    def adopted(self) -> list[str]:
        return [c.adopted for c in self.cycles if c.adopted]


__all__ = [
    "CycleResult",
    "Offerer",
    "Progress",
    "Recorder",
    "RunSummary",
    "store_recorder",
]
