"""The state machine's decision as a pure function (evolution.swarm.decide), without a store."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evolution.patch import PatchError, apply_patch, make_patch
from evolution.swarm import Adopt, Rebased, Reject, Waiting, decide
from evolution.tree import Tree, short, version_id

MEMBERS = ["a", "b", "c"]
BASE: Tree = {
    "genome.toml": '[genome]\nname = "g"\n',
    "core.py": "def a():\n    return 1\n\n\ndef b():\n    return 2\n\n\ndef c():\n    return 3\n",
}
V0 = version_id(BASE)


def edit(tree: Tree, old: str, new: str) -> Tree:
    return {**tree, "core.py": tree["core.py"].replace(old, new)}


def waiting(pid: str, parent: Tree, child: Tree, proposer: str = "a", **votes: bool) -> Waiting:
    return Waiting(
        pid, version_id(parent), version_id(child), make_patch(parent, child), votes, proposer
    )


def no_lookup(version: str) -> Tree:
    raise AssertionError(f"tree_of({version[:8]}) should not be needed")


ONE = edit(BASE, "return 1", "return 10")
TWO = edit(BASE, "return 3", "return 30")
CLASH = edit(BASE, "return 1", "return 11")


def test_one_yes_of_three_waits() -> None:
    assert decide([waiting("p1", BASE, ONE, a=True)], V0, BASE, MEMBERS, no_lookup) == []


def test_a_majority_of_yes_adopts() -> None:
    assert decide([waiting("p1", BASE, ONE, a=True, b=True)], V0, BASE, MEMBERS, no_lookup) == [
        Adopt("p1")
    ]


def test_a_majority_of_noes_rejects_naming_them() -> None:
    got = decide([waiting("p1", BASE, ONE, a=True, c=False, b=False)], V0, BASE, MEMBERS, no_lookup)
    assert got == [Reject("p1", "voted down by b, c")]


def test_votes_of_non_members_do_not_count() -> None:
    assert decide([waiting("p1", BASE, ONE, x=True, y=True)], V0, BASE, MEMBERS, no_lookup) == []
    assert decide([waiting("p1", BASE, ONE, x=True)], V0, BASE, ["x"], no_lookup) == [Adopt("p1")]


def test_a_clean_rebase_goes_back_to_validation_with_no_votes() -> None:
    head = version_id(ONE)
    lookup = {V0: BASE}.__getitem__
    got = decide([waiting("p2", BASE, TWO, a=True, b=True)], head, ONE, MEMBERS, lookup)
    both = edit(ONE, "return 3", "return 30")
    assert got == [Rebased("p2", version_id(both), make_patch(ONE, both), both)]
    assert apply_patch(ONE, got[0].patch) == both  # type: ignore[union-attr]


def test_a_rebase_that_conflicts_is_rejected() -> None:
    head = version_id(ONE)
    got = decide([waiting("p2", BASE, CLASH, a=True)], head, ONE, MEMBERS, {V0: BASE}.__getitem__)
    assert got == [Reject("p2", f"conflicts with head {short(head)}")]


def test_a_rebase_that_changes_nothing_is_rejected() -> None:
    head = version_id(ONE)
    got = decide([waiting("p2", BASE, ONE, b=True)], head, ONE, MEMBERS, {V0: BASE}.__getitem__)
    assert got == [Reject("p2", f"already in head {short(head)}")]


def test_two_winners_on_one_parent_never_both_become_head() -> None:
    p1 = waiting("p1", BASE, ONE, a=True, b=True)
    p2 = waiting("p2", BASE, TWO, b=True, c=True)
    both = edit(ONE, "return 3", "return 30")
    got = decide([p1, p2], V0, BASE, MEMBERS, no_lookup)
    assert got == [Adopt("p1"), Rebased("p2", version_id(both), make_patch(ONE, both), both)]
    # submission order decides which one: the other way round, p2 wins and p1 is rebased
    got = decide([p2, p1], V0, BASE, MEMBERS, no_lookup)
    assert got[0] == Adopt("p2") and isinstance(got[1], Rebased) and got[1].id == "p1"
    assert got[1].tree == both, "the same merge, reached from the other side"


def test_a_conflicting_second_winner_is_rejected_after_the_first_is_adopted() -> None:
    p1 = waiting("p1", BASE, ONE, a=True, b=True)
    p2 = waiting("p2", BASE, CLASH, a=True, b=True, c=True)
    got = decide([p1, p2], V0, BASE, MEMBERS, no_lookup)
    assert got == [Adopt("p1"), Reject("p2", f"conflicts with head {short(version_id(ONE))}")]


def test_a_proposal_on_top_of_another_is_adopted_after_it() -> None:
    child = edit(ONE, "return 2", "return 20")
    p2 = waiting("p2", ONE, child, a=True, c=True)  # waits for p1: its parent is not the head yet
    p1 = waiting("p1", BASE, ONE, a=True, b=True)
    got = decide([p2, p1], V0, BASE, MEMBERS, {version_id(ONE): ONE}.__getitem__)
    # p2's parent is not the head: rebased first (onto BASE), then p1 is adopted and the
    # rebased p2 (now on BASE) is rebased again onto p1's version, with no votes left
    assert [type(d) for d in got] == [Rebased, Adopt, Rebased]
    assert got[2].tree == child  # type: ignore[union-attr]


def test_the_same_input_gives_the_same_decisions_and_is_not_mutated() -> None:
    proposals = [
        waiting("p1", BASE, ONE, a=True, b=True),
        waiting("p2", BASE, TWO, c=True),
        waiting("p3", BASE, CLASH, b=False, c=False),
    ]
    frozen = [w._replace(votes=dict(w.votes)) for w in proposals]
    runs = [decide(proposals, V0, BASE, MEMBERS, no_lookup) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert [d.id for d in runs[0]] == ["p1", "p2", "p3"]
    assert proposals == frozen


def test_a_failing_lookup_or_patch_raises_and_decides_nothing() -> None:
    def gone(version: str) -> Tree:
        raise KeyError(version)

    with pytest.raises(KeyError):
        decide([waiting("p2", BASE, TWO, a=True)], version_id(ONE), ONE, MEMBERS, gone)
    broken = waiting("p1", BASE, ONE, a=True, b=True)._replace(
        patch="--- a/nothing\n+++ b/nothing\n@@ -1 +1 @@\n-x\n+y\n", parent="0" * 64
    )
    with pytest.raises(PatchError):
        decide([broken], V0, BASE, MEMBERS, {"0" * 64: BASE}.__getitem__)


def test_the_decision_module_stays_pure() -> None:
    code = (
        "import sys, evolution.swarm; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'events', 'consensus', 'runtime', 'actors', 'eventsourcing', 'zmq', 'pysyncobj'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
