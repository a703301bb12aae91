"""The Deployer on three real swarm nodes (ZeroMQ, Raft, SQLite), each with a recording service.

``Recording`` below implements ``ServiceControl`` only to stand in for the node's service
(another part of issue 11): it records what the Deployer asked and serves the windows the
test scripts, per weight.  Everything else is real: the adoption and the rollback are
committed entries, every rollout step is a ``rollout`` entry signed by its node, and each
node's Deployer is fed by its own applier, as ``node.py`` will wire it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmkit import candidate, in_process_swarm, wait

from actors.deployments import Deployments, deployer_for
from consensus.ledger import cycle_entry, register_entry, vote_entry
from evolution.errors import ConsensusError, ServiceError
from evolution.manifest import RolloutSettings
from evolution.tree import Tree, version_id
from node import SwarmNode
from runtime.genome_files import load_genome
from runtime.service.control import ColourWindow, Window

TINY = Path(__file__).parent / "data" / "tiny"
DOC = '"""How many of ``words`` are common words."""'
SETTINGS = RolloutSettings(interval=5.0)


def figures(green: int = 100, green_errors: int = 0, mismatches: int = 0) -> Window:
    example = (("summarise", '{"lines": ["x"]}', "3 != 4"),) if mismatches else ()
    return Window(
        ColourWindow("b", 1000, 0, 0.001, 0.002),
        ColourWindow("g", green, green_errors, 0.001, 0.002),
        40,
        mismatches,
        example,
        5.0,
    )


class Recording:
    """A ServiceControl that records every call and serves scripted windows (see the module)."""

    def __init__(self, blue: str) -> None:
        self.blue: str | None = blue
        self.green: str | None = None
        self.weight = 0.0
        self.mirror = 0.0
        self.calls: list[tuple[Any, ...]] = []
        self.ready = True
        #: the window served at a weight (default: a healthy one)
        self.script: Callable[[float], Window] = lambda weight: figures()
        self.lock = threading.Lock()

    def serving(self, genome: str) -> dict[str, str]:
        found = {"blue": self.blue} if self.blue else {}
        return {**found, "green": self.green} if self.green else found  # type: ignore[dict-item]

    def start_green(self, genome: str, version: str, tree: Tree, ready_timeout: float) -> None:
        assert version_id(tree) == version, "green must get the version's own tree"
        self.calls.append(("start_green", version))
        if not self.ready:
            raise ServiceError(f"green {version[:12]} did not answer within {ready_timeout:.0f} s")
        self.green = version

    def set_weight(self, genome: str, green: float) -> None:
        assert self.green is not None, "weight set with no green"
        self.calls.append(("set_weight", green))
        self.weight = green

    def set_mirror(self, genome: str, share: float) -> None:
        self.calls.append(("set_mirror", share))
        self.mirror = share

    def window(self, genome: str) -> Window:
        return self.script(self.weight)

    def promote(self, genome: str) -> None:
        self.calls.append(("promote",))
        self.blue, self.green, self.weight = self.green, None, 0.0

    def abort(self, genome: str) -> None:
        self.calls.append(("abort",))
        self.green, self.weight = None, 0.0

    def reload(self, genome: str, version: str, tree: Tree) -> None:
        self.calls.append(("reload", version))


class Rig:
    """Three nodes, each with its Recording service and its Deployments, on one test clock."""

    def __init__(self, nodes: list[SwarmNode], defaults: RolloutSettings = SETTINGS) -> None:
        self.nodes = nodes
        self.defaults = defaults  # cluster.yml's rollout settings (blue's manifest has none)
        self.now = [1000.0]
        wait(lambda: all(n.engine.leader() for n in nodes), what="a leader")
        self.leader = next(n for n in nodes if n.engine.leader() == n.id)
        for node in nodes:
            node.votes.stop()  # votes are proposed by the test: no sandbox run needed
        _, self.tree = load_genome(TINY)
        self.base = version_id(self.tree)
        self.leader.propose(
            register_entry("tiny", self.tree["genome.toml"], self.tree, 1.0, self.leader.id, 1.0)
        )
        wait(lambda: all("tiny" in n.store.genomes() for n in nodes), what="registration")
        self.services = {n.id: Recording(self.base) for n in nodes}
        self.deployers: dict[str, Deployments] = {}
        for node in nodes:
            self.attach(node, self.services[node.id])

    def attach(self, node: SwarmNode, service: Recording, propose: Any = None) -> Deployments:
        deployments = Deployments(
            node.id, node.store, service, propose or node.applier.propose, lambda: self.now[0],
            threading.Event(), defaults=self.defaults, tick=None,
        )  # fmt: skip
        votes = node.votes
        node.applier.on_applied = lambda results: (
            votes.after_apply(results),
            deployments.after_apply(results),
        )
        node.admin.ops.update(deployments.admin_ops())
        deployments.start()
        self.deployers[node.id] = deployments
        return deployments

    def adopt(self) -> str:
        _, win = candidate(self.tree, DOC, '"""Count the common words."""')
        self.leader.propose(cycle_entry("tiny", self.leader.id, 1, 3, [], [], win, 2.0))
        (pid,) = self.leader.store.head("tiny").proposals
        voter = next(n for n in self.nodes if n is not self.leader)
        voter.propose(vote_entry("tiny", pid, win.version, voter.id, True, "ok", 3.0))
        wait(
            lambda: all(n.store.head("tiny").version == win.version for n in self.nodes),
            what="adopt",
        )
        return win.version

    def at_first_step(self, version: str) -> None:
        wait(
            lambda: all(s.green == version and s.weight == 0.01 for s in self.services.values()),
            what="green at 1 % on every node",
        )

    def tick(self, *ids: str) -> None:
        self.now[0] += SETTINGS.interval
        for node_id in ids or list(self.deployers):
            self.deployers[node_id].tick()

    def steps(self, node: SwarmNode, author: str | None = None) -> list[tuple[str, str, str, str]]:
        """(author, phase, result, reason) of the rollout events in ``node``'s store."""
        return [
            (e.node, e.data["phase"], e.data["result"], e.data["reason"])
            for e in node.store.log(genome="tiny")
            if e.type == "RolloutStepped" and (author is None or e.node == author)
        ]

    def close(self) -> None:
        for deployments in self.deployers.values():
            deployments.stop()
        for deployments in self.deployers.values():
            deployments.join(10)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with in_process_swarm(tmp_path, TINY) as nodes:
        made = Rig(nodes)
        try:
            yield made
        finally:
            made.close()


