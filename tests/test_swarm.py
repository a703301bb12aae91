"""Adoption by the swarm, with three real nodes in this process (real ZeroMQ, Raft, SQLite, sandbox).

The leader's evolution is switched off: the tests put proposals on the ledger themselves,
so each run takes seconds while every other part is the one a user runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import pytest
import zmq
from swarmkit import candidate, in_process_swarm, propose_retrying, spread_swarm, wait

from cli.demo import write_cluster
from consensus.ledger import cycle_entry, register_entry, vote_entry
from evolution.errors import NotCommittedError, TarsError
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import load_cluster
from runtime.genome_files import load_genome
from runtime.keys import generate_keypair

TINY = Path(__file__).parent / "data" / "tiny"


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[list[SwarmNode]]:
    with in_process_swarm(tmp_path, TINY) as nodes:
        yield nodes


def heads(nodes: list[SwarmNode]) -> set[str]:
    return {node.store.head("tiny").version for node in nodes}


def registered(nodes: list[SwarmNode]) -> dict[str, str]:
    _, tree = load_genome(TINY)
    nodes[0].propose(
        register_entry("tiny", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
    )
    wait(
        lambda: all("tiny" in n.store.genomes() for n in nodes),
        what="registration applied everywhere",
    )
    return tree


def test_peers_validate_and_the_majority_adopts_on_every_node(swarm: list[SwarmNode]) -> None:
    tree = registered(swarm)
    child, win = candidate(
        tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
    )
    swarm[1].propose(cycle_entry("tiny", swarm[1].id, 1, 3, [], [], win, time.time()))
    wait(lambda: heads(swarm) == {win.version}, what="adoption on all three nodes")
    for node in swarm:
        assert node.store.head("tiny").tree == child
    chains = {node.store.chain("tiny") for node in swarm}
    assert len(chains) == 1, "every node stored the same events with the same hash chain"
    votes = [e for e in swarm[0].store.log(genome="tiny") if e.type == "VoteCast"]
    assert {e.node for e in votes} >= {swarm[1].id}
    assert len(votes) >= 2, "the proposer's vote and at least one peer's"


def test_a_proposal_that_breaks_the_tests_is_voted_down(swarm: list[SwarmNode]) -> None:
    tree = registered(swarm)
    _, bad = candidate(tree, "total += 1", "total += 2")
    swarm[0].propose(cycle_entry("tiny", swarm[0].id, 1, 3, [], [], bad, time.time()))
    wait(
        lambda: all(not n.store.head("tiny").proposals and n.counters["rejected"] for n in swarm),
        what="rejection on all nodes",
    )
    assert heads(swarm) == {version_id(tree)}
    reasons = [
        e.data["reason"]
        for e in swarm[2].store.log(genome="tiny")
        if e.type == "VoteCast" and not e.data["yes"]
    ]
    assert reasons and all("tests fail" in r for r in reasons)


def test_rollback_through_the_ledger_rolls_every_node_back(swarm: list[SwarmNode]) -> None:
    tree = registered(swarm)
    _, win = candidate(
        tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
    )
    swarm[0].propose(cycle_entry("tiny", swarm[0].id, 1, 3, [], [], win, time.time()))
    wait(lambda: heads(swarm) == {win.version}, what="adoption")
    reply = swarm[2].admin.handle(
        "admin", {"op": "rollback", "genome": "tiny", "to": version_id(tree)[:10], "reason": "test"}
    )
    assert reply["ok"]
    refused = swarm[1].admin.handle(
        "admin", {"op": "rollback", "genome": "tiny", "to": "ffffffffff", "reason": "test"}
    )
    assert not refused["ok"] and "ffffffffff" in refused["error"]
    wait(lambda: heads(swarm) == {version_id(tree)}, what="rollback on all nodes")
    assert all(any(e.type == "RolledBack" for e in n.store.log(genome="tiny")) for n in swarm)


def test_the_clock_handed_to_a_node_stamps_the_entries_it_writes(tmp_path: Path) -> None:
    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    at = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    node = SwarmNode(config, "node-1", evolve=False, clock=at.timestamp)
    node.start()
    try:
        tree = registered([node])  # the test's entries carry the test's own time
        _, win = candidate(
            tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
        )
        node.propose(cycle_entry("tiny", node.id, 1, 3, [], [], win, time.time()))
        assert heads([node]) == {win.version}
        reply = node.admin.handle(
            "admin", {"op": "rollback", "genome": "tiny", "to": version_id(tree), "reason": "test"}
        )
        assert reply["ok"] and heads([node]) == {version_id(tree)}
        events = list(node.store.log(genome="tiny"))
        assert [e.time for e in events if e.type == "RolledBack"] == [at]
        assert all(e.time != at for e in events if e.type != "RolledBack")
    finally:
        node.stop()


def test_a_store_that_cannot_be_written_halts_applying(tmp_path: Path) -> None:
    """Fail-stop: the applier records why in ``halted`` and proposers get an error, not a hang."""
    from evolution.errors import ConsensusError

    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    node = SwarmNode(config, "node-1", evolve=False)
    node.start()
    try:
        registered([node])
        before = node.applier.applied
        node.live.stop()  # its service thread reads the store: closing it under a reader is UB
        node.store.close()  # every write now fails
        for cycle in (1, 2):
            with pytest.raises(ConsensusError, match="not applied"):
                node.propose(cycle_entry("tiny", node.id, cycle, 3, [], [], None, time.time()), 3)
        assert node.halted is not None and node.halted.startswith("applying ledger entries")
        assert node.applier.applied == before
    finally:
        node.stop()


def test_status_reports_members_leader_and_heads(swarm: list[SwarmNode]) -> None:
    registered(swarm)
    wait(lambda: all(n.status()["leader"] for n in swarm), what="leader known everywhere")
    statuses = [n.status() for n in swarm]
    assert {s["leader"] for s in statuses} == {statuses[0]["leader"]}
    assert [s["role"] for s in statuses].count("leader") == 1
    assert all(s["members"] == ["node-1", "node-2", "node-3"] for s in statuses)
    assert all(s["heads"]["tiny"]["versions"] == 1 for s in statuses)


def test_a_member_key_cannot_use_the_admin_channel(swarm: list[SwarmNode]) -> None:
    """Roles per key: with node-1's key, a rollback (or a member change) on node-2 is
    refused over the real transport and counted; nothing reaches the ledger."""
    tree = registered(swarm)
    _, win = candidate(
        tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
    )
    swarm[0].propose(cycle_entry("tiny", swarm[0].id, 1, 3, [], [], win, time.time()))
    wait(lambda: heads(swarm) == {win.version}, what="adoption")
    attacker, target = swarm[0], swarm[1]
    for body in (
        {"op": "rollback", "genome": "tiny", "to": version_id(tree), "reason": "forged"},
        {"op": "remove", "node": "node-3"},
        {"op": "block", "peers": ["node-3"]},
    ):
        with pytest.raises(TarsError, match="only from the admin key, not from node-1"):
            attacker.transport.request(target.id, "admin", body, timeout=10.0)
    assert target.status()["counters"]["refused_admin"] == 3
    assert heads(swarm) == {win.version}
    assert target.status()["members"] == ["node-1", "node-2", "node-3"]
    # nothing the attacker asked for reached the ledger (the applied index may still move:
    # a vote on the adoption validated before its decision commits after it)
    assert not [e for e in target.store.log(genome="tiny") if e.type == "RolledBack"]
    # the admin key still may
    assert target.admin.handle("admin", {"op": "status"})["node"] == target.id


def test_the_leader_refuses_an_entry_forwarded_in_another_members_name(
    swarm: list[SwarmNode],
) -> None:
    """The attack of issue 9: with one member's key, a proposal in its own name and a yes
    vote in a second member's name would adopt a version only one node proved. The
    leader checks each forwarded entry's author against the authenticated sender."""
    tree = registered(swarm)
    wait(lambda: all(n.engine.leader() for n in swarm), what="a leader known everywhere")
    leader = next(n for n in swarm if n.engine.leader() == n.id)
    attacker, victim = [n for n in swarm if n is not leader]
    _, win = candidate(
        tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
    )
    attacker.propose(cycle_entry("tiny", attacker.id, 1, 3, [], [], win, time.time()))
    (pid,) = attacker.store.head("tiny").proposals
    forged_vote = vote_entry("tiny", pid, win.version, victim.id, True, "forged", time.time())
    forged_cycle = cycle_entry("tiny", victim.id, 2, 3, [], [], None, time.time())
    for forged in (forged_vote, forged_cycle):
        with pytest.raises(NotCommittedError):
            attacker.engine.propose(forged, timeout=2.0)
    assert leader.engine.status()["refused_commands"] == 2
    leader.propose(register_entry("tiny", tree["genome.toml"], tree, 1.0, leader.id, 0.0))
    for node in swarm:  # everything before that entry is applied everywhere: no trace
        node.wait_applied(leader.state.applied_index)
        forged = [
            e
            for e in node.store.log(genome="tiny")
            if e.data.get("reason") == "forged" or e.data.get("cycle") == 2
        ]
        assert forged == [], f"{node.id} stored a forged entry"


