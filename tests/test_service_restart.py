"""A node stopped mid-rollout, on the real service: the rest of the swarm is untouched, and
the node, restarted from its state folder, aborts the dead rollout in the log and rolls the
head out again from step 1 (issue 11; docs/rollouts.md "Restart" and "Wiring")."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from servicekit import SVC, get
from swarmkit import wait
from test_service_node import Load, adopt, answer

from cli.demo import write_cluster
from consensus.ledger import register_entry
from events.domain import rollouts_of
from evolution.errors import UnknownGenomeError
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import load_cluster
from runtime.genome_files import load_genome
from runtime.launcher import ProcessLauncher, node_command
from runtime.service.front import Front
from runtime.testing import processes_with

#: long steps: a rollout of six one-second windows is still running when the node stops
ROLLOUT = """
[rollout]
interval = 1.0
steps = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
min_requests = 5
mirror = 0.5
ready_timeout = 10.0
p99_floor = 0.1
"""


@pytest.mark.slow
def test_a_node_stopped_mid_rollout_comes_back_on_blue_aborts_and_rolls_out_again(
    tmp_path: Path,
) -> None:
    """Three real SwarmNodes serve svc; a good version is adopted; one node is stopped
    while its rollout is stepping (no clean end: its green dies with it). The other two
    serve on under load, lose no request, promote, and keep the same head. The stopped
    node, started again from the same cluster.yml and state folder, serves blue on what it
    served before (not the head), records the dead rollout as aborted, rolls the head out
    again from step 1 and promotes it: then every node serves the good version."""
    _, base = load_genome(SVC)
    tree = {**base, "genome.toml": base["genome.toml"] + ROLLOUT}
    first = version_id(tree)
    config = load_cluster(write_cluster(tmp_path, 3, SVC, 1, 1, 3, 1))
    config.ensure_keys()
    nodes = [SwarmNode(config, node_id, evolve=False) for node_id in config.ids]
    started: list[SwarmNode] = []
    try:
        for node in nodes:
            node.start()
            started.append(node)
        nodes[0].propose(
            register_entry("svc", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
        )
        fronts = [node.service.front for node in nodes]
        wait(lambda: all(answer(f, 13, 5)[0] == 200 for f in fronts), 60, "every node serves svc")
        assert {answer(f, 13, 5) for f in fronts} == {(200, 18, first)}
        victim, live = nodes[2], nodes[:2]

        def state() -> str:
            return "; ".join(
                f"{n.id}: serving {serving(n)}, head "
                f"{n.store.head('svc').version[:12]}, rollout {n.live.deployments.board.get('svc')}"
                for n in nodes
            )

        def serving(node: SwarmNode) -> dict[str, str]:
            try:
                return dict(node.service.router.serving("svc"))
            except UnknownGenomeError:  # not served yet (a node starting)
                return {}

        def phase(node: SwarmNode) -> object:
            return node.live.deployments.board.get("svc", {}).get("phase")

        good = {**tree, "svc/calc.py": tree["svc/calc.py"].replace("a + b", "b + a")}
        assert good != tree
        with Load([n.service.front for n in live]) as load:
            good_version = adopt(live[0], 1, tree, good)
            try:
                wait(lambda: phase(victim) == "stepping", 60, "the victim's rollout is stepping")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()}") from None
            assert victim.service.router.serving("svc").get("green") == good_version
            victim.stop()  # mid-rollout, no clean end: its green workers die with its service
            try:
                wait(
                    lambda: all(
                        n.service.router.serving("svc") == {"blue": good_version} for n in live
                    ),
                    120,
                    "the live nodes promoted the good version",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()}") from None
            assert {phase(n) for n in live} == {"promoted"}
            assert {n.store.head("svc").version for n in live} == {good_version}
            # the victim, restarted from its own store and journal
            again = SwarmNode(config, victim.id, evolve=False)
            nodes[2] = again
            again.start()
            started.append(again)
            wait(lambda: serving(again).get("blue"), 60, "blue serves again")
            assert serving(again)["blue"] == first  # what it served, not the head
            try:
                wait(
                    lambda: serving(again) == {"blue": good_version} and phase(again) == "promoted",
                    120,
                    "the restarted node rolled the good version out again",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {state()}") from None
            assert {answer(n.service.front, 13, 5) for n in nodes} == {(200, 18, good_version)}
        lost = [seen for seen in load.seen if seen[0] != 200]
        assert load.seen and not lost, lost[:5]
        heads = {n.store.head("svc").version for n in nodes}
        assert heads == {good_version}

        # the restarted node's own rollout steps, in its log: the dead rollout aborted because
        # the node stopped, then started again from step 1 and promoted, for the same version
        def steps_of(node: SwarmNode) -> list[tuple[str, int, str, str | None]]:
            return [
                (e.data["phase"], e.data["step"], e.data["reason"], e.version)
                for e in node.store.log(genome="svc")
                if e.type == "RolloutStepped" and e.node == again.id
            ]

        # the board says promoted before the ledger entry that records it is applied
        wait(
            lambda: (
                [s[0] for s in steps_of(again)][-1:] == ["promoted"]
                and all(steps_of(n) == steps_of(again) for n in live)
            ),
            60,
            "every node's log has the restarted node's promotion",
        )
        steps = steps_of(again)
        phases = [s[0] for s in steps]
        assert "aborted" in phases and "promoted" in phases, steps
        aborted, promoted = (
            phases.index("aborted"),
            len(phases) - 1 - phases[::-1].index("promoted"),
        )
        assert aborted < promoted, steps
        assert "the node stopped during the rollout" in steps[aborted][2], steps
        assert steps[aborted][3] == steps[promoted][3] == good_version, steps
        restarted = steps[aborted + 1]
        assert restarted[0] == "started" and restarted[2].startswith("resumed after a restart")
        assert "promoted" not in phases[:aborted], steps  # it never promoted before it stopped
    finally:
        for node in started:
            node.stop()
    wait(lambda: not processes_with(first) and not processes_with(good_version), 10, "no workers")


def _front_at(url: str | None) -> Front:
    """A Front that only carries an address, for servicekit's requests to a node process."""
    assert url is not None
    front = Front.__new__(Front)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    front.host, front.port = host, int(port)
    return front


