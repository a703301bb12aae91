"""One timer type: cluster.yml's ``cluster.timers`` is what the Raft engine runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.engine import RaftEngine, RaftTimers
from consensus.testing import LocalHub
from evolution.errors import ConfigError
from runtime.config import Timers, parse_cluster

CLUSTER = """\
cluster:
  timers: {timers}
nodes:
  - {{id: node-1, port: 7101}}
"""


def test_raft_timers_are_the_config_type_with_the_engines_defaults() -> None:
    timers = RaftTimers()
    assert isinstance(timers, Timers)
    assert (timers.election_min, timers.election_max, timers.heartbeat) == (0.15, 0.30, 0.03)
    assert (timers.leader_fallback, timers.fallback) == (0.6, 0.6)
    assert (timers.tick, timers.removed_grace) == (0.005, 3.0)
    node = RaftTimers(election_min=0.4, election_max=0.8, heartbeat=0.08, leader_fallback=1.6)
    assert node == Timers(election_min=0.4, election_max=0.8, heartbeat=0.08, leader_fallback=1.6)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"election_min": 0.05}, "3 × heartbeat"),
        ({"election_max": 0.1}, "election_max"),
        ({"leader_fallback": 0.02}, "leader_fallback"),
        ({"tick": 0.0}, "tick"),
        ({"removed_grace": -1.0}, "removed_grace"),
    ],
)
def test_bad_engine_timers_are_a_config_error(settings: dict[str, float], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        RaftTimers(**settings)
    assert caught.value.hint and "RaftTimers(" in caught.value.hint


def test_the_files_timers_leave_the_leader_fallback_to_the_election_timeout(
    tmp_path: Path,
) -> None:
    config = parse_cluster(
        CLUSTER.format(timers="{election_min: 0.2, election_max: 0.4, heartbeat: 0.05}"),
        tmp_path / "cluster.yml",
    )
    timers = config.timers
    assert timers.leader_fallback is None and timers.fallback == 0.8  # 2 × election_max
    assert (timers.tick, timers.removed_grace) == (0.005, 3.0)
    assert Timers().fallback == 1.6  # the file's defaults: 0.4–0.8 s elections
    with pytest.raises(ConfigError, match=r"cluster\.timers.*leader_fallback \(0\.01\)"):
        parse_cluster(CLUSTER.format(timers="{leader_fallback: 0.01}"), tmp_path / "cluster.yml")


def test_the_engine_runs_on_the_files_timers(tmp_path: Path) -> None:
    hub = LocalHub()
    timers = Timers(election_min=0.2, election_max=0.4, heartbeat=0.05)
    engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal", timers)
    engine.start()
    try:
        index = engine.propose(b"on the file's timers", timeout=20.0)
        assert index > 0 and engine.status()["role"] == "leader"
    finally:
        engine.stop()
