"""Proving one candidate: its tests, then the benchmark against its parent, A B A B.

This is the side-effecting half of the Incubator (the actor is a thin shell around
it): it writes throw-away copies, runs children in the sandbox and reads their output.
Judging the figures is pure and lives in ``evolution.stats`` / ``evolution.policy``;
counting instructions under valgrind lives in :mod:`runtime.counting` (its names are
re-exported here).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from evolution import cascade as rules
from evolution.cascade import QUICK_PAIRS, failfast, quick_reason, quick_verdict
from evolution.fitness import summarise
from evolution.manifest import Manifest
from evolution.tree import version_id
from runtime.counting import (
    COUNTING_SLOWDOWN,
    VALGRIND_FLAGS,
    bench_env,
    count_cached,
    count_instructions,
    counting_limits,
    effective_measure,
    forget_counts,
    is_counted,
    quick_times,
    read_instructions,
    run_counted,
    valgrind,
)
from runtime.figures import PEAK_MEMORY, native_peak, read_figures, wants_native_memory
from runtime.sandbox import RunResult, Sandbox, SandboxLimits

#: a candidate may take this many times its parent's counted run, with the floor below,
#: before it is stopped: it is only there to be faster, and a benchmark that hangs under
#: the counter should cost seconds, not the manifest's limit times COUNTING_SLOWDOWN
CANDIDATE_WALL_FACTOR = 4.0
CANDIDATE_WALL_FLOOR = 20.0
#: the quick run times the counted run's own workload natively (the benchmark is told it
#: is counted, so it runs its one short pass), so it sees the very work the count counts
QUICK_ENV = bench_env("instructions")


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
            result = sandbox.run(
                workdir, manifest.commands.bench, limits, env=bench_env("benchmark")
            )
            if not result.ok:
                raise ValueError(f"benchmark failed: {result.detail}")
            samples.append(read_metric(result, manifest.fitness.metric))
    return samples


@dataclass
class _Tally:
    """The time and runs one candidate has cost so far, and its report from them."""

    candidate: str
    started: float
    child: float = 0.0
    runs: int = 0
    #: seconds per stage of the cascade ("stage:tests", "stage:quick", "stage:count", …),
    #: reported in ``extra``: which stages ran, and what each cost
    stages: dict[str, float] = field(default_factory=dict)

    def add(self, seconds: float, runs: int = 1, stage: str | None = None) -> None:
        self.child += seconds
        self.runs += runs
        if stage is not None:
            key = f"stage:{stage}"
            self.stages[key] = self.stages.get(key, 0.0) + seconds

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
    measure: str | None = None,
    cascade: bool = True,
) -> IncubationReport:
    """Tests first (all must pass), then ``rounds`` interleaved benchmark pairs (A B B A A B …).

    Parent and candidate run alternately so that slow drifts of the machine (another
    process, thermal state) hit both equally; pairing them is what lets the statistics
    cancel the noise instead of averaging it.

    ``measure`` overrides the manifest's ("benchmark" times an A/B even for a genome
    judged by instruction counts, as the demo's final report does).

    Sequential testing: after ``rounds`` pairs, while ``undecided(parent, candidate)``
    says the evidence straddles the decision (and up to ``max_rounds``), more pairs are
    run.  Clear cases stop early; only close calls pay for more runs, and a close call
    decided on more data is what keeps two runs with the same seed deciding alike.

    ``cascade`` (the default) is the evaluation cascade (:mod:`evolution.cascade`): the
    tests stop at their first failure, and a counted candidate passes the quick run
    (``[fitness] quick``) and the short count (``[fitness] short_scale`` /
    ``short_args``) before it is counted in full; ``cascade=False`` is the path without it.
    """
    tally = _Tally(candidate, time.perf_counter())
    limits = SandboxLimits.from_manifest(manifest.limits)
    rounds = rounds or manifest.fitness.rounds
    parent_samples: list[float] = []
    candidate_samples: list[float] = []
    test = failfast(manifest.commands.test) if cascade else manifest.commands.test
    with _copied(sandbox, candidate_tree, tally) as cand_dir:
        tests = sandbox.run(cand_dir, test, limits)
        tally.add(tests.wall_seconds, stage="tests")
        if not tests.ok:
            return tally.report(False, tests.failure or "exit", f"tests failed: {tests.detail}")
        if (measure or effective_measure(manifest)) == "instructions":
            # A candidate counted before (the count is cached) costs nothing to count again.
            if cascade and manifest.fitness.quick > 0 and not is_counted(candidate_tree, manifest):
                rejected = _quick(sandbox, manifest, tally, parent_tree, cand_dir)
                if rejected is not None:
                    return rejected
            if cascade and not is_counted(candidate_tree, manifest):
                rejected = _short(sandbox, manifest, tally, parent_tree, candidate_tree, cand_dir)
                if rejected is not None:
                    return rejected
            return _counted(sandbox, manifest, tally, parent_tree, candidate_tree, cand_dir)
        with _copied(sandbox, parent_tree, tally) as parent_dir:
            pair = (
                (parent_dir, parent_samples, "parent"),
                (cand_dir, candidate_samples, "candidate"),
            )
            limit = max(rounds, max_rounds or rounds)
            runs: dict[str, list[dict[str, float]]] = {"parent": [], "candidate": []}
            failed = _interleaved(
                sandbox, manifest, tally, limits, pair, rounds, limit, undecided, runs
            )
            if failed is not None:
                return failed
    figures = (summarise(runs["parent"]), summarise(runs["candidate"]))
    return tally.report(True, None, "ok", parent_samples, candidate_samples, figures=figures)


@contextlib.contextmanager
def _copied(sandbox: Sandbox, tree: Mapping[str, str], tally: _Tally) -> Iterator[Path]:
    """``sandbox.workspace(tree)``, its copy-in timed as the "copy" stage."""
    started = time.perf_counter()
    with sandbox.workspace(tree) as workdir:
        tally.stages["stage:copy"] = tally.stages.get("stage:copy", 0.0) + (
            time.perf_counter() - started
        )
        yield workdir


class _QuickFailed(Exception):
    """A native quick run that gave no figure: its failure kind and the human detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _timed(
    sandbox: Sandbox, workdir: Path, manifest: Manifest, tally: _Tally, wall: float | None = None
) -> tuple[float | None, float]:
    """One native quick run: (its metric, its wall seconds), stopped after ``wall`` seconds.

    The metric is None when the run succeeded but printed none usable (a pass too short
    for its clock prints 0.0): the count judges that candidate, not the quick run.
    """
    limits = SandboxLimits.from_manifest(manifest.limits)
    if wall is not None and wall < limits.wall_seconds:
        limits = replace(limits, wall_seconds=wall)
    result = sandbox.run(workdir, manifest.commands.bench, limits, env=QUICK_ENV)
    tally.add(result.wall_seconds, stage="quick")
    if not result.ok:
        raise _QuickFailed(result.failure or "exit", result.detail)
    try:
        return read_metric(result, manifest.fitness.metric), result.wall_seconds
    except ValueError:
        return None, result.wall_seconds