def _health(front: Front) -> dict[str, Any]:
    """The node process's ``GET /v1/health`` for svc ({} while it does not answer or serve it)."""
    try:
        status, body, _ = get(front, "/v1/health")
    except OSError:
        return {}
    found: dict[str, Any] = body.get("genomes", {}).get("svc", {}) if status == 200 else {}
    return found


@pytest.mark.slow
def test_a_node_process_killed_with_sigkill_mid_rollout_resumes_from_the_log(
    tmp_path: Path,
) -> None:
    """The same story with a real `tars node start` process killed with SIGKILL mid-rollout
    (its peers are two in-process nodes): the peers serve on and promote; the process,
    started again on the same state folder, serves its old blue, aborts the dead rollout in
    the log, rolls the head out from step 1 and promotes it."""
    _, base = load_genome(SVC)
    tree = {**base, "genome.toml": base["genome.toml"] + ROLLOUT}
    first = version_id(tree)
    good = {**tree, "svc/calc.py": tree["svc/calc.py"].replace("a + b", "b + a")}
    config = load_cluster(write_cluster(tmp_path, 3, SVC, 1, 1, 3, 1))
    config.ensure_keys()
    victim = config.ids[2]
    command = node_command(config)
    launcher = ProcessLauncher(config, tied=True, command=lambda n: [*command(n), "--no-evolve"])
    live = [SwarmNode(config, node_id, evolve=False) for node_id in config.ids[:2]]
    started: list[SwarmNode] = []
    try:
        for node in live:
            node.start()
            started.append(node)
        launcher.start(victim)
        launcher.wait_ready(victim, timeout=90)
        front = _front_at(config.http_url(victim))
        live[0].propose(
            register_entry("svc", tree["genome.toml"], tree, 1.0, live[0].id, time.time())
        )
        wait(lambda: _health(front).get("blue") == first, 90, "the process serves svc")
        fronts = [n.service.front for n in live]
        wait(lambda: all(answer(f, 13, 5)[0] == 200 for f in fronts), 60, "the peers serve svc")

        def victims_step() -> dict[str, Any]:
            return dict(rollouts_of(live[0].store.load("svc")).get(victim) or {})

        with Load(fronts) as load:
            good_version = adopt(live[0], 1, tree, good)
            wait(
                lambda: (
                    victims_step().get("phase") == "weight"
                    and victims_step().get("version") == good_version
                ),
                90,
                "the process's rollout is past its first step",
            )
            launcher.kill(victim)  # SIGKILL to its process group: no clean end of anything
            assert not launcher.alive(victim)
            wait(
                lambda: all(
                    n.live.deployments.board.get("svc", {}).get("phase") == "promoted"
                    and n.service.router.serving("svc") == {"blue": good_version}
                    for n in live
                ),
                120,
                "the live nodes promoted the good version",
            )
            assert {n.store.head("svc").version for n in live} == {good_version}
            launcher.start(victim)
            launcher.wait_ready(victim, timeout=90)
            wait(lambda: _health(front).get("blue"), 90, "the process serves again")
            assert _health(front)["blue"] == first  # what it served, not the head
            wait(
                lambda: (
                    _health(front) == {"blue": good_version, "green": None, "weight": 0.0}
                    and victims_step().get("phase") == "promoted"
                ),
                120,
                "the restarted process rolled the good version out again and promoted it",
            )
            assert answer(front, 13, 5) == (200, 18, good_version)
        lost = [seen for seen in load.seen if seen[0] != 200]
        assert load.seen and not lost, lost[:5]
        steps = [
            (e.data["phase"], e.data["reason"], e.version)
            for e in live[0].store.log(genome="svc")
            if e.type == "RolloutStepped" and e.node == victim
        ]
        phases = [s[0] for s in steps]
        assert "aborted" in phases, steps
        aborted = phases.index("aborted")
        assert "the node stopped during the rollout" in steps[aborted][1], steps
        assert steps[aborted + 1][0] == "started", steps
        assert steps[aborted + 1][1].startswith("resumed after a restart"), steps
        assert phases[-1] == "promoted" and steps[-1][2] == steps[aborted][2] == good_version
        assert "promoted" not in phases[:aborted], steps
    finally:
        launcher.down()
        for node in started:
            node.stop()
    wait(lambda: not processes_with(first) and not processes_with(good_version), 10, "no workers")
