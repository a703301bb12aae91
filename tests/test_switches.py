"""The benchmarks' switches really switch: composition off, the plain and the random planner."""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.messages import PlanCycle
from evolution.compose import COMPOSED
from evolution.errors import ConfigError
from evolution.planner import Outcomes, plan, random_plan
from node import Node, NodeConfig

TINY = Path(__file__).parent / "data" / "tiny"


@dataclass(frozen=True)
class Opp:
    file: str
    function: str
    line: int
    kind: str
    evidence: str = "hot loop"
    expected_gain: float = 1.5
    confidence: float = 0.8
    weight: float = 2.0


def _opps() -> list[Opp]:
    return [
        Opp("a.py", f"f{i}", i, kind, expected_gain=gain)
        for i, (kind, gain) in enumerate(
            [("memoize", 2.0), ("set_membership", 1.3), ("local_alias", 1.01)] * 4
        )
    ]


def test_random_plan_draws_uniformly_among_applicable_pairs_and_is_seeded() -> None:
    opps = _opps()
    first = random_plan(opps, rng=random.Random(1), limit=3)
    assert first == random_plan(list(reversed(opps)), rng=random.Random(1), limit=3)
    assert all("drawn at random among 12" in p.reason for p in first)
    # over many seeds every pair is drawn, the weakest as often as the strongest
    drawn: dict[str, int] = {}
    for seed in range(400):
        for p in random_plan(opps, rng=random.Random(seed), limit=1):
            drawn[p.opportunity.kind] = drawn.get(p.opportunity.kind, 0) + 1
    assert set(drawn) == {"memoize", "set_membership", "local_alias"}
    assert min(drawn.values()) > 90, drawn
    ranked = plan(opps, Outcomes(), risks={}, rng=random.Random(1), limit=3)
    assert [p.opportunity.kind for p in ranked] == ["memoize"] * 3, "the bandit ranks by gain"


def test_priors_off_start_every_arm_uniform() -> None:
    opps = _opps()[:1]
    weighted = plan(opps, Outcomes(), risks={}, rng=random.Random(1), limit=1, explore=False)
    uniform = plan(
        opps, Outcomes(), risks={}, rng=random.Random(1), limit=1, explore=False, priors=False
    )
    assert "(mean 0.83)" in weighted[0].reason and "(mean 0.50)" in uniform[0].reason


def test_an_unknown_planner_is_refused_with_the_choices(tmp_path: Path) -> None:
    config = NodeConfig("n1", f"sqlite:///{tmp_path / 's.db'}", tmp_path / "w", incubators=1)
    with Node(config) as node:
        name, _ = node.register(TINY)
        with pytest.raises(ConfigError) as caught:
            node.coordinator(name).__class__(
                node.store, node.supervisor, name, "n1", planner="smart"
            )
    assert "learning, plain, random" in caught.value.hint


@pytest.fixture
def tiny_node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Node, Path]]:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    settings: dict[str, Any] = getattr(request, "param", {})
    manifest = folder / "genome.toml"
    text = manifest.read_text()
    if settings.get("counted"):
        if shutil.which("valgrind") is None:
            pytest.skip("valgrind is not installed")
        text = text.replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    else:
        text = text.replace("threshold = 1.10", "threshold = 99.0")
    manifest.write_text(text)
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work",
        candidates_per_cycle=settings.get("candidates", 1), incubators=1,
        planner=settings.get("planner", "learning"), compose=settings.get("compose", True),
    )  # fmt: skip
    with Node(config) as node:
        yield node, folder


@pytest.mark.parametrize("tiny_node", [{"planner": "random"}], indirect=True)
def test_the_random_planner_reaches_the_planner_actor(tiny_node: tuple[Node, Path]) -> None:
    node, folder = tiny_node
    name, _ = node.register(folder)
    asked: list[tuple[Any, Any]] = []
    ask = node.supervisor.ask

    def spy(role: str, message: Any, *args: Any, **kwargs: Any) -> Any:
        answer = ask(role, message, *args, **kwargs)
        asked.append((message, answer))
        return answer

    node.supervisor.ask = spy  # type: ignore[method-assign]
    node.evolve(name, cycles=1, seed=1)
    (planned,) = [(m, a) for m, a in asked if isinstance(m, PlanCycle)]
    assert planned[0].mode == "random"
    assert planned[1] and all("drawn at random" in p.reason for p in planned[1])


@pytest.mark.slow  # six counted candidates: about 30 s here
@pytest.mark.parametrize(
    "tiny_node",
    # plain: test_compose's planner (the learning one tries the second winner a cycle later)
    [{"counted": True, "compose": False, "candidates": 6, "planner": "plain"}],
    indirect=True,
)
def test_composition_off_adopts_a_single_winner(tiny_node: tuple[Node, Path]) -> None:
    """The setting of test_compose's cycle (two winners, composed with it on): no composition."""
    node, folder = tiny_node
    name, _ = node.register(folder)
    node.evolve(name, cycles=1, seed=3)
    entries = list(node.store.log(genome=name))
    evaluated = [e.data for e in entries if e.type == "CandidateEvaluated"]
    assert len([r for r in evaluated if r["verdict"] == "adopt"]) >= 2, evaluated
    assert not [r for r in evaluated if r["mutator"] == COMPOSED]
    (adopted,) = [e.data for e in entries if e.type == "VersionAdopted"]
    assert adopted["mutator"] != COMPOSED
