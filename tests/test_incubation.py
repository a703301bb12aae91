"""Incubation in the real sandbox: tests gate, A/B pairs interleave, close calls get more rounds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from evolution.manifest import parse_manifest
from evolution.stats import exact
from runtime.incubation import incubate, read_instructions, run_counted
from runtime.sandbox import RunResult, Sandbox

MANIFEST = """
[genome]
name = "m"
sources = ["m.py"]
[commands]
test = ["python", "-c", "import m; assert m.ok()"]
bench = ["python", "-c", "import json, m; print(json.dumps({'seconds': m.COST}))"]
[fitness]
metric = "seconds"
direction = "minimize"
rounds = 3
"""


def tree(cost: float, ok: bool = True) -> dict[str, str]:
    return {"genome.toml": MANIFEST, "m.py": f"COST = {cost}\n\ndef ok():\n    return {ok}\n"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as box:
        yield box


def test_pairs_are_measured_and_failing_tests_stop_early(sandbox: Sandbox) -> None:
    manifest = parse_manifest(MANIFEST)
    report = incubate(sandbox, manifest, "c1", tree(2.0), tree(1.0))
    assert report.failure is None and report.tests_passed
    assert report.parent_samples == (2.0, 2.0, 2.0) and report.candidate_samples == (1.0, 1.0, 1.0)
    assert report.runs == 1 + 2 * 3
    failed = incubate(sandbox, manifest, "c2", tree(2.0), tree(1.0, ok=False))
    assert not failed.tests_passed and failed.failure == "exit" and failed.parent_samples == ()


def test_close_calls_get_more_rounds_up_to_the_limit(sandbox: Sandbox) -> None:
    manifest = parse_manifest(MANIFEST)
    asked: list[int] = []

    def undecided(parent: Sequence[float], candidate: Sequence[float]) -> bool:
        asked.append(len(parent))
        return True

    report = incubate(
        sandbox, manifest, "c", tree(2.0), tree(1.0), max_rounds=7, undecided=undecided
    )
    assert len(report.parent_samples) == 7
    assert asked == [3, 5]  # two more pairs at a time (A B, B A), never past the limit
    decided = incubate(
        sandbox, manifest, "c", tree(2.0), tree(1.0), max_rounds=7, undecided=lambda p, c: False
    )
    assert len(decided.parent_samples) == 3


# -- the exact measure: instruction counts under valgrind ------------------------------

COUNTED = """
[genome]
name = "w"
sources = ["w.py"]
[commands]
test = ["python", "-c", "import w; assert w.work() > 0"]
bench = ["python", "-c", "import json, w; w.work(); print(json.dumps({'seconds': 1.0}))"]
[fitness]
measure = "instructions"
metric = "seconds"
direction = "minimize"
threshold = 1.05
quick = 0.9
"""

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind not installed (.ci/run installs it)"
)


def work_tree(loops: int, bench_ok: bool = True) -> dict[str, str]:
    body = f"def work():\n    total = 0\n    for i in range({loops}):\n        total += i % 7\n    return total + 1\n"
    if not bench_ok:
        body += "\nimport os\nif os.environ.get('TARS_MEASURE') == 'instructions':\n    raise SystemExit(3)\n"
    return {"genome.toml": COUNTED, "w.py": body}


@needs_valgrind
def test_instruction_counts_are_exact_and_judge_without_noise(sandbox: Sandbox) -> None:
    manifest = parse_manifest(COUNTED)
    report = incubate(sandbox, manifest, "half", work_tree(200_000), work_tree(100_000))
    assert report.failure is None and report.measure == "instructions"
    (parent,), (candidate,) = report.parent_samples, report.candidate_samples
    assert parent > candidate > 0
    # Half the loop is most of the program: a clear win, measured once per side.
    comparison = exact(parent, candidate)
    assert comparison.low == comparison.ratio == comparison.high and comparison.ratio > 1.3
    # A fresh count of the same code (no cache: a new sandbox run) agrees to a few instructions.
    with sandbox.workspace(work_tree(200_000)) as workdir:
        again = read_instructions(run_counted(sandbox, workdir, manifest))
    assert abs(again - parent) / parent < 1e-4
    # The parent is counted once per version: the next candidate of it reuses the count.
    second = incubate(sandbox, manifest, "same", work_tree(200_000), work_tree(200_000))
    assert second.parent_samples == (parent,) and second.runs == 1  # only the tests ran


@needs_valgrind
def test_a_benchmark_failing_under_the_counter_fails_the_candidate(sandbox: Sandbox) -> None:
    manifest = parse_manifest(COUNTED)
    bad = work_tree(10, bench_ok=False)
    # the counter's own path (no cascade): the count fails, and says so
    report = incubate(sandbox, manifest, "bad", work_tree(1000), bad, cascade=False)
    assert report.tests_passed and report.failure == "exit"
    assert "candidate benchmark failed under the instruction counter" in report.detail
    assert report.parent_samples == () or report.candidate_samples == ()
    # with the cascade the quick run (same workload, natively) fails first: never counted
    quick = incubate(sandbox, manifest, "bad", work_tree(1000), bad)
    assert quick.failure == "exit" and "candidate failed at the quick run" in quick.detail
    assert "stage:count" not in quick.extra


def test_the_count_is_read_from_valgrind_and_garbage_is_refused() -> None:
    def result(stderr: str) -> RunResult:
        return RunResult(("valgrind",), 0, "", stderr, 1.0, None, "exit code 0")

    assert (
        read_instructions(result("==7== Command: python\n==7== I   refs:      1,099,501,911\n"))
        == 1_099_501_911
    )
    with pytest.raises(ValueError, match="no instruction count"):
        read_instructions(result("valgrind: command not found"))


def fast_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A candidate's limits as 1.5x its parent's run (at least 1 s), not 4x (at least 20 s),
    at the quick run (cascade_stages) and at the count (incubation): still a multiple of
    the parent's, reached in seconds, not tens of them."""
    import runtime.cascade_stages as stages
    import runtime.incubation as incubation

    monkeypatch.setattr(incubation, "CANDIDATE_WALL_FLOOR", 1.0)
    monkeypatch.setattr(stages, "CANDIDATE_WALL_FLOOR", 1.0)
    monkeypatch.setattr(stages, "CANDIDATE_WALL_FACTOR", 1.5)