def test_an_adoption_walks_every_step_to_promotion_on_every_node(rig: Rig) -> None:
    version = rig.adopt()
    rig.at_first_step(version)
    for _ in range(4):
        rig.tick()
    for node_id, service in rig.services.items():
        assert service.blue == version and service.green is None, node_id
        assert service.calls == [
            ("start_green", version),
            ("set_mirror", 0.1),
            ("set_weight", 0.01),
            ("set_weight", 0.1),
            ("set_weight", 0.5),
            ("set_weight", 1.0),
            ("set_mirror", 0.0),
            ("promote",),
        ]
    expected = ["started", "weight"] + ["analysis", "weight"] * 3 + ["analysis", "promoted"]
    wait(lambda: all(len(rig.steps(n)) == 30 for n in rig.nodes), what="every step everywhere")
    for node in rig.nodes:
        for author in rig.services:
            assert [s[1] for s in rig.steps(node, author)] == expected
        assert node.status()["counters"]["refused_signatures"] == 0
    board = rig.deployers[rig.nodes[0].id].current()["tiny"]
    assert (board["phase"], board["step"], board["weight"]) == ("promoted", 4, 1.0)
    status = rig.nodes[0].admin.handle("admin", {"op": "rollout", "genome": "tiny"})
    assert (
        status["phase"] == "promoted" and status["weight"] == 1.0 and status["last"] == "Successful"
    )