def test_bad_frames_are_dropped_counted_and_harmless(swarm: list[SwarmNode]) -> None:
    registered(swarm)
    target = swarm[0]
    endpoint = target.cluster.endpoint(target.id)
    server_key = target.cluster.public_key(target.id)
    ctx = zmq.Context()
    try:
        # A stranger: a key pair that is not in cluster.yml.
        stranger = ctx.socket(zmq.DEALER)
        public, secret = generate_keypair()
        stranger.curve_publickey, stranger.curve_secretkey = public.encode(), secret.encode()
        stranger.curve_serverkey = server_key.encode()
        stranger.linger = 0
        stranger.connect(endpoint)
        stranger.send(msgpack.packb(["msg", "raft", 0, {"type": "append_entries"}]))
        # A known client (the admin key) sending garbage, a truncated frame and an oversized one.
        admin = ctx.socket(zmq.DEALER)
        admin_public, admin_secret = target.cluster.keypair("admin")
        admin.curve_publickey, admin.curve_secretkey = admin_public.encode(), admin_secret.encode()
        admin.curve_serverkey = server_key.encode()
        admin.linger = 0
        admin.connect(endpoint)
        admin.send(b"\xc1\xc1 not msgpack")
        admin.send(msgpack.packb(["req", "admin", 1, {"op": "status"}])[:-3])
        admin.send(msgpack.packb(["msg", "raft", 0, "x" * (9 << 20)]))
        wait(
            lambda: (
                target.transport.stats()["dropped_unknown_key"] >= 1
                and target.transport.stats()["dropped_undecodable"] >= 2
                and target.transport.stats()["dropped_oversize"] >= 1
            ),
            timeout=20,
            what="bad frames counted",
        )
        stranger.close()
        admin.close()
    finally:
        ctx.term()
    # The node is unharmed: the ledger still commits through it.
    _, tree = load_genome(TINY)
    _, win = candidate(
        tree, '"""How many of ``words`` are common words."""', '"""Count the common words."""'
    )
    target.propose(cycle_entry("tiny", target.id, 1, 3, [], [], win, time.time()))
    wait(lambda: heads(swarm) == {win.version}, what="adoption after the bad frames")


