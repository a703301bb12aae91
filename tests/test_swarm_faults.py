"""Fault injection with real node processes on 127.0.0.1 (pytest -m slow).

After every fault: no head any node reported is lost, every node's event log is a prefix
of the longest, and every node reaches the same head and ledger index within 10 s of
the heal.  The swarm evolves the tiny genome the whole time (the leader runs cycles,
the others validate and vote), so faults land mid-cycle, mid-vote and mid-apply.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmkit import COMPACTION, LocalSwarm

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: Seconds from the heal to the same head everywhere (the issue's bound).
CONVERGE = 10.0


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[LocalSwarm]:
    cluster = LocalSwarm(tmp_path / "swarm")
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


def compactions(swarm: LocalSwarm, node_id: str) -> int:
    status = swarm.status(node_id)
    return int(status["log"]["compactions"]) if status else 0


def progressed(swarm: LocalSwarm, node_id: str, beyond: int, timeout: float = 90.0) -> None:
    swarm.wait_for(
        lambda: swarm.applied(node_id) > beyond,
        timeout,
        f"{node_id} applies entries beyond {beyond}",
    )


def test_kill_leader_while_evolving(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    progressed(swarm, leader, 3)
    swarm.kill(leader)
    rest = [n for n in swarm.ids if n != leader]
    new_leader = swarm.leader(among=rest)
    before = swarm.applied(new_leader)
    progressed(swarm, new_leader, before, timeout=60)  # the survivors keep committing
    swarm.up([leader])
    swarm.check_invariants(CONVERGE)


def test_kill_follower_mid_apply(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    follower = next(n for n in swarm.ids if n != leader)
    progressed(swarm, follower, 2)
    for _ in range(3):
        seen = swarm.applied(follower)
        swarm.wait_for(
            lambda seen=seen: swarm.applied(follower) > seen,
            90,
            "the follower applies another entry",
        )
        swarm.kill(follower)  # right after an apply: the next one is usually under way
        swarm.up([follower])
    swarm.check_invariants(CONVERGE)


def test_partitioned_node_catches_up_after_heal(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    victim = next(n for n in swarm.ids if n != leader)
    progressed(swarm, leader, 2)
    swarm.partition(victim)
    cut_at = swarm.applied(victim)
    progressed(
        swarm, leader, swarm.applied(leader) + 1, timeout=90
    )  # the majority goes on without it
    assert swarm.applied(victim) <= swarm.applied(leader)
    swarm.heal()
    swarm.check_invariants(CONVERGE)
    assert swarm.applied(victim) > cut_at


def test_partitioned_leader_steps_aside(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    progressed(swarm, leader, 2)
    swarm.partition(leader)
    rest = [n for n in swarm.ids if n != leader]
    new_leader = swarm.leader(among=rest, timeout=20)
    assert new_leader != leader
    swarm.heal()
    swarm.check_invariants(CONVERGE)


def stop_leader(swarm: LocalSwarm, leader: str, seconds: float) -> None:
    """SIGSTOP the leader for at least ``seconds`` (longer than an election timeout) and until
    the others have elected a new leader, then SIGCONT; the old one must step down (it learns
    the newer term) while the swarm goes on."""
    status = swarm.status(leader)
    term = int(status["term"]) if status else 0
    rest = [n for n in swarm.ids if n != leader]
    started = time.monotonic()
    swarm.stop(leader)
    try:
        new_leader = swarm.leader(among=rest, timeout=30)
        assert new_leader != leader
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    finally:
        swarm.cont(leader)
    swarm.wait_for(
        lambda: (found := swarm.status(leader)) is not None and int(found["term"]) > term,
        CONVERGE,
        f"{leader}, stopped in term {term}, to learn the newer term",
    )


def test_stopped_leader_steps_down_and_catches_up(swarm: LocalSwarm) -> None:
    """SIGSTOP of the leader: the others elect a leader and commit on; after SIGCONT the old
    one steps down and catches up with what was committed without it."""
    leader = swarm.leader()
    progressed(swarm, leader, 2)
    status = swarm.status(leader)
    assert status is not None
    term = int(status["term"])
    rest = [n for n in swarm.ids if n != leader]
    swarm.stop(leader)
    try:
        new_leader = swarm.leader(among=rest, timeout=30)
        before = swarm.applied(new_leader)
        progressed(swarm, new_leader, before, timeout=90)  # the majority commits without it
        frozen = swarm.statuses(rest)
    finally:
        swarm.cont(leader)
    assert all(s is not None and int(s["term"]) > term for s in frozen.values())
    swarm.wait_for(
        lambda: (found := swarm.status(leader)) is not None and int(found["term"]) > term,
        CONVERGE,
        "the old leader to learn the newer term",
    )
    swarm.check_invariants(CONVERGE)
    assert swarm.applied(leader) > before, "it caught up with what was committed without it"


def test_cold_restart_of_the_whole_cluster(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    progressed(swarm, leader, 4)
    swarm.down()
    swarm.up()
    swarm.check_invariants(CONVERGE)
    leader = swarm.leader()
    progressed(swarm, leader, swarm.applied(leader))  # and it evolves on


def test_deleted_store_is_rebuilt_from_the_ledger(swarm: LocalSwarm) -> None:
    """The journal is compacted by then, so the store comes back by state transfer."""
    leader = swarm.leader()
    victim = next(n for n in swarm.ids if n != leader)
    progressed(swarm, victim, COMPACTION.after + COMPACTION.keep)
    swarm.wait_for(lambda: compactions(swarm, victim) >= 1, 30, f"{victim} to compact its log")
    swarm.launcher.stop(victim)
    store = Path(swarm.config.store_url(victim).removeprefix("sqlite:///"))
    for path in store.parent.glob(store.name + "*"):
        path.unlink()
    swarm.up([victim])
    swarm.check_invariants(CONVERGE)
    # the fetched events are stored a moment before the node records the transfer
    swarm.wait_for(
        lambda: (swarm.status(victim) or {}).get("last_transfer") is not None,
        10,
        "the store was fetched from a peer",
    )


def test_node_with_all_state_deleted_rejoins(swarm: LocalSwarm) -> None:
    leader = swarm.leader()
    victim = next(n for n in swarm.ids if n != leader)
    progressed(swarm, victim, COMPACTION.after + COMPACTION.keep)
    swarm.wait_for(lambda: compactions(swarm, leader) >= 1, 30, f"{leader} to compact its log")
    swarm.launcher.stop(victim)
    state = swarm.config.state_dir(victim)
    for child in state.iterdir():
        if child.name not in ("node.log", "node.pid"):
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    swarm.up([victim])
    swarm.check_invariants(CONVERGE)
    # the fetched events are stored a moment before the node records the transfer
    swarm.wait_for(
        lambda: (swarm.status(victim) or {}).get("last_transfer") is not None,
        10,
        "the leader's log no longer reaches back",
    )


def test_seeded_random_fault_schedule(swarm: LocalSwarm) -> None:
    """20 rounds of kill -9 / SIGSTOP of the leader / partitions (a node, the leader, two
    followers from each other) / restart / a deleted store, chosen by a seed; invariants
    after each."""
    rng = random.Random(20261123)
    start = swarm.applied(swarm.leader())
    faults = [
        "kill_leader",
        "kill_follower",
        "partition",
        "partition_leader",
        "partition_followers",
        "stop_leader",
        "restart_all",
        "delete_store",
        "none",
    ]
    history = []
    transfers = 0  # deleted stores that came back by state transfer rather than replay
    for round_number in range(20):
        fault = rng.choice(faults)
        history.append(fault)
        leader = swarm.leader()
        others = [n for n in swarm.ids if n != leader]
        if fault == "kill_leader":
            swarm.kill(leader)
            time.sleep(rng.uniform(0.2, 1.5))
            swarm.up([leader])
        elif fault == "kill_follower":
            victim = rng.choice(others)
            swarm.kill(victim)
            time.sleep(rng.uniform(0.2, 1.5))
            swarm.up([victim])
        elif fault in ("partition", "partition_leader"):
            victim = leader if fault == "partition_leader" else rng.choice(others)
            swarm.partition(victim)
            time.sleep(rng.uniform(0.5, 2.0))
            swarm.heal()
        elif fault == "partition_followers":  # each drops the other only; both see the leader
            swarm.block(others[0], [others[1]])
            swarm.block(others[1], [others[0]])
            time.sleep(rng.uniform(0.5, 2.0))
            swarm.heal()
        elif fault == "stop_leader":
            stop_leader(swarm, leader, rng.uniform(1.0, 4.0))
        elif fault == "restart_all":
            swarm.down()
            swarm.up()
        elif fault == "delete_store":  # rebuilt by replay, or by state transfer once compacted
            victim = rng.choice(others)
            swarm.kill(victim)
            store = Path(swarm.config.store_url(victim).removeprefix("sqlite:///"))
            for path in store.parent.glob(store.name + "*"):
                path.unlink()
            swarm.up([victim])
        else:
            time.sleep(rng.uniform(0.5, 1.5))
        try:
            swarm.check_invariants(CONVERGE)
            if fault == "delete_store":
                status = swarm.status(victim)
                transfers += bool(status and status["last_transfer"])
            # and the swarm works on between faults: the next entry commits and applies
            leader = swarm.leader()
            progressed(swarm, leader, swarm.applied(leader), timeout=120)
        except AssertionError as exc:
            raise AssertionError(f"round {round_number} ({' → '.join(history)}): {exc}") from exc
    # The seed's schedule holds the faults this test is about (a new seed must keep them).
    assert {"stop_leader", "partition_leader", "partition_followers"} <= set(history), history
    # The faults did not stop the work: the ledger moved on and versions were adopted.
    assert swarm.applied(swarm.leader()) >= start + 20
    assert len(swarm.reported) >= 2, "the tiny genome's clear wins are adopted despite the faults"
    assert transfers >= 1, (
        f"no deleted store came back by state transfer ({history.count('delete_store')} deleted)"
    )