def test_a_failed_window_aborts_and_rolls_the_whole_swarm_back(rig: Rig) -> None:
    version = rig.adopt()
    rig.at_first_step(version)
    rig.tick()  # every node passes 1 %
    bad = rig.nodes[1]
    rig.services[bad.id].script = lambda weight: figures(mismatches=3)
    rig.tick(bad.id)
    wait(lambda: all(n.store.head("tiny").version == rig.base for n in rig.nodes), what="rollback")
    # the failing node: abort first, then its Failed step, then its rollback, in its name
    failed = rig.steps(bad, bad.id)[-1]
    assert failed[1:3] == ("aborted", "Failed")
    assert failed[3].startswith(
        "green answered differently on 3 of 40 mirrored requests: summarise("
    )
    for node in rig.nodes:
        last = list(node.store.log(genome="tiny"))
        rolled = [e for e in last if e.type == "RolledBack"]
        assert [(e.node, e.version) for e in rolled] == [(bad.id, rig.base)]
        assert "failed on" in rolled[0].data["reason"]
        assert node.status()["counters"]["refused_signatures"] == 0
    # every other node aborted its own green when the rollback was applied
    for node in rig.nodes:
        service = rig.services[node.id]
        wait(lambda s=service: s.green is None and s.blue == rig.base, what=f"{node.id} on blue")
        assert ("promote",) not in service.calls and service.calls[-2:][0] == ("abort",)
    others = [n for n in rig.nodes if n is not bad]
    wait(lambda: all(rig.steps(others[0], n.id)[-1][1] == "aborted" for n in others), what="aborts")
    assert "the head moved back by a rollback" in rig.steps(others[0], others[0].id)[-1][3]
    # nothing more happens on later ticks: blue runs the head everywhere
    rig.tick()
    assert all(s.green is None for s in rig.services.values())
    assert len({n.store.chain("tiny") for n in rig.nodes}) == 1


def test_a_green_that_never_becomes_ready_is_abandoned_and_blue_keeps_serving(rig: Rig) -> None:
    late = rig.nodes[2]
    rig.services[late.id].ready = False
    version = rig.adopt()
    wait(
        lambda: rig.steps(late, late.id)[-1:] and rig.steps(late, late.id)[-1][1] == "abandoned",
        what="abandoned",
    )
    author, phase, _, reason = rig.steps(late, late.id)[-1]
    assert reason.startswith("green never became ready: green ") and "did not answer" in reason
    service = rig.services[late.id]
    assert service.blue == rig.base and service.green is None
    assert service.calls == [("start_green", version)]
    rig.tick(late.id)
    assert service.calls == [("start_green", version)]  # not tried again by itself
    assert late.store.head("tiny").version == version  # and nothing rolled back


def test_people_steer_through_the_admin_channel(rig: Rig) -> None:
    node = rig.nodes[0]
    ask = lambda body: node.admin.handle("admin", body)  # noqa: E731
    version = rig.adopt()
    rig.at_first_step(version)
    assert ask({"op": "rollout", "genome": "tiny", "order": "pause"})["paused"] is True
    rig.tick(node.id)
    assert ask({"op": "rollout", "genome": "tiny"})["step"] == 1  # held
    again = ask({"op": "rollout", "genome": "tiny", "order": "pause"})
    assert again == {"ok": False, "node": node.id, "error": "the rollout of tiny is already paused"}
    assert ask({"op": "rollout", "genome": "tiny", "order": "promote"})["phase"] == "promoted"
    assert rig.services[node.id].blue == version
    nothing = ask({"op": "rollout", "genome": "tiny", "order": "abort"})
    assert not nothing["ok"] and "no rollout of tiny runs" in nothing["error"]
    same = ask({"op": "deploy", "genome": "tiny", "version": version})
    assert not same["ok"] and "already serves" in same["error"]
    unknown = ask({"op": "deploy", "genome": "tiny", "version": "feedface"})
    assert not unknown["ok"] and "feedface is not a version of tiny" in unknown["error"]
    assert not ask({"op": "rollout", "genome": "nope"})["ok"]
    # a deploy by hand of the old version: a rollout like any other, but no rollback proposal
    reply = ask({"op": "deploy", "genome": "tiny", "version": rig.base[:10]})
    assert reply["ok"] and reply["version"] == rig.base
    wait(lambda: rig.services[node.id].green == rig.base, what="green of the old version")
    rig.services[node.id].script = lambda weight: figures(green_errors=50)
    rig.tick(node.id)
    wait(lambda: rig.steps(node, node.id)[-1][1] == "aborted", what="abort")
    assert rig.services[node.id].blue == version
    assert node.store.head("tiny").version == version


def test_a_restart_mid_rollout_aborts_it_in_the_log_and_starts_again(rig: Rig) -> None:
    node = rig.nodes[0]
    version = rig.adopt()
    rig.at_first_step(version)
    rig.tick()
    assert rig.services[node.id].weight == 0.1
    rig.deployers[node.id].stop()  # the node dies at step 2: its green dies with it
    rig.deployers[node.id].join(10)
    fresh = Recording(rig.base)  # the restarted service serves blue only
    rig.services[node.id] = fresh
    rig.attach(node, fresh)
    wait(lambda: fresh.weight == 0.01, what="the rollout started again")
    wait(lambda: rig.steps(node, node.id)[-1][1] == "weight", what="the new first step recorded")
    steps = rig.steps(node, node.id)
    tail = [s[1] for s in steps]
    assert tail[-3:] == ["aborted", "started", "weight"]
    assert "the node stopped during the rollout (weight at step 2)" in steps[-3][3]
    assert steps[-2][3].startswith("resumed after a restart")
    for _ in range(4):
        rig.tick(node.id)
    assert fresh.blue == version