def test_a_second_node_on_a_taken_port_fails_with_a_clear_error(tmp_path: Path) -> None:
    from evolution.errors import TransportError

    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    first = SwarmNode(config, "node-1", evolve=False)
    first.start()
    try:
        second = SwarmNode(config, "node-1", evolve=False)
        with pytest.raises(TransportError, match="in use") as caught:
            second.start()
        second.stop()
        assert "cluster.yml" in str(caught.value)
    finally:
        first.stop()


def test_node_start_names_an_unknown_id(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    path = write_cluster(tmp_path, 3, TINY, 1, 1, 3, 1)
    result = CliRunner().invoke(app, ["node", "start", "--config", str(path), "--id", "node-9"])
    assert result.exit_code != 0
    assert "node-9" in result.output and "node-1" in result.output


def test_a_node_behind_the_compacted_ledger_fetches_the_state_from_a_peer(tmp_path: Path) -> None:
    """Compaction drops the ledger's old entries; a node that missed them gets the events instead.

    node-3 is down while the others commit enough entries to compact their logs.  It
    comes back without its Raft journal but with its store (a prefix of the others'):
    the leader offers its snapshot, node-3 fetches the events it lacks over the bulk
    channel (checked, one transaction) and goes on from the log.  Then its store is
    deleted instead: it restarts on its own, now compacted, journal and fetches again.
    (A node down with its journal intact usually catches up from the log: the leader's
    transport keeps the frames it could not deliver and sends them on reconnection.)
    """
    from events.backends import sqlite_path
    from runtime.config import Compaction

    cycles = 120
    config = load_cluster(write_cluster(tmp_path, 3, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    config = config.with_nodes(compaction=Compaction(after=30, keep=5))
    nodes = {node_id: SwarmNode(config, node_id, evolve=False) for node_id in config.ids}
    journal = config.journal_path("node-3")
    store = sqlite_path(config.store_url("node-3"))
    try:
        for node in nodes.values():
            node.start()
        registered(list(nodes.values()))
        nodes["node-3"].stop()
        up = [nodes["node-1"], nodes["node-2"]]
        behind = nodes["node-3"].state.applied_index
        for cycle in range(1, cycles + 1):
            propose_retrying(
                up[cycle % 2],
                cycle_entry("tiny", up[cycle % 2].id, cycle, 3, [], [], None, time.time()),
            )
        wait(
            lambda: all(n.engine.status()["log_start"] > behind + 1 for n in up),
            what="both running nodes to compact past what node-3 has",
        )
        for path in journal.parent.glob(journal.name + "*"):
            path.unlink()

        def same_as_peers(node: SwarmNode) -> bool:
            return (
                node.store.chain("tiny") == up[0].store.chain("tiny") == up[1].store.chain("tiny")
            )

        nodes["node-3"] = back = SwarmNode(config, "node-3", evolve=False)
        back.start()
        wait(lambda: same_as_peers(back), what="node-3 to catch up")
        # the store commits the fetched events a moment before the applier records the
        # transfer: wait for the record, never race it
        wait(lambda: back.last_transfer is not None, what="node-3 to record its transfer")
        assert back.last_transfer is not None and back.last_transfer.peer in ("node-1", "node-2")
        assert back.last_transfer.events == cycles  # only what its store lacked
        wait(
            lambda: back.engine.status()["snapshots_installed"] >= 1,
            what="node-3 to stand on the snapshot",
        )
        assert back.store.head("tiny").cycles_completed == cycles
        assert back.store.verify().heads == up[0].store.verify().heads
        wait(
            lambda: (
                back.engine.status()["compactions"] >= 1
                or journal.with_name(journal.name + ".snap").exists()
            ),
            what="node-3 to hold a snapshot file of its own",
        )

        # The store deleted: the node restarts on its own snapshot and fetches everything.
        back.stop()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        nodes["node-3"] = again = SwarmNode(config, "node-3", evolve=False)
        again.start()
        wait(
            lambda: "tiny" in again.store.genomes() and same_as_peers(again),
            what="node-3 to rebuild its store",
        )
        wait(lambda: again.last_transfer is not None, what="node-3 to record its transfer")
        assert again.last_transfer is not None and again.last_transfer.events == cycles + 1
        propose_retrying(
            up[0], cycle_entry("tiny", up[0].id, cycles + 1, 3, [], [], None, time.time())
        )
        wait(
            lambda: all(
                n.store.head("tiny").cycles_completed == cycles + 1 for n in nodes.values()
            ),
            what="a new entry everywhere",
        )
        assert again.store.verify().heads == up[0].store.verify().heads
    finally:
        for node in nodes.values():
            node.stop()


def test_spread_proves_the_leaders_candidates_on_the_other_nodes(tmp_path: Path) -> None:
    """`evolution.spread`: the leader's incubator pool includes its peers' incubators (remote actor messages)."""
    with spread_swarm(tmp_path) as nodes:

        def served() -> int:
            return sum(n.status()["counters"]["incubated_for_peers"] for n in nodes)

        wait(
            lambda: served() >= 2,
            timeout=240,
            what="peers to prove some of the leader's candidates",
        )
        asked = [n.status()["counters"]["incubated_on_peers"] for n in nodes]
        assert sum(asked) >= 2, "what the peers proved, the evolving node asked for"
        wait(
            lambda: (
                len({n.store.chain("tiny") for n in nodes if "tiny" in n.store.genomes()}) == 1
                and all(
                    n.store.head("tiny").cycles_completed >= 1
                    for n in nodes
                    if "tiny" in n.store.genomes()
                )
            ),
            timeout=240,
            what="a cycle recorded on every node",
        )
        records = [e for e in nodes[0].store.log(genome="tiny") if e.type == "CandidateEvaluated"]
        assert records, "the cycle recorded its candidates, whoever proved them"


def test_a_lone_node_whose_store_is_behind_its_snapshot_halts_with_a_clear_reason(
    tmp_path: Path,
) -> None:
    from events.backends import sqlite_path
    from runtime.config import Compaction

    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    config = config.with_nodes(compaction=Compaction(after=30, keep=5))
    node = SwarmNode(config, "node-1", evolve=False)
    node.start()
    try:
        registered([node])
        for cycle in range(1, 41):
            propose_retrying(
                node, cycle_entry("tiny", node.id, cycle, 3, [], [], None, time.time())
            )
        wait(lambda: node.engine.status()["compactions"] >= 1, what="a compaction")
    finally:
        node.stop()
    store = sqlite_path(config.store_url("node-1"))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    again = SwarmNode(config, "node-1", evolve=False)
    again.start()
    try:
        wait(lambda: again.halted is not None, what="the node to halt")
        assert "behind this node's snapshot" in str(again.halted) and "no peer" in str(again.halted)
        assert again.status()["halted"] == again.halted
    finally:
        again.stop()