def _quick(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: _Tally,
    parent_tree: Mapping[str, str],
    cand_dir: Path,
) -> IncubationReport | None:
    """The cascade's quick run: a report when it rejects the candidate, None to go on to the count.

    One run against the parent's known figure first (``counting.QuickTimes``), then up to
    QUICK_PAIRS native pairs, parent then candidate (``evolution.cascade.quick_verdict``).
    The candidate is stopped as its count would be (CANDIDATE_WALL_FACTOR × the parent's
    run); a parent failing natively says nothing of the candidate: the count decides.
    """
    floor = manifest.fitness.quick
    key = (version_id(dict(parent_tree)), tuple(manifest.commands.bench))
    ratios: list[float] = []
    known = quick_times.get(key)
    limit = CANDIDATE_WALL_FLOOR
    try:
        if known is not None:
            limit = max(CANDIDATE_WALL_FLOOR, CANDIDATE_WALL_FACTOR * known[1])
            figure, _ = _timed(sandbox, cand_dir, manifest, tally, limit)
            if figure is None or manifest.better(figure, known[0]) >= floor:
                return None
        with _copied(sandbox, parent_tree, tally) as parent_dir:
            while True:
                try:
                    parent, wall = _timed(sandbox, parent_dir, manifest, tally)
                except _QuickFailed:
                    return None
                if parent is None:
                    return None
                quick_times.add(key, parent, wall)
                limit = max(CANDIDATE_WALL_FLOOR, CANDIDATE_WALL_FACTOR * wall)
                figure, _ = _timed(sandbox, cand_dir, manifest, tally, limit)
                if figure is None:
                    return None
                ratios.append(manifest.better(figure, parent))
                verdict = quick_verdict(ratios, floor, QUICK_PAIRS)
                if verdict != "more":
                    break
    except _QuickFailed as exc:
        detail = (
            f"candidate failed at the quick run: {exc.detail} (a candidate may take "
            f"{CANDIDATE_WALL_FACTOR:g}× its parent's run, at least {CANDIDATE_WALL_FLOOR:g} s)"
        )
        return tally.report(True, exc.kind, detail, measure="instructions")
    if verdict == "pass":
        return None
    return tally.report(True, "quick", quick_reason(ratios, floor), measure="instructions")


