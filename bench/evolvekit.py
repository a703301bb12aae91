"""One node evolving one genome from scratch, cycle by cycle, for the search benchmarks.

Shared by ``bench_reach.py`` and ``bench_planner.py``: a fresh store, a single
:class:`node.Node` built as ``tars evolve run`` builds it (one incubator, as ``tars
demo`` runs each node), the planner and composition switched as asked, and the count
cache emptied first so every run pays for its own counts (fair wall times).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node import Node, NodeConfig
from runtime.counting import forget_counts


@dataclass
class Run:
    """What one evolution run did, cycle by cycle."""

    genome: str
    seed: int
    planner: str
    compose: bool
    #: exact gain of the head over the first version after each cycle
    gains: list[float] = field(default_factory=list)
    #: seconds since the start (registration included) after each cycle
    walls: list[float] = field(default_factory=list)
    judged: int = 0
    adopted: int = 0
    stopped: str | None = None
    #: every candidate the cascade's quick run rejected: "cycle N mutator: reason"
    quick_rejected: list[str] = field(default_factory=list)
    #: every candidate the cascade's short count rejected: "cycle N mutator: reason"
    short_rejected: list[str] = field(default_factory=list)
    #: every candidate judged, cycle by cycle: mutator, kind, predicted and measured gain,
    #: verdict, the patch's hunk headers (the sites): what the planner drew and what it paid
    trace: list[list[str]] = field(default_factory=list)

    def reached(self, target: float) -> tuple[int | None, float | None]:
        """(cycles, seconds) to reach ``target``, or (None, None)."""
        for index, gain in enumerate(self.gains):
            if gain >= target - 1e-9:
                return index + 1, self.walls[index]
        return None, None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gains"] = [round(g, 4) for g in self.gains]
        data["walls"] = [round(w, 1) for w in self.walls]
        return data


def describe(record: Any) -> str:
    """One line for a candidate record: what was drawn, what it was predicted, what it measured."""
    sites = sorted(
        {
            line.split("@@")[-1].strip()
            for line in record.patch.splitlines()
            if line.startswith("@@")
        }
    )
    predicted = f"{record.expected_gain:.3f}" if record.expected_gain is not None else "-"
    measured = f"{record.ratio:.4f}" if record.ratio is not None else "-"
    return f"{record.mutator}/{record.kind} pred {predicted} got {measured} {record.verdict} {'; '.join(sites)} | {'; '.join(r[:90] for r in record.reasons)}"


def evolve(
    folder: Path,
    *,
    seed: int,
    cycles: int,
    candidates: int = 3,
    planner: str = "learning",
    compose: bool = True,
    target: float | None = None,
) -> Run:
    """Evolve ``folder`` from scratch until ``cycles`` cycles, ``target`` gain, or the planner stops."""
    forget_counts()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        config = NodeConfig(
            "bench", f"sqlite:///{work}/store.db", Path(work) / "node", incubators=1,
            candidates_per_cycle=candidates, planner=planner, compose=compose,
        )  # fmt: skip
        with Node(config) as node:
            name, _ = node.register(folder)
            first = node.store.head(name).fitness
            run = Run(name, seed, planner, compose)

            def progress(stage: str, info: dict[str, Any]) -> None:
                if stage == "cycle":
                    run.trace.append([describe(record) for record in info.get("records", [])])
                for record in info.get("records", []) if stage == "cycle" else []:
                    run.quick_rejected.extend(
                        f"cycle {info['cycle']} {record.mutator}: {reason}"
                        for reason in record.reasons
                        if "quick run" in reason
                    )
                    run.short_rejected.extend(
                        f"cycle {info['cycle']} {record.mutator}: {reason}"
                        for reason in record.reasons
                        if "rejected at the short count" in reason
                    )

            coordinator = node.coordinator(name, progress=progress)
            for number in range(1, cycles + 1):
                result = coordinator.cycle(number, seed)
                head = node.store.head(name)
                run.gains.append(first / head.fitness if first and head.fitness else 1.0)
                run.walls.append(time.perf_counter() - started)
                run.judged += result.candidates
                run.adopted += 1 if result.adopted else 0
                if result.stopped:
                    run.stopped = result.stopped
                    break
                if target is not None and run.gains[-1] >= target:
                    break
    return run
