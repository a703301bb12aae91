"""Held-out tests: the voters run them, the proposer never does and its sandbox never holds them.

A candidate that passes the visible tests but not the held-out ones is the shape of reward
hacking (a change tuned to what the proposer could see); it must be voted down and never
adopted.  Real sandboxes, real actors, and a real three-node swarm over sockets.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from swarmkit import candidate, in_process_swarm, wait

from actors.incubator import Incubator
from actors.messages import CheckHeldOut, Incubate, Validate
from actors.validator import Validator
from consensus.ledger import cycle_entry, register_entry
from evolution.errors import ManifestError
from evolution.generate import Candidate
from evolution.manifest import parse_manifest
from evolution.patch import make_patch
from evolution.tree import version_id
from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox

TINY = Path(__file__).parent / "data" / "tiny"

HELD_OUT_TEST = """import unittest

from tiny.core import count_common


class Secret(unittest.TestCase):
    def test_words_the_visible_tests_do_not_use(self):
        self.assertEqual(count_common(["and", "you", "zebra"]), 2)
"""

#: a visible test that fails if the held-out files are in its sandbox
PEEK_TEST = """import os
import unittest


class Peek(unittest.TestCase):
    def test_the_held_out_files_are_not_here(self):
        self.assertFalse(os.path.exists("held_out/test_secret.py"))
"""


def held_out_genome(root: Path, *, peek: bool = False) -> Path:
    """The tiny genome with held-out tests (and, with ``peek``, a visible test that looks for them)."""
    folder = root / "tiny"
    shutil.copytree(TINY, folder)
    (folder / "held_out").mkdir()
    (folder / "held_out" / "test_secret.py").write_text(HELD_OUT_TEST, encoding="utf-8")
    if peek:
        (folder / "tests" / "test_peek.py").write_text(PEEK_TEST, encoding="utf-8")
    manifest = folder / "genome.toml"
    text = manifest.read_text(encoding="utf-8")
    text = text.replace(
        'sources = ["tiny/*.py"]', 'sources = ["tiny/*.py"]\nheld_out = ["held_out/*"]'
    )
    text = text.replace(
        "[commands]\n",
        '[commands]\nheld_out = ["python", "-m", "unittest", "discover", "-s", "held_out", "-q"]\n',
    )
    manifest.write_text(text, encoding="utf-8")
    return folder


def without_and(tree: dict[str, str]) -> dict[str, str]:
    """A change the visible tests miss: "and" is no longer a common word."""
    child = dict(tree)
    child["tiny/core.py"] = child["tiny/core.py"].replace('    "and",\n', "", 1)
    assert child != tree
    return child


def test_the_manifest_pairs_held_out_files_with_a_command() -> None:
    base = (TINY / "genome.toml").read_text(encoding="utf-8")
    lonely = base.replace('sources = ["tiny/*.py"]', 'sources = ["tiny/*.py"]\nheld_out = ["x/*"]')
    with pytest.raises(ManifestError, match="commands.held_out is missing"):
        parse_manifest(lonely)
    empty = base.replace("[commands]\n", "[commands]\nheld_out = []\n")
    with pytest.raises(ManifestError, match="held_out"):
        parse_manifest(empty)


def test_a_held_out_file_is_never_a_source_and_is_left_out_of_what_the_proposer_sees(
    tmp_path: Path,
) -> None:
    folder = held_out_genome(tmp_path)
    manifest, tree = load_genome(folder)
    # even a sources glob that matches everything does not make a held-out file evolvable
    greedy = manifest.model_copy(
        update={"genome": manifest.genome.model_copy(update={"sources": ["*"]})}
    )
    assert greedy.is_source("tiny/core.py")
    assert not greedy.is_source("held_out/test_secret.py")
    seen = manifest.without_held_out(tree)
    assert "held_out/test_secret.py" in tree and "held_out/test_secret.py" not in seen
    assert seen["tiny/core.py"] == tree["tiny/core.py"]


def test_the_validator_votes_no_when_only_the_held_out_tests_fail(tmp_path: Path) -> None:
    manifest, tree = load_genome(held_out_genome(tmp_path))
    child = without_and(tree)
    validator = Validator.start(Sandbox(tmp_path / "sandbox"))
    try:
        ask = lambda t: validator.ask(  # noqa: E731
            Validate("tiny", "p1", version_id(t), manifest, tree, make_patch(tree, t)), timeout=120
        )
        bad = ask(child)
        assert not bad.yes and bad.reason.startswith("held-out tests fail"), bad
        good_child = dict(tree)
        good_child["tiny/core.py"] += "\n"
        good = ask(good_child)
        assert good.yes and "held-out tests pass" in good.reason, good
    finally:
        validator.stop()


def test_the_validator_votes_no_when_a_candidate_ends_its_test_runs_before_they_report(
    tmp_path: Path,
) -> None:
    """``os._exit(0)`` as soon as a test runner imports the code: both test commands
    exit 0, and neither reported; the voter compares with its parent's runs."""
    manifest, tree = load_genome(held_out_genome(tmp_path))
    validator = Validator.start(Sandbox(tmp_path / "sandbox"))
    try:
        child = dict(tree)
        child["tiny/core.py"] = (
            "import os as _os, sys as _sys\n"
            "if 'unittest' in _sys.modules:\n    _os._exit(0)\n" + tree["tiny/core.py"]
        )
        vote = validator.ask(
            Validate("tiny", "p1", version_id(child), manifest, tree, make_patch(tree, child)),
            timeout=120,
        )
        assert not vote.yes and vote.reason.startswith(
            "tests fail: its test run printed no summary"
        ), vote
        held = validator.ask(CheckHeldOut(manifest, tree, make_patch(tree, child)), timeout=120)
        assert held.passed is False and "printed no summary" in held.detail, held
    finally:
        validator.stop()