def _short(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: _Tally,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    cand_dir: Path,
) -> IncubationReport | None:
    """The cascade's short count: a report when it rejects the candidate, None to go on.

    Exact counts on the short input (the parent's cached per version, like the full count
    :func:`evolution.cascade.short_gain` scales to), so one seed decides alike every run.
    A parent failing says nothing of the candidate; a candidate failing where it did not, fails.
    """
    short = rules.short_run(manifest.fitness)
    if short is None:
        return None
    full, spent, _, _, _ = count_cached(sandbox, parent_tree, manifest)
    tally.add(spent, 1 if spent else 0, stage="count_parent")
    parent, spent, parent_wall, _, _ = count_cached(sandbox, parent_tree, manifest, short=short)
    tally.add(spent, 1 if spent else 0, stage="short_parent")
    if full is None or parent is None:
        return None
    limit = max(CANDIDATE_WALL_FLOOR, CANDIDATE_WALL_FACTOR * parent_wall)
    count, spent, _, failure, _ = count_cached(
        sandbox, candidate_tree, manifest, cand_dir, wall_limit=limit, short=short
    )
    tally.add(spent, 1 if spent else 0, stage="short")
    if count is None:
        kind, detail = failure or ("exit", "?")
        detail = f"candidate failed at the short count, where its parent did not: {detail}"
        return tally.report(True, kind, detail, measure="instructions")
    gain = tally.stages["short_gain"] = rules.short_gain(parent, count, full, manifest.fitness)
    if rules.short_passes(gain, manifest.fitness):
        return None
    reason = rules.short_reason(parent, count, gain, manifest.fitness)
    return tally.report(True, "short", reason, measure="instructions")


def _interleaved(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: _Tally,
    limits: SandboxLimits,
    pair: tuple[tuple[Path, list[float], str], tuple[Path, list[float], str]],
    rounds: int,
    limit: int,
    undecided: Callable[[Sequence[float], Sequence[float]], bool] | None,
    runs: dict[str, list[dict[str, float]]],
) -> IncubationReport | None:
    """The A/B rounds, samples appended to ``pair``'s lists and each run's figures to
    ``runs[who]``; a report only when a run failed."""
    parent_samples, candidate_samples = pair[0][1], pair[1][1]
    index, target = 0, rounds
    while index < target:
        # A B, then B A: alternating the order cancels drift inside a pair too.
        for workdir, samples, who in pair if index % 2 == 0 else pair[::-1]:
            result = sandbox.run(
                workdir, manifest.commands.bench, limits, env=bench_env("benchmark")
            )
            tally.add(result.wall_seconds, stage="benchmark")
            if not result.ok:
                return tally.report(
                    True, result.failure or "exit", f"{who} benchmark failed: {result.detail}"
                )
            try:
                samples.append(read_metric(result, manifest.fitness.metric))
            except ValueError as exc:
                return tally.report(True, "bench-output", f"{who} {exc}")
            runs[who].append(read_figures(result, manifest.fitness.printed_figures()))
        index += 1
        if (
            index == target < limit
            and undecided is not None
            and undecided(parent_samples, candidate_samples)
        ):
            target = min(limit, target + 2)  # two more: one A B and one B A
    return None


def _counted(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: _Tally,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    cand_dir: Path,
) -> IncubationReport:
    """One exact count per side; a side counted before (the parent, mostly) comes from the cache.

    The candidate's run is stopped at CANDIDATE_WALL_FACTOR times its parent's (at least
    CANDIDATE_WALL_FLOOR seconds), so a benchmark that hangs fails in seconds.
    """
    parent, spent, parent_wall, failure, parent_figures = count_cached(
        sandbox, parent_tree, manifest
    )
    tally.add(spent, 1 if spent else 0, stage="count_parent")
    if parent is None:
        kind, detail = failure or ("exit", "?")
        return tally.report(
            True,
            kind,
            f"parent benchmark failed under the instruction counter: {detail}",
            measure="instructions",
        )
    limit = max(CANDIDATE_WALL_FLOOR, CANDIDATE_WALL_FACTOR * parent_wall)
    count, spent, _, failure, candidate_figures = count_cached(
        sandbox, candidate_tree, manifest, cand_dir, wall_limit=limit
    )
    tally.add(spent, 1 if spent else 0, stage="count")
    if count is None:
        kind, detail = failure or ("exit", "?")
        return tally.report(
            True,
            kind,
            f"candidate benchmark failed under the instruction counter: {detail} "
            f"(a candidate may take {CANDIDATE_WALL_FACTOR:g}× its parent's {parent_wall:.1f} s, at least {CANDIDATE_WALL_FLOOR:g} s)",
            measure="instructions",
        )
    if wants_native_memory(
        manifest
    ):  # under valgrind the memory is valgrind's: one native run each
        env = bench_env("benchmark")
        for tree, where, figures in (
            (parent_tree, None, parent_figures),
            (candidate_tree, cand_dir, candidate_figures),
        ):
            peak, spent = native_peak(sandbox, tree, manifest, where, env=env, cache=where is None)
            tally.add(spent, 1 if spent else 0)
            if peak is not None:
                figures[PEAK_MEMORY] = peak
    return tally.report(
        True,
        None,
        "ok",
        (parent,),
        (count,),
        measure="instructions",
        figures=(parent_figures, candidate_figures),
    )


__all__ = [
    "CANDIDATE_WALL_FACTOR",
    "CANDIDATE_WALL_FLOOR",
    "COUNTING_SLOWDOWN",
    "QUICK_ENV",
    "VALGRIND_FLAGS",
    "IncubationReport",
    "bench_env",
    "count_instructions",
    "counting_limits",
    "effective_measure",
    "forget_counts",
    "incubate",
    "measure",
    "read_instructions",
    "read_metric",
    "run_counted",
    "run_tests",
    "valgrind",
]