def test_a_rollback_lost_with_the_node_is_proposed_again_after_restart(rig: Rig) -> None:
    node = rig.nodes[2]
    lost: list[bytes] = []

    def no_rollbacks(data: bytes) -> int:
        if b"\xa8rollback" in data:
            lost.append(data)
            raise ConsensusError("the node died before its rollback was committed")
        return node.applier.propose(data)

    rig.deployers[node.id].stop()
    rig.deployers[node.id].join(10)
    rig.attach(node, rig.services[node.id], propose=no_rollbacks)
    version = rig.adopt()
    rig.at_first_step(version)
    rig.services[node.id].script = lambda weight: figures(green_errors=40)
    rig.tick(node.id)
    wait(lambda: lost, what="the rollback proposal")
    assert all(n.store.head("tiny").version == version for n in rig.nodes)
    rig.deployers[node.id].stop()
    rig.deployers[node.id].join(10)
    rig.attach(node, rig.services[node.id])
    wait(lambda: all(n.store.head("tiny").version == rig.base for n in rig.nodes), what="rollback")
    assert rig.services[node.id].green is None


def test_deployer_for_builds_the_handle_from_a_nodes_parts(rig: Rig) -> None:
    node = rig.nodes[0]
    made = deployer_for(
        node.id, node.store, Recording(rig.base), node.applier.propose, time.time, threading.Event()
    )
    assert made.id == node.id and made.tick_every is not None


def test_the_cli_asks_every_node_over_its_admin_channel(rig: Rig) -> None:
    """`tars rollout status`, `tars evolve deploy` and `tars evolve sync` against the running
    nodes, over ZeroMQ with the admin key, as a user types them."""
    from typer.testing import CliRunner

    from cli.main import app

    config = str(rig.nodes[0].cluster.path)
    runner = CliRunner()
    version = rig.adopt()
    rig.at_first_step(version)
    shown = runner.invoke(app, ["rollout", "status", "--genome", "tiny", "--config", config])
    assert shown.exit_code == 0, shown.output
    for node in rig.nodes:
        assert node.id in shown.output
    assert shown.output.count("stepping") == 3 and "1/4" in shown.output
    paused = runner.invoke(
        app, ["rollout", "pause", "-g", "tiny", "-n", rig.nodes[1].id, "-c", config]
    )
    assert paused.exit_code == 0 and "(paused)" in paused.output
    bad = runner.invoke(
        app, ["evolve", "deploy", "-g", "tiny", "--version", "feedface", "-c", config]
    )
    assert bad.exit_code != 0
    assert (
        "refused to deploy feedface of tiny" in bad.output and "not a version of tiny" in bad.output
    )
    synced = runner.invoke(app, ["evolve", "sync", "-c", config])
    assert synced.exit_code == 0, synced.output
    for node in rig.nodes:
        assert f"{node.id}: at ledger index" in synced.output
    resumed = runner.invoke(app, ["rollout", "resume", "-g", "tiny", "-c", config])
    assert resumed.exit_code == 0  # refused on two nodes (not paused), done on one
    assert resumed.output.count("refused") == 2


def test_a_node_that_had_promoted_the_bad_version_returns_to_the_rollback_target(rig: Rig) -> None:
    early, bad = rig.nodes[0], rig.nodes[1]
    version = rig.adopt()
    rig.at_first_step(version)
    reply = early.admin.handle("admin", {"op": "rollout", "genome": "tiny", "order": "promote"})
    assert reply["phase"] == "promoted" and rig.services[early.id].blue == version
    rig.services[bad.id].script = lambda weight: figures(green_errors=9)
    rig.tick(bad.id)
    wait(
        lambda: rig.services[early.id].blue == rig.base,
        what="the early node back on the old version",
    )
    assert rig.services[early.id].calls[-2:] == [("start_green", rig.base), ("promote",)]
    wait(lambda: rig.steps(early, early.id)[-1][1] == "promoted", what="its return recorded")
    assert "the swarm rolled back to" in rig.steps(early, early.id)[-2][3]