def test_the_proposers_sandbox_never_holds_the_held_out_files(tmp_path: Path) -> None:
    manifest, tree = load_genome(held_out_genome(tmp_path, peek=True))
    child = dict(tree)
    child["tiny/core.py"] += "\n"
    cand = Candidate(
        id="c1",
        parent=version_id(tree),
        patch=make_patch(tree, child),
        mutator="test",
        kind="test",
        file="tiny/core.py",
        function="count_common",
        line=1,
        description="a trailing newline",
    )
    incubator = Incubator.start(Sandbox(tmp_path / "sandbox"))
    try:
        report = incubator.ask(Incubate(manifest, tree, cand, 2), timeout=120)
    finally:
        incubator.stop()
    # the visible test_peek fails wherever held_out/test_secret.py exists
    assert report.tests_passed, report.failure or report.detail


def test_a_swarm_votes_down_a_candidate_that_fails_only_the_held_out_tests(tmp_path: Path) -> None:
    folder = held_out_genome(tmp_path)
    with in_process_swarm(tmp_path / "swarm", folder) as nodes:
        _, tree = load_genome(folder)
        nodes[0].propose(
            register_entry("tiny", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
        )
        wait(lambda: all("tiny" in n.store.genomes() for n in nodes), what="registration")
        child = without_and(tree)
        _, bad = candidate(tree, '    "and",\n', "")
        assert bad.version == version_id(child)
        nodes[0].propose(cycle_entry("tiny", nodes[0].id, 1, 3, [], [], bad, time.time()))
        wait(
            lambda: all(
                not n.store.head("tiny").proposals and n.counters["rejected"] for n in nodes
            ),
            what="rejection on all nodes",
        )
        assert {n.store.head("tiny").version for n in nodes} == {version_id(tree)}
        reasons = [
            e.data["reason"]
            for e in nodes[2].store.log(genome="tiny")
            if e.type == "VoteCast" and not e.data["yes"]
        ]
        assert reasons and all(r.startswith("held-out tests fail") for r in reasons), reasons


def test_a_single_node_runs_the_held_out_tests_before_it_adopts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no voters, the node itself runs them after its verdict: `capped` (faster, every
    visible test passing, wrong on chains the held-out tests check) is never adopted; a
    right candidate of the same cycle is.  Both are real files in tests/data."""
    from fitkit import collatz, planted

    from node import Node, NodeConfig

    folder = collatz(tmp_path)
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work",
        incubators=2, candidates_per_cycle=2,
    )  # fmt: skip
    with Node(config) as node:
        name, _ = node.register(folder)
        before = node.store.head(name).version
        with planted(monkeypatch, ["capped"]):
            alone = node.evolve(name, cycles=1, seed=5)
        assert alone.adopted == [] and node.store.head(name).version == before
        with planted(monkeypatch, ["capped", "memo_small"]):
            both = node.evolve(name, cycles=2, seed=5)
        rows = [e.data for e in node.store.log(genome=name) if e.type == "CandidateEvaluated"]
        head = node.store.head(name)
    capped = [r for r in rows if r["mutator"] == "capped"]
    assert capped and all(r["verdict"] == "reject" for r in capped), capped
    assert capped[0]["reasons"][0].startswith("held-out tests fail"), capped[0]["reasons"]
    assert any("meets threshold" in r for r in capped[0]["reasons"]), (
        "its visible evidence was good"
    )
    (small,) = [r for r in rows if r["mutator"] == "memo_small"]
    assert small["verdict"] == "adopt" and both.adopted == [head.version]
    assert "count < 60" not in head.tree["collatz/core.py"]
