"""Proving one candidate: its tests, then the benchmark against its parent, A B A B.

This is the side-effecting half of the Incubator (the actor is a thin shell around
it): it writes throw-away copies, runs children in the sandbox and reads their output.
Judging the figures is pure and lives in ``evolution.stats`` / ``evolution.policy``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from evolution.manifest import Manifest
from runtime.sandbox import RunResult, Sandbox, SandboxLimits


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
        if value <= 0:
            raise ValueError(f"benchmark metric {metric!r} must be positive, got {value}")
        return float(value)
    raise ValueError(
        f"benchmark printed no JSON line (last output: {result.stdout.strip()[-200:]!r})"
    )


def run_tests(sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest) -> RunResult:
    """Run the genome's own tests on a copy of ``tree``."""
    limits = SandboxLimits.from_manifest(manifest.limits)
    with sandbox.workspace(tree) as workdir:
        return sandbox.run(workdir, manifest.commands.test, limits)


def measure(
    sandbox: Sandbox, tree: Mapping[str, str], manifest: Manifest, repeats: int = 1
) -> list[float]:
    """Run the benchmark ``repeats`` times on one copy; raise ValueError when it fails."""
    limits = SandboxLimits.from_manifest(manifest.limits)
    samples: list[float] = []
    with sandbox.workspace(tree) as workdir:
        for _ in range(repeats):
            result = sandbox.run(workdir, manifest.commands.bench, limits)
            if not result.ok:
                raise ValueError(f"benchmark failed: {result.detail}")
            samples.append(read_metric(result, manifest.fitness.metric))
    return samples


def incubate(
    sandbox: Sandbox,
    manifest: Manifest,
    candidate: str,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    rounds: int | None = None,
    *,
    max_rounds: int | None = None,
    undecided: Callable[[Sequence[float], Sequence[float]], bool] | None = None,
) -> IncubationReport:
    """Tests first (all must pass), then ``rounds`` interleaved benchmark pairs (A B B A A B …).

    Parent and candidate run alternately so that slow drifts of the machine (another
    process, thermal state) hit both equally; pairing them is what lets the statistics
    cancel the noise instead of averaging it.

    Sequential testing: after ``rounds`` pairs, while ``undecided(parent, candidate)``
    says the evidence straddles the decision (and up to ``max_rounds``), more pairs are
    run.  Clear cases stop early; only close calls pay for more runs, and a close call
    decided on more data is what keeps two runs with the same seed deciding alike.
    """
    started = time.perf_counter()
    child = 0.0
    runs = 0
    limits = SandboxLimits.from_manifest(manifest.limits)
    rounds = rounds or manifest.fitness.rounds
    parent_samples: list[float] = []
    candidate_samples: list[float] = []

    def report(tests_passed: bool, failure: str | None, detail: str) -> IncubationReport:
        return IncubationReport(
            candidate, tests_passed, failure, detail,
            tuple(parent_samples) if failure is None else (),
            tuple(candidate_samples) if failure is None else (),
            child_seconds=child, total_seconds=time.perf_counter() - started, runs=runs,
        )

    with sandbox.workspace(candidate_tree) as cand_dir:
        tests = sandbox.run(cand_dir, manifest.commands.test, limits)
        child += tests.wall_seconds
        runs += 1
        if not tests.ok:
            return report(False, tests.failure or "exit", f"tests failed: {tests.detail}")
        with sandbox.workspace(parent_tree) as parent_dir:
            pair = ((parent_dir, parent_samples, "parent"), (cand_dir, candidate_samples, "candidate"))
            limit = max(rounds, max_rounds or rounds)
            index, target = 0, rounds
            while index < target:
                # A B, then B A: alternating the order cancels drift inside a pair too.
                for workdir, samples, who in pair if index % 2 == 0 else pair[::-1]:
                    result = sandbox.run(workdir, manifest.commands.bench, limits)
                    child += result.wall_seconds
                    runs += 1
                    if not result.ok:
                        return report(True, result.failure or "exit", f"{who} benchmark failed: {result.detail}")
                    try:
                        samples.append(read_metric(result, manifest.fitness.metric))
                    except ValueError as exc:
                        return report(True, "bench-output", f"{who} {exc}")
                index += 1
                if index == target < limit and undecided is not None and undecided(parent_samples, candidate_samples):
                    target = min(limit, target + 2)  # two more: one A B and one B A
    return report(True, None, "ok")
