"""One node evolves a real (small) genome: adoption, replay, crash recovery, determinism."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest

from actors.generator import Generator
from events.store import GenomeStore
from evolution.errors import GenomeError
from evolution.patch import apply_patch
from evolution.tree import version_id
from node import Node, NodeConfig

TINY = Path(__file__).parent / "data" / "tiny"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    config = NodeConfig(
        "n1",
        f"sqlite:///{tmp_path / 'store.db'}",
        tmp_path / "work",
        incubators=2,
        candidates_per_cycle=2,
    )
    with Node(config) as handle:
        yield handle
    assert pykka.ActorRegistry.get_all() == []


def _adoptions(store: GenomeStore, genome: str) -> list[tuple[str, str, str]]:
    return [
        (e.version or "", e.parent or "", e.data["patch"])
        for e in store.log(genome=genome)
        if e.type == "VersionAdopted"
    ]


def test_node_adopts_and_every_version_replays(node: Node) -> None:
    name, new = node.register(TINY)
    assert (name, new) == ("tiny", True)
    first = node.store.head(name)
    summary = node.evolve(name, cycles=2, seed=3)
    head = node.store.head(name)
    assert head.cycles_completed == 2
    adoptions = _adoptions(node.store, name)
    assert adoptions, "the list scan in tiny/core.py should have been replaced"
    assert summary.adopted == [v for v, _, _ in adoptions]
    tree = first.tree
    for version, parent, patch in adoptions:
        assert parent == version_id(tree)
        tree = apply_patch(tree, patch)
        assert version_id(tree) == version
        assert node.store.materialise(name, version) == tree
    assert head.version == version_id(tree) == version_id(head.tree)
    assert "COMMON" in head.tree["tiny/core.py"]
    node.store.verify()


def test_registering_twice_resumes(node: Node) -> None:
    assert node.register(TINY) == ("tiny", True)
    assert node.register(TINY) == ("tiny", False)


def test_genome_whose_tests_fail_is_refused_and_nothing_is_written(
    node: Node, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(TINY, broken)
    test = broken / "tests" / "test_core.py"
    test.write_text(test.read_text().replace("3)", "4)"))
    with pytest.raises(GenomeError, match="its own tests fail before any change"):
        node.register(broken)
    assert list(node.store.log()) == []


def test_crashed_generator_is_restarted_and_the_cycle_completes(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = node.register(TINY)
    calls = {"n": 0}
    original = Generator.on_generate

    def flaky(self: Generator, message: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("generator bug")
        return original(self, message)  # type: ignore[arg-type]

    monkeypatch.setattr(Generator, "on_generate", flaky)
    node.evolve(name, cycles=1, seed=3)
    assert node.supervisor.restarts("generator") == 1
    assert node.store.head(name).cycles_completed == 1


def test_a_candidate_judged_on_a_version_is_not_tried_again(node: Node) -> None:
    from evolution.policy import Policy

    name, _ = node.register(TINY)
    # Nothing can meet a 100x threshold: the head never moves, so every cycle plans on it.
    summary = node.coordinator(name, policy=Policy(threshold=100.0)).run(3, seed=3)
    evaluated = [
        (e.data["parent"], e.data["candidate"])
        for e in node.store.log(genome=name)
        if e.type == "CandidateEvaluated"
    ]
    assert len(evaluated) == len(set(evaluated)), "a verdict stands until the head moves"
    assert len(evaluated) >= 2, "the tiny genome's two sites were judged"
    # Once every site was rejected on unchanged code, the run ends and says why, instead
    # of planning the same rejected rewrites again.
    assert summary.stopped is not None and "rejected" in summary.stopped, summary
    # A coordinator built afresh from the log (a restart, a new leader) knows them too.
    before = len(evaluated)
    again_summary = node.coordinator(name, policy=Policy(threshold=100.0)).run(4, seed=3)
    again = [
        (e.data["parent"], e.data["candidate"])
        for e in node.store.log(genome=name)
        if e.type == "CandidateEvaluated"
    ]
    assert again_summary.stopped is not None, "the memory rebuilt from the log stops it too"
    assert len(again) == len(set(again)) and len(again) >= before


def test_the_best_exact_winner_is_adopted_not_the_first(node: Node) -> None:
    """Two candidates pass with exact counts: the bigger gain wins, whatever the plan order."""
    from actors.verdicts import verdicts
    from evolution.generate import Candidate
    from evolution.patch import make_patch
    from evolution.policy import Decision, Evidence
    from evolution.stats import exact
    from runtime.incubation import IncubationReport

    name, _ = node.register(TINY)
    head = node.store.head(name)
    tree = head.tree

    def candidate(cid: str, text: str) -> Candidate:
        child = dict(tree)
        child["tiny/core.py"] += text
        return Candidate(cid, head.version, make_patch(tree, child), "m", "k", "f", "g", 1, "")

    small, big = candidate("a", "\n# a\n"), candidate("b", "\n# b\n")
    counts = {"a": 900.0, "b": 500.0}  # parent 1000: a is 1.11x, b is 2x
    reports = [
        IncubationReport(c.id, True, None, "ok", (1000.0,), (counts[c.id],), measure="instructions")
        for c in (small, big)
    ]
    judged = []
    for c in (small, big):
        comparison = exact(1000.0, counts[c.id], direction="minimize")
        evidence = Evidence(True, comparison, 1, ("tiny/core.py",), (), ())
        judged.append((Decision("adopt", ("ok",)), evidence))
    _, adoption, _ = verdicts([small, big], reports, judged, head.version, tree)
    assert adoption is not None and adoption.patch == big.patch and adoption.ratio == 2.0
