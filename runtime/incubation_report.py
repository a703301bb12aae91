"""What proving a candidate showed (:class:`IncubationReport`), and the tally it is made from.

Split out of :mod:`runtime.incubation` (which re-exports the report) so that the
cascade's stages (:mod:`runtime.cascade_stages`) and the incubation share one tally of
time per stage without importing each other.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime.counting import Count
from runtime.sandbox import RunResult, Sandbox


@dataclass(frozen=True)
class IncubationReport:
    """What the sandbox showed about one candidate; the Governor decides from this."""

    candidate: str
    tests_passed: bool
    failure: str | None
    detail: str
    parent_samples: tuple[float, ...] = ()
    candidate_samples: tuple[float, ...] = ()
    child_seconds: float = 0.0
    total_seconds: float = 0.0
    runs: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    #: how the samples were taken: "benchmark" (A/B pairs of the metric) or
    #: "instructions" (one exact count per side)
    measure: str = "benchmark"
    #: the figures besides the main metric per side (peak memory, the manifest's work
    #: counts and limits), summarised over the side's runs (:func:`evolution.fitness.summarise`)
    parent_figures: dict[str, float] = field(default_factory=dict)
    candidate_figures: dict[str, float] = field(default_factory=dict)

    @property
    def overhead_seconds(self) -> float:
        """Time spent outside the genome's own processes: the framework's cost."""
        return max(0.0, self.total_seconds - self.child_seconds)


def read_metric(result: RunResult, metric: str) -> float:
    """The metric from the last JSON line a benchmark printed; ValueError says what was wrong."""
    for line in reversed(result.stdout.strip().splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        value = data.get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"benchmark printed no number for metric {metric!r} (got {value!r})")
        if not math.isfinite(value) or value <= 0:
            # NaN compares false with everything: a NaN ratio would pass every "no gain"
            # and "below threshold" test of the governor, so a benchmark printing NaN (or
            # inf) is a failed run, never a measurement
            raise ValueError(
                f"benchmark metric {metric!r} must be a positive finite number, got {value}"
            )
        return float(value)
    raise ValueError(
        f"benchmark printed no JSON line (last output: {result.stdout.strip()[-200:]!r})"
    )


@dataclass
class Tally:
    """The time and runs one candidate has cost so far, and its report from them."""

    candidate: str
    started: float
    child: float = 0.0
    runs: int = 0
    #: seconds per stage of the cascade ("stage:tests", "stage:quick", "stage:count", …),
    #: reported in ``extra``: which stages ran, and what each cost; "cpu:<stage>" the CPU
    #: seconds of the stage's children (on a shared machine their wall time counts the others)
    stages: dict[str, float] = field(default_factory=dict)

    def add(
        self, seconds: float, runs: int = 1, stage: str | None = None, cpu: float | None = None
    ) -> None:
        """Count a child's ``seconds`` (and its run, its ``cpu``) against ``stage`` and the total."""
        self.child += seconds
        self.runs += runs
        if stage is not None:
            for key, value in ((f"stage:{stage}", seconds), (f"cpu:{stage}", cpu or 0.0)):
                self.stages[key] = self.stages.get(key, 0.0) + value

    def ran(self, result: RunResult, stage: str) -> None:
        """Count one child's run (its wall and CPU seconds) against ``stage``."""
        self.add(result.wall_seconds, stage=stage, cpu=result.cpu_seconds)

    def counted(self, count: Count, stage: str) -> None:
        """Count a count against ``stage``: nothing (and no run) when it came from the cache."""
        self.add(count.spent, 1 if count.spent else 0, stage=stage, cpu=count.cpu)

    def report(
        self,
        tests_passed: bool,
        failure: str | None,
        detail: str,
        parent_samples: Sequence[float] = (),
        candidate_samples: Sequence[float] = (),
        *,
        measure: str = "benchmark",
        figures: tuple[Mapping[str, float], Mapping[str, float]] = ({}, {}),
    ) -> IncubationReport:
        """The report of what the candidate showed, with the time and runs it cost."""
        return IncubationReport(
            self.candidate,
            tests_passed,
            failure,
            detail,
            tuple(parent_samples),
            tuple(candidate_samples),
            child_seconds=self.child,
            total_seconds=time.perf_counter() - self.started,
            runs=self.runs,
            extra=dict(self.stages),
            measure=measure,
            parent_figures=dict(figures[0]),
            candidate_figures=dict(figures[1]),
        )


@contextlib.contextmanager
def copied(sandbox: Sandbox, tree: Mapping[str, str], tally: Tally) -> Iterator[Path]:
    """``sandbox.workspace(tree)``, its copy-in timed as the "copy" stage."""
    started = time.perf_counter()
    with sandbox.workspace(tree) as workdir:
        tally.stages["stage:copy"] = tally.stages.get("stage:copy", 0.0) + (
            time.perf_counter() - started
        )
        yield workdir