def test_a_node_killed_mid_rollout_resumes_from_the_log_when_it_starts_again(rig: Rig) -> None:
    """The whole node stops at step 2 (store, journal, transport); the others finish their
    own rollouts meanwhile; the node starts again from its state folder, reads its last
    step from the log, records the abort and rolls the head out again from the first step."""
    victim, others = rig.nodes[2], rig.nodes[:2]
    version = rig.adopt()
    rig.at_first_step(version)
    rig.tick()
    rig.deployers[victim.id].stop()
    rig.deployers[victim.id].join(10)
    victim.stop()
    for _ in range(3):
        rig.tick(*(n.id for n in others))
    assert all(rig.services[n.id].blue == version for n in others)
    again = SwarmNode(victim.cluster, victim.id, evolve=False)
    try:
        again.start()
        fresh = Recording(rig.base)  # its service came up on what it served before
        rig.services[victim.id] = fresh
        rig.attach(again, fresh)
        wait(lambda: fresh.weight == 0.01, what="the rollout started again")
        # the service moves before the step's event is committed: wait for the log too
        wait(lambda: len(rig.steps(again, victim.id)) >= 7, what="the new first step recorded")
        phases = [s[1] for s in rig.steps(again, victim.id)]
        assert phases == ["started", "weight", "analysis", "weight", "aborted", "started", "weight"]
        for _ in range(4):
            rig.tick(victim.id)
        assert fresh.blue == version and fresh.green is None
        wait(
            lambda: len({n.store.chain("tiny") for n in [*others, again]}) == 1,
            what="one chain on every node",
        )
        assert all(n.status()["counters"]["refused_signatures"] == 0 for n in [*others, again])
    finally:
        rig.deployers[victim.id].stop()
        rig.deployers[victim.id].join(10)
        again.stop()


MANIFEST = """[genome]
name = "g"
sources = ["*.py"]
[commands]
test = "python -m unittest"
bench = "python bench.py"
[fitness]
metric = "seconds"
direction = "minimize"
"""


def deployer_on(manifest: str, child_manifest: str) -> tuple[Any, Recording, list[bytes], str]:
    """A Deployer (not started: its handlers are called here directly) over a memory store
    whose head was adopted from a blue with ``manifest``, the new version carrying ``child_manifest``."""
    from test_ledger import adoption

    from actors.deployer import Deployer
    from events.store import GenomeStore

    base = {"genome.toml": manifest, "core.py": "def a():\n    return 1\n"}
    child = {"genome.toml": child_manifest, "core.py": "def a():\n    return 2\n"}
    store = GenomeStore.open("memory://")
    store.register("g", manifest, base, 1.0, "n1")
    store.adopt("g", adoption(base, child), "n1")
    service, proposed = Recording(version_id(base)), []
    deployer = Deployer(
        "n1", store, service, lambda data: proposed.append(data) or 1, lambda: 0.0, SETTINGS
    )
    return deployer, service, proposed, version_id(child)


def test_the_rollout_follows_blues_settings_not_the_new_versions() -> None:
    """The new version loosens its own [rollout]; blue's (stricter) settings are the ones used."""
    from actors.messages import HeadMoved
    from consensus.entries import decode

    blue = MANIFEST + "[rollout]\nsteps = [0.25, 1.0]\n"
    loose = MANIFEST + "[rollout]\nsteps = [1.0]\nmax_p99_ratio = 100\n"
    deployer, service, proposed, version = deployer_on(blue, loose)
    deployer.on_head_moved(HeadMoved("g", "adopted"))
    assert service.calls == [("start_green", version), ("set_mirror", 0.1), ("set_weight", 0.25)]
    assert [decode(d).phase for d in proposed] == ["started", "weight"]  # type: ignore[union-attr]


def test_a_reloadable_service_is_reloaded_in_place_not_rolled_blue_green() -> None:
    from actors.messages import HeadMoved
    from consensus.entries import decode

    reloadable = MANIFEST + "[service]\nreloadable = true\n"
    deployer, service, proposed, version = deployer_on(reloadable, reloadable)
    deployer.on_head_moved(HeadMoved("g", "adopted"))
    assert service.calls == [("reload", version)]
    steps = [decode(d) for d in proposed]
    assert (
        [(s.phase, s.reason) for s in steps]
        == [  # type: ignore[union-attr]
            ("started", f"{version[:12]} adopted"),
            ("promoted", "reloaded in place (a reloadable service)"),
        ]
    )
