"""Proving one candidate: its tests, then the benchmark against its parent, A B A B.

This is the side-effecting half of the Incubator (the actor is a thin shell around
it): it writes throw-away copies, runs children in the sandbox and reads their output.
Judging the figures is pure and lives in ``evolution.stats`` / ``evolution.policy``;
counting instructions under valgrind lives in :mod:`runtime.counting` (its names are
re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from evolution.cascade import failfast
from evolution.fitness import summarise
from evolution.manifest import Manifest
from runtime.cascade_stages import (
    CANDIDATE_WALL_FACTOR,
    CANDIDATE_WALL_FLOOR,
    QUICK_ENV,
    candidate_limits,
    limits_said,
    quick_stage,
    short_stage,
)
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
    read_instructions,
    run_counted,
    valgrind,
)
from runtime.figures import PEAK_MEMORY, native_peak, read_figures, wants_native_memory
from runtime.incubation_report import IncubationReport, Tally, copied, read_metric
from runtime.sandbox import RunResult, Sandbox, SandboxLimits
from runtime.test_yardstick import bypassed


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
    """Tests (all must pass), then ``rounds`` interleaved benchmark pairs (A B B A A B …).

    Parent and candidate run alternately so that slow drifts of the machine (another
    process, thermal state) hit both equally; pairing them is what lets the statistics
    cancel the noise instead of averaging it.

    ``measure`` overrides the manifest's ("benchmark" times an A/B even for a genome
    judged by instruction counts, as the demo's final report does).

    Sequential testing: after ``rounds`` pairs, while ``undecided(parent, candidate)``
    says the evidence straddles the decision (and up to ``max_rounds``), more pairs are
    run.  Clear cases stop early; only close calls pay for more runs, and a close call
    decided on more data is what keeps two runs with the same seed deciding alike.

    ``cascade`` (the default) is the evaluation cascade (:mod:`evolution.cascade`): a
    counted candidate's short count (``[fitness] short_scale`` / ``short_args``) comes
    first, before its tests (it rejects most candidates of a uniform mix, and an exact
    count needs no passing tests to say "no better"; a survivor still passes every test
    before it can win); the tests stop at their first failure; then the quick run
    (``[fitness] quick``) and the full count.  ``cascade=False`` is the path without it.
    """
    tally = Tally(candidate, time.perf_counter())
    limits = SandboxLimits.from_manifest(manifest.limits)
    rounds = rounds or manifest.fitness.rounds
    parent_samples: list[float] = []
    candidate_samples: list[float] = []
    test = failfast(manifest.commands.test) if cascade else manifest.commands.test
    counted = (measure or effective_measure(manifest)) == "instructions"
    # A candidate counted before (the count is cached) costs nothing to count again.
    early = cascade and counted and not is_counted(candidate_tree, manifest)
    with copied(sandbox, candidate_tree, tally) as cand_dir:
        stopped = (
            short_stage(sandbox, manifest, tally, parent_tree, candidate_tree, cand_dir)
            if early
            else None
        )
        if stopped is not None and stopped[0] == "short":
            # rejected by exact counts before its tests ran (docs/sandbox.md, "The short
            # count"): never reported as passing tests it did not run
            detail = f"{stopped[1]} (its tests were not run: the short count comes first)"
            return tally.report(False, "short", detail, measure="instructions")
        failed = _tested(sandbox, tally, cand_dir, test, limits, parent_tree)
        if failed is not None:
            return failed
        if stopped is not None:  # failed on the short input, passing its tests
            return tally.report(True, stopped[0], stopped[1], measure="instructions")
        if counted:
            if early and manifest.fitness.quick > 0:
                rejected = quick_stage(sandbox, manifest, tally, parent_tree, cand_dir)
                if rejected is not None:
                    return rejected
            return _counted(sandbox, manifest, tally, parent_tree, candidate_tree, cand_dir)
        with copied(sandbox, parent_tree, tally) as parent_dir:
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


def _tested(
    sandbox: Sandbox,
    tally: Tally,
    cand_dir: Path,
    test: Sequence[str],
    limits: SandboxLimits,
    parent_tree: Mapping[str, str],
) -> IncubationReport | None:
    """The candidate's tests; a report only when they failed, or passed without running
    as many tests as on the parent (:mod:`runtime.test_yardstick`)."""
    tests = sandbox.run(cand_dir, test, limits)
    tally.ran(tests, "tests")
    if not tests.ok:
        return tally.report(False, tests.failure or "exit", f"tests failed: {tests.detail}")
    why = bypassed(sandbox, parent_tree, test, tests, limits)
    if why is not None:
        return tally.report(False, "tests", f"tests failed: {why}")
    return None


def _interleaved(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: Tally,
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
            tally.ran(result, "benchmark")
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
    tally: Tally,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    cand_dir: Path,
) -> IncubationReport:
    """One exact count per side; a side counted before (the parent, mostly) comes from the cache.

    The candidate's run is stopped at CANDIDATE_WALL_FACTOR times its parent's CPU time
    (at least CANDIDATE_WALL_FLOOR seconds; :func:`runtime.cascade_stages.candidate_limits`),
    so a benchmark that loops or hangs fails in seconds, and a busy machine fails none.
    """
    got = count_cached(sandbox, parent_tree, manifest)
    tally.counted(got, "count_parent")
    parent, parent_count, failure, parent_figures = got.instructions, got, got.failure, got.figures
    if parent is None:
        kind, detail = failure or ("exit", "?")
        return tally.report(
            True,
            kind,
            f"parent benchmark failed under the instruction counter: {detail}",
            measure="instructions",
        )
    wall, cpu = candidate_limits(parent_count, CANDIDATE_WALL_FLOOR)
    got = count_cached(sandbox, candidate_tree, manifest, cand_dir, wall_limit=wall, cpu_limit=cpu)
    tally.counted(got, "count")
    count, failure, candidate_figures = got.instructions, got.failure, got.figures
    if count is None:
        kind, detail = failure or ("exit", "?")
        return tally.report(
            True,
            kind,
            f"candidate benchmark failed under the instruction counter: {detail} "
            f"({limits_said(parent_count, CANDIDATE_WALL_FLOOR)})",
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
