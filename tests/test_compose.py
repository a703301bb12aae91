"""Composition of winners: a cycle's passing candidates merged into one, proven, adopted if better."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolution.compose import COMPOSED, compose
from evolution.generate import Candidate, candidate_id
from evolution.patch import apply_patch, make_patch
from evolution.tree import version_id
from node import Node, NodeConfig
from runtime.genome_files import load_genome

TINY = Path(__file__).parent / "data" / "tiny"
SET_LINE = "COMMON_SET = frozenset(COMMON)\n"


def _tree() -> dict[str, str]:
    return load_genome(TINY)[1]


def _candidate(tree: dict[str, str], cid: str, old: str, new: str) -> Candidate:
    child = dict(tree)
    core = child["tiny/core.py"]
    anchor = "\n\n\ndef count_common"
    assert old in core and anchor in core
    core = core.replace(old, new).replace(anchor, "\n" + SET_LINE + anchor, 1)
    child["tiny/core.py"] = core
    patch = make_patch(tree, child)
    return Candidate(
        cid, version_id(tree), patch, "set_membership", "set_membership", "tiny/core.py", "f", 1, ""
    )


def test_two_winners_in_different_functions_merge_into_one_candidate() -> None:
    tree = _tree()
    count = _candidate(tree, "a", "if word in COMMON:", "if word in COMMON_SET:")
    summ = _candidate(tree, "b", "if word not in COMMON:", "if word not in COMMON_SET:")
    composed = compose(tree, version_id(tree), [count, summ])
    assert composed is not None and composed.mutator == COMPOSED
    merged = apply_patch(tree, composed.patch)["tiny/core.py"]
    assert "if word in COMMON_SET:" in merged and "if word not in COMMON_SET:" in merged
    assert merged.count(SET_LINE) == 1, "the line both added is added once"
    assert composed.id == candidate_id(version_id(tree), composed.patch)
    assert "a" in composed.description and "b" in composed.description


def test_conflicting_or_redundant_winners_are_left_out() -> None:
    tree = _tree()
    count = _candidate(tree, "a", "if word in COMMON:", "if word in COMMON_SET:")
    clash = _candidate(tree, "c", "if word in COMMON:", "if COMMON_SET.__contains__(word):")
    assert compose(tree, version_id(tree), [count, clash]) is None  # same line, both changed
    assert compose(tree, version_id(tree), [count, count]) is None  # adds nothing
    assert compose(tree, version_id(tree), [count]) is None
    summ = _candidate(tree, "b", "if word not in COMMON:", "if word not in COMMON_SET:")
    kept = compose(tree, version_id(tree), [count, clash, summ])
    assert kept is not None
    assert kept.description.endswith("winners: set_membership a, set_membership b")


@pytest.fixture
def counted_node(tmp_path: Path) -> Iterator[tuple[Node, Path]]:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed: the exact measure falls back to timing")
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    manifest = folder / "genome.toml"
    manifest.write_text(
        manifest.read_text().replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    )
    # The plain planner tries every site in the first cycle: the learning one tries a
    # site its profile predicts at 1.000× (count_common's scan, blind to the counting
    # clock) only once its kind has paid, a cycle later (docs/planner.md "Slots").
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work", candidates_per_cycle=6,
        planner="plain",
    )  # fmt: skip
    with Node(config) as node:
        yield node, folder


def test_a_cycle_with_two_winners_adopts_their_composition(counted_node: tuple[Node, Path]) -> None:
    node, folder = counted_node
    name, _ = node.register(folder)
    node.evolve(name, cycles=1, seed=3)
    entries = list(node.store.log(genome=name))
    evaluated = [e.data for e in entries if e.type == "CandidateEvaluated"]
    singles = [r for r in evaluated if r["mutator"] != COMPOSED and r["verdict"] == "adopt"]
    composed = [r for r in evaluated if r["mutator"] == COMPOSED]
    assert len(singles) >= 2, evaluated
    assert len(composed) == 1 and composed[0]["verdict"] == "adopt", composed
    (adopted,) = [e.data for e in entries if e.type == "VersionAdopted"]
    assert adopted["mutator"] == COMPOSED
    assert adopted["ratio"] > max(r["ratio"] for r in singles), "it beats the best single winner"
    # every single winner's record, and its reasons, stay in the log
    assert all(r["reasons"] for r in singles)


def test_exact_gains_below_the_threshold_are_merged_timed_ones_are_not() -> None:
    from actors.verdicts import winners
    from evolution.policy import Decision, Evidence
    from evolution.stats import Comparison, exact

    tree = _tree()
    a = _candidate(tree, "a", "if word in COMMON:", "if word in COMMON_SET:")
    b = _candidate(tree, "b", "if word not in COMMON:", "if word not in COMMON_SET:")
    small = Decision("reject", ("gain 1.0100× below threshold 1.02×",))

    def judged(comparison: Comparison, tests: bool = True) -> tuple[Decision, Evidence]:
        return small, Evidence(tests, comparison, 2, ("tiny/core.py",), (), ())

    both_exact = [judged(exact(100.0, 99.0, direction="minimize"))] * 2
    assert [c for _, c in winners([a, b], both_exact)] == [a, b]
    timed = Comparison(ratio=1.01, low=0.99, high=1.03, rounds=5, confidence=0.95)
    assert winners([a, b], [judged(timed), judged(timed)]) == []
    no_gain = [judged(exact(100.0, 100.0, direction="minimize"))] * 2
    assert winners([a, b], no_gain) == []
    layout = [judged(exact(1000.0, 997.0, direction="minimize"))] * 2  # 0.3 %: code layout
    assert winners([a, b], layout) == []
    failing = [judged(exact(100.0, 99.0, direction="minimize"), tests=False)] * 2
    assert winners([a, b], failing) == []


def test_gains_found_in_different_cycles_on_one_version_are_merged_together() -> None:
    """The memory keeps exact gains per version across cycles, and rebuilds them from the log."""
    from evolution.memory import SearchMemory

    tree = _tree()
    version = version_id(tree)
    a = _candidate(tree, "a", "if word in COMMON:", "if word in COMMON_SET:")
    b = _candidate(tree, "b", "if word not in COMMON:", "if word not in COMMON_SET:")
    memory = SearchMemory()
    assert memory.mergeable(version, [(1.01, a)]) == [a]  # cycle 2: one gain, nothing to merge
    assert memory.mergeable(version, [(1.02, b)]) == [b, a]  # cycle 3: two, best first
    assert compose(tree, version, memory.mergeable(version, [])) is not None
    assert memory.mergeable("another-version", []) == []

    def row(c: Candidate, ratio: float, **changes: object) -> dict[str, object]:
        base = {
            "candidate": c.id, "parent": version, "patch": c.patch, "mutator": c.mutator,
            "kind": c.kind, "verdict": "reject", "ratio": ratio, "low": ratio, "high": ratio,
            "tests_passed": True,
        }  # fmt: skip
        return {**base, **changes}

    rows = [
        row(a, 1.01),
        row(b, 1.02),
        row(b, 1.03, candidate="t", low=1.0, high=1.06),  # timed: not exact
        row(a, 1.002, candidate="l"),  # below the floor
        row(b, 1.04, candidate="f", tests_passed=False),
        row(a, 1.05, candidate="c", mutator=COMPOSED),
    ]
    rebuilt = SearchMemory.from_log(rows, lambda v: tree if v == version else None)
    assert [c.id for c in rebuilt.mergeable(version, [])] == ["b", "a"]
