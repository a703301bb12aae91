"""The evaluation cascade's stages that run children: the quick run and the short count.

Each takes the candidate's copy and the tally of its costs and returns a report when it
rejects the candidate, None to go on (:func:`runtime.incubation.incubate` runs them in
order; the rules they apply are pure, in :mod:`evolution.cascade`; docs/sandbox.md,
"The evaluation cascade").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from evolution import cascade as rules
from evolution.cascade import QUICK_PAIRS, quick_reason, quick_verdict
from evolution.manifest import Manifest
from evolution.tree import version_id
from runtime.counting import Count, bench_env, count_cached, quick_times
from runtime.incubation_report import IncubationReport, Tally, copied, read_metric
from runtime.sandbox import Sandbox, SandboxLimits

#: a candidate may take this many times its parent's counted run, with the floor below,
#: before it is stopped: it is only there to be faster, and a benchmark that hangs under
#: the counter should cost seconds, not the manifest's limit times COUNTING_SLOWDOWN
CANDIDATE_WALL_FACTOR = 4.0
CANDIDATE_WALL_FLOOR = 20.0
#: with the parent's CPU seconds known, the candidate's wall limit is this many times its
#: CPU limit: on a loaded machine a run waits for a core, which is not the candidate's
#: doing (a parent counted on a quiet machine must not make a busy one's candidate fail)
CANDIDATE_WAIT_SLACK = 2.0
#: the quick run times the counted run's own workload natively (the benchmark is told it
#: is counted, so it runs its one short pass), so it sees the very work the count counts
QUICK_ENV = bench_env("instructions")


def candidate_limits(
    parent: Count, floor: float = CANDIDATE_WALL_FLOOR
) -> tuple[float, float | None]:
    """(wall, CPU) seconds a candidate's count may take against its parent's.

    CPU time is the work, whatever the load: a candidate may spend CANDIDATE_WALL_FACTOR
    times its parent's, at least ``floor``, and wait CANDIDATE_WAIT_SLACK times that for
    a core (a benchmark that hangs uses no CPU: the wall limit ends it).  Without the
    parent's CPU seconds (no cgroup to read them from) the wall limit alone, as a
    multiple of the parent's wall seconds.
    """
    if parent.cpu_run > 0:
        cpu = max(floor, CANDIDATE_WALL_FACTOR * parent.cpu_run)
        return CANDIDATE_WAIT_SLACK * cpu, cpu
    return max(floor, CANDIDATE_WALL_FACTOR * parent.wall), None


def limits_said(parent: Count, floor: float = CANDIDATE_WALL_FLOOR) -> str:
    """The limits of :func:`candidate_limits` in words, for a failed candidate's detail."""
    wall, cpu = candidate_limits(parent, floor)
    if cpu is None:
        return f"a candidate may take {CANDIDATE_WALL_FACTOR:g}× its parent's {parent.wall:.1f} s, at least {floor:g} s"
    return (
        f"a candidate may spend {CANDIDATE_WALL_FACTOR:g}× its parent's {parent.cpu_run:.1f} s "
        f"of CPU, at least {floor:g} s, within {wall:.0f} s"
    )


class _QuickFailed(Exception):
    """A native quick run that gave no figure: its failure kind and the human detail."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _timed(
    sandbox: Sandbox, workdir: Path, manifest: Manifest, tally: Tally, wall: float | None = None
) -> tuple[float | None, float]:
    """One native quick run: (its metric, its wall seconds), stopped after ``wall`` seconds.

    The metric is None when the run succeeded but printed none usable (a pass too short
    for its clock prints 0.0): the count judges that candidate, not the quick run.
    """
    limits = SandboxLimits.from_manifest(manifest.limits)
    if wall is not None and wall < limits.wall_seconds:
        limits = replace(limits, wall_seconds=wall)
    result = sandbox.run(workdir, manifest.commands.bench, limits, env=QUICK_ENV)
    tally.ran(result, "quick")
    if not result.ok:
        raise _QuickFailed(result.failure or "exit", result.detail)
    try:
        return read_metric(result, manifest.fitness.metric), result.wall_seconds
    except ValueError:
        return None, result.wall_seconds


def quick_stage(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: Tally,
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
        with copied(sandbox, parent_tree, tally) as parent_dir:
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


def short_stage(
    sandbox: Sandbox,
    manifest: Manifest,
    tally: Tally,
    parent_tree: Mapping[str, str],
    candidate_tree: Mapping[str, str],
    cand_dir: Path,
) -> tuple[str, str] | None:
    """The cascade's short count: (failure kind, detail) when it stops the candidate, None to go on.

    Exact counts on the short input (the parent's cached per version, like the full count
    :func:`evolution.cascade.short_gain` scales to), so one seed decides alike every run.
    The kind is "short" when the counts reject it; a candidate failing where its parent
    did not fails with the run's kind (the incubation then runs its tests, whose failure
    is the better reason).  A parent failing says nothing of the candidate.
    """
    short = rules.short_run(manifest.fitness)
    if short is None:
        return None
    got = count_cached(sandbox, parent_tree, manifest)
    tally.counted(got, "count_parent")
    full = got.instructions
    got = count_cached(sandbox, parent_tree, manifest, short=short)
    tally.counted(got, "short_parent")
    parent, parent_count = got.instructions, got
    if full is None or parent is None:
        return None
    wall, cpu = candidate_limits(parent_count)
    got = count_cached(
        sandbox, candidate_tree, manifest, cand_dir, wall_limit=wall, short=short, cpu_limit=cpu
    )
    tally.counted(got, "short")
    count, failure = got.instructions, got.failure
    if count is None:
        kind, detail = failure or ("exit", "?")
        return kind, (
            f"candidate failed at the short count, where its parent did not: {detail} "
            f"({limits_said(parent_count)})"
        )
    gain = tally.stages["short_gain"] = rules.short_gain(parent, count, full, manifest.fitness)
    if rules.short_passes(gain, manifest.fitness):
        return None
    return "short", rules.short_reason(parent, count, gain, manifest.fitness)