@needs_valgrind
def test_a_benchmark_that_hangs_under_the_counter_is_stopped_at_a_multiple_of_its_parent(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_limits(monkeypatch)
    manifest = parse_manifest(COUNTED)
    hang = work_tree(10)
    hang["w.py"] += (
        "\nimport os, time\nif os.environ.get('TARS_MEASURE') == 'instructions':\n    time.sleep(3600)\n"
    )
    report = incubate(sandbox, manifest, "hangs", work_tree(2000), hang)
    assert report.tests_passed and report.failure == "timeout"
    assert "its parent's" in report.detail
    # Stopped near 1.5x the parent's run (seconds), not at the manifest's 60 s x 5.
    assert report.child_seconds < 60


def test_a_candidates_limits_follow_its_parents_cpu_not_the_machines_load() -> None:
    """A parent counted on a quiet machine (5 s of CPU in 5 s) lets its candidate spend 20 s
    of CPU and wait for a core up to 40 s: a machine 4x busier fails no candidate that
    does its parent's work.  Without CPU figures the wall limit alone, as before."""
    from runtime.cascade_stages import candidate_limits, limits_said
    from runtime.counting import Count

    quiet = Count(1e9, 0.0, 5.0, None, {}, 0.0, 5.0)
    assert candidate_limits(quiet) == (40.0, 20.0)
    assert candidate_limits(quiet, floor=30.0) == (60.0, 30.0)
    assert "5.0 s of CPU" in limits_said(quiet)
    unknown = Count(1e9, 0.0, 5.0, None, {}, 0.0, 0.0)
    assert candidate_limits(unknown) == (20.0, None)
    assert candidate_limits(Count(1e9, 0.0, 9.0, None, {})) == (36.0, None)


@needs_valgrind
def test_a_benchmark_that_loops_under_the_counter_is_stopped_on_cpu(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast_limits(monkeypatch)
    manifest = parse_manifest(COUNTED.replace("quick = 0.9", "quick = 0"))  # the count decides
    loops = work_tree(10)
    loops["w.py"] += (
        "\nimport os\nif os.environ.get('TARS_MEASURE') == 'instructions':\n    while True:\n"
        "        pass\n"
    )
    report = incubate(sandbox, manifest, "loops", work_tree(2000), loops)
    assert report.tests_passed and report.failure in ("cpu", "timeout"), report.detail
    assert "CPU time" in report.detail and "of CPU" in report.detail, report.detail


@pytest.mark.parametrize("value", ['float("nan")', 'float("inf")'])
def test_a_benchmark_printing_nan_or_inf_fails_the_candidate(sandbox: Sandbox, value: str) -> None:
    """NaN compares false with everything, so as a measurement it would slip past every
    "no gain" and "below threshold" test of the governor: it is a failed run instead."""
    manifest = parse_manifest(MANIFEST)
    hacked = tree(1.0)
    hacked["m.py"] = hacked["m.py"].replace("COST = 1.0", f"COST = {value}")
    report = incubate(sandbox, manifest, "c1", tree(2.0), hacked)
    assert report.tests_passed and report.failure == "bench-output", report
    assert "positive finite number" in report.detail and report.candidate_samples == ()
