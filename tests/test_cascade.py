"""The evaluation cascade: failing tests stop early, a clearly slower candidate is rejected
at the quick run without the exact count, a faster one is always counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cascadekit import FASTER, SLOWER, counted_tiny, variant

from actors.governor import judge
from actors.verdicts import verdicts
from events.store import GenomeStore
from evolution.cascade import QUICK_FLOOR, failfast, quick_reason, quick_verdict
from evolution.generate import Candidate
from evolution.manifest import Manifest, parse_manifest
from evolution.patch import make_patch
from evolution.policy import Policy
from evolution.tree import version_id
from runtime.incubation import incubate
from runtime.sandbox import Sandbox

TINY = Path(__file__).parent / "data" / "tiny"


# ---- the rules (pure) ------------------------------------------------------------------


def test_failfast_knows_unittest_and_pytest_and_leaves_other_commands_alone() -> None:
    unittest = ["python", "-m", "unittest", "discover", "-s", "tests", "-q"]
    assert failfast(unittest) == [*unittest, "--failfast"]
    assert failfast(["python", "-S", "-m", "unittest"]) == [
        "python",
        "-S",
        "-m",
        "unittest",
        "--failfast",
    ]
    assert failfast(["pytest", "-q", "tests"]) == ["pytest", "-q", "tests", "-x"]
    assert failfast(["python3", "-m", "pytest"]) == ["python3", "-m", "pytest", "-x"]
    assert failfast(["python", "run_tests.py", "-m", "unittest"]) == [
        "python",
        "run_tests.py",
        "-m",
        "unittest",
    ]
    assert failfast(["make", "test"]) == ["make", "test"]
    assert failfast(["pytest", "-x"]) == ["pytest", "-x"], "not twice"
    assert failfast([]) == []


def test_one_pair_at_the_floor_passes_only_every_pair_below_it_rejects() -> None:
    assert quick_verdict([0.95]) == "pass"
    assert quick_verdict([0.5]) == "more"
    assert quick_verdict([0.5, 0.6]) == "more"
    assert quick_verdict([0.5, 0.6, 0.7]) == "reject"
    assert quick_verdict([0.5, 0.6, QUICK_FLOOR]) == "pass", "the floor itself passes"
    assert quick_verdict([0.5, 0.99, 0.5]) == "pass"
    reason = quick_reason([0.71, 0.64, 0.70])
    assert reason.startswith("rejected at the quick run: 0.71× its parent at best")
    assert "3 timed pairs" in reason and "0.90× floor" in reason


def test_the_manifest_sets_the_floor_and_zero_turns_the_quick_run_off() -> None:
    text = (TINY / "genome.toml").read_text()
    assert parse_manifest(text).fitness.quick == 0, "off unless asked for"
    on = parse_manifest(text.replace("rounds = 3", f"rounds = 3\nquick = {QUICK_FLOOR}"))
    assert on.fitness.quick == QUICK_FLOOR
    with pytest.raises(Exception, match="quick"):
        parse_manifest(text.replace("rounds = 3", "rounds = 3\nquick = 1.5"))


# ---- on a real sandbox, with the real counter -----------------------------------------


@pytest.fixture
def counted() -> Iterator[tuple[Sandbox, Manifest, dict[str, str]]]:
    with counted_tiny(f"quick = {QUICK_FLOOR}") as made:
        yield made


BROKEN = ("return total\n", "return total + 1\n")


def test_a_slower_candidate_is_rejected_at_the_quick_run_without_the_count(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    slower = variant(tree, *SLOWER)
    report = incubate(sandbox, manifest, "slow", tree, slower)
    assert report.failure == "quick", report
    assert report.detail.startswith("rejected at the quick run:"), report.detail
    ran = set(report.extra)
    assert {"stage:tests", "stage:quick"} <= ran
    assert "stage:count" not in ran and "stage:count_parent" not in ran, "no exact count was run"
    # the parent's figure is now known: a slower candidate's single run against it is not
    # enough to reject, the three pairs still decide
    again = incubate(sandbox, manifest, "slow2", tree, variant(tree, *SLOWER, "# again\n"))
    assert again.failure == "quick" and "3 timed pairs" in again.detail, again.detail
    # without the cascade the same candidate is counted, and loses on the count
    plain = incubate(sandbox, manifest, "slow", tree, slower, cascade=False)
    assert (
        plain.failure is None and "stage:count" in plain.extra and "stage:quick" not in plain.extra
    )
    assert plain.candidate_samples[0] > plain.parent_samples[0]


def test_a_faster_candidate_is_never_rejected_by_the_quick_run(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    faster = variant(tree, *FASTER)
    for attempt in range(3):  # the quick run is timed: it must pass every time
        # a new tree each time (a comment), so its count is not cached and the quick run runs
        faster = variant(tree, FASTER[0], FASTER[1], FASTER[2] + f"# attempt {attempt}\n")
        report = incubate(sandbox, manifest, f"fast{attempt}", tree, faster)
        assert report.failure is None, report
        assert {"stage:tests", "stage:quick", "stage:count"} <= set(report.extra)
        assert report.candidate_samples[0] < report.parent_samples[0], "it was counted, and won"
        if attempt:  # the parent's figure is known: one quick run, not a pair
            assert report.runs == 3, report  # tests, one quick run, the count
    # counted once already: the quick run is not paid again
    again = incubate(sandbox, manifest, "fast", tree, faster)
    assert "stage:quick" not in again.extra and again.failure is None


def test_a_candidate_failing_its_tests_never_reaches_the_benchmark(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    broken = variant(tree, *BROKEN)  # breaks test_count and test_empty
    report = incubate(sandbox, manifest, "broken", tree, broken)
    assert not report.tests_passed
    assert set(report.extra) == {"stage:copy", "stage:tests", "cpu:tests"}
    assert "failures=1" in report.detail, "the tests stopped at the first failure"
    whole = incubate(sandbox, manifest, "broken", tree, broken, cascade=False)
    assert not whole.tests_passed and "failures=2" in whole.detail, (
        "without it, the whole suite ran"
    )


def test_the_quick_runs_reason_is_kept_in_the_log(counted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    slower = variant(tree, *SLOWER)
    version = version_id(tree)
    candidate = Candidate(
        "slow", version, make_patch(tree, slower), "local_alias", "local_alias", "tiny/core.py",
        "count_common", 1, "a slower rewrite",
    )  # fmt: skip
    report = incubate(sandbox, manifest, candidate.id, tree, slower)
    judged = [judge(manifest, tree, candidate, report, Policy(threshold=1.1), 1)]
    records, adoption, held = verdicts([candidate], [report], judged, version, tree)
    with GenomeStore.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.register("tiny", tree["genome.toml"], tree, 1.0, "n1")
        store.record_cycle(
            "tiny", "n1", evaluated=records, adopted=adoption, held=held, cycle=1, seed=1
        )
        (row,) = [e.data for e in store.log(genome="tiny") if e.type == "CandidateEvaluated"]
    assert row["verdict"] == "reject"
    assert any("rejected at the quick run:" in reason for reason in row["reasons"]), row["reasons"]


def test_a_quick_run_too_short_to_time_leaves_the_candidate_to_the_count(counted) -> None:  # type: ignore[no-untyped-def]
    """A fast pass prints 0.0 seconds (the composition of tiny's wins did, and was lost):
    no figure is no evidence, so the candidate is counted, never rejected for it."""
    sandbox, manifest, tree = counted
    faster = variant(tree, *FASTER)
    faster["bench.py"] = faster["bench.py"].replace(
        'print(json.dumps({"seconds": best}))', 'print(json.dumps({"seconds": 0.0}))'
    )
    assert faster["bench.py"] != tree["bench.py"]
    report = incubate(sandbox, manifest, "zero", tree, faster)
    assert report.failure is None and "stage:count" in report.extra, report
    assert report.candidate_samples[0] < report.parent_samples[0]
