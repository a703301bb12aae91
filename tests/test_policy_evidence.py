"""Issue 10 item 6 on a real node: the policy weighs the evidence, not the size alone.

A 136-line patch with an exact gain of about 1.5× (instruction counts), passing the
genome's tests and its held-out tests, is adopted by a single node; the same change with
a new import of an unsafe module is held, and the held event names the rule that held it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from fitkit import CANDIDATES, collatz, planted

from evolution.patch import patch_size
from node import Node, NodeConfig
from runtime.counting import forget_counts, valgrind

#: memo_small.py (an exact 1.56× here) with its table written out: a 136-line patch
PADDING = "".join(f"# row {i}: the chain lengths below 1024 are tabled once\n" for i in range(120))
BIG = (CANDIDATES / "memo_small.py").read_text(encoding="utf-8") + PADDING


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    if valgrind() is None:
        pytest.skip("valgrind is not installed: the gain must be an exact count")
    forget_counts()
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work",
        incubators=2, candidates_per_cycle=2,
    )  # fmt: skip
    with Node(config) as handle:
        yield handle
    assert pykka.ActorRegistry.get_all() == []


@pytest.mark.slow
def test_a_big_patch_with_an_exact_gain_is_adopted_a_risky_one_held(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = node.register(collatz(tmp_path, measure="instructions"))
    risky = "import ctypes  # unused, but a new import all the same\n" + BIG
    with planted(monkeypatch, ["big", "risky"], {"big": BIG, "risky": risky}):
        summary = node.evolve(name, cycles=1, seed=5)
    entries = list(node.store.log(genome=name))
    rows = {e.data["mutator"]: e.data for e in entries if e.type == "CandidateEvaluated"}
    big, held = rows["big"], rows["risky"]
    assert patch_size(big["patch"]) == 136
    assert big["low"] == big["high"] and big["ratio"] >= 1.5, big["reasons"]
    assert big["verdict"] == "adopt", big["reasons"]
    assert summary.adopted and node.store.head(name).tree["collatz/core.py"] == BIG
    assert held["verdict"] == "hold"
    assert (
        held["reasons"][0] == "new imports need approval: ctypes (policy approval_on_new_imports)"
    )
    (requested,) = [e.data for e in entries if e.type == "ApprovalRequested"]
    assert requested["evidence"]["held_by"] == ["approval_on_new_imports"]
