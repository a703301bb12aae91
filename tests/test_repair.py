"""A stopped node's damage refuses its start; `tars node repair` brings it back to the swarm's head.

Three attacks on a stopped member's files, each made on the real file as a failing disk
or a careless hand would: a byte flipped inside an event, a flipped B-tree page header,
and a Raft journal cut mid-file.  Each time the node must refuse to start with the reason
and its own repair command; after `tars node repair` (the real CLI) it starts, rebuilds
from the ledger and a peer's checked state, and reaches the head the others moved on to.
The first part runs three real nodes in this process (real ZeroMQ, Raft, SQLite); the last
test runs them as `tars node start` processes (``-m slow``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmkit import LocalSwarm, propose_retrying, wait
from typer.testing import CliRunner

from cli.demo import write_cluster
from cli.main import app
from consensus.ledger import cycle_entry, register_entry
from events.backends import sqlite_path
from evolution.errors import ConsensusError, IntegrityError, StoreError, TarsError
from node import SwarmNode, store_mark
from runtime.config import ClusterConfig, Compaction, load_cluster
from runtime.genome_files import load_genome

TINY = Path(__file__).parent / "data" / "tiny"
runner = CliRunner()


def flip_in_event(store: Path, needle: bytes) -> None:
    """Flip one bit inside a stored event's bytes, in the file itself (valid SQLite after)."""
    for path in (store, Path(f"{store}-wal")):
        if path.exists():
            data = bytearray(path.read_bytes())
            where = data.find(needle)
            if where >= 0:
                data[where + 3] ^= 0x01
                path.write_bytes(bytes(data))
                return
    raise AssertionError(f"{needle!r} is not in {store}")


def flip_page_header(store: Path) -> None:
    """Flip the type byte of the B-tree page that roots the events table."""
    with sqlite3.connect(store) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'stored_events'"
        ).fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray(store.read_bytes())
    offset = (root - 1) * size + (100 if root == 1 else 0)
    assert data[offset] in (0x05, 0x0D), "a table B-tree page"
    data[offset] ^= 0x01
    store.write_bytes(bytes(data))


def cut_journal(journal: Path) -> None:
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) // 3])


class Swarm:
    """Three in-process nodes of one cluster.yml; the test stops and restarts one of them."""

    def __init__(self, root: Path) -> None:
        config = load_cluster(write_cluster(root, 3, TINY, 1, 1, 3, 1))
        config.ensure_keys()
        self.config: ClusterConfig = config.with_nodes(compaction=Compaction(after=30, keep=5))
        self.nodes = {n: SwarmNode(self.config, n, evolve=False) for n in self.config.ids}
        self.cycle = 0

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        _, tree = load_genome(TINY)
        first = self.nodes["node-1"]
        propose_retrying(
            first, register_entry("tiny", tree["genome.toml"], tree, 1.0, "node-1", 1e9)
        )

    def up(self) -> list[SwarmNode]:
        return [n for n in self.nodes.values() if not n._stopped]

    def cycles(self, count: int) -> None:
        up = self.up()
        for _ in range(count):
            self.cycle += 1
            node = up[self.cycle % len(up)]
            propose_retrying(
                node, cycle_entry("tiny", node.id, self.cycle, 3, [], [], None, time.time())
            )

    def converged(self) -> bool:
        nodes = list(self.nodes.values())
        if any(n._stopped or "tiny" not in n.store.genomes() for n in nodes):
            return False
        chains = {n.store.chain("tiny") for n in nodes}
        return len(chains) == 1 and len({n.applier.applied for n in nodes}) == 1

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[Swarm]:
    made = Swarm(tmp_path)
    try:
        made.start()
        made.cycles(6)
        wait(made.converged, what="three nodes at one head")
        yield made
    finally:
        made.stop_all()


def refused(swarm: Swarm, victim: str, error: type[TarsError]) -> TarsError:
    """Building and starting the node must fail with ``error``; returns it."""
    node: SwarmNode | None = None
    try:
        with pytest.raises(error) as err:
            node = SwarmNode(swarm.config, victim, evolve=False)
            node.start()
    finally:
        if node is not None:
            node.stop()
    return err.value


def repaired(swarm: Swarm, victim: str) -> None:
    """`tars node repair` through the real CLI; then the node starts and reaches the head."""
    result = runner.invoke(
        app, ["node", "repair", "--config", str(swarm.config.path), "--id", victim]
    )
    assert result.exit_code == 0, result.output
    assert "repaired" in result.output and "moved" in result.output
    aside = list(swarm.config.state_dir(victim).glob("damaged-*"))
    assert len(aside) == 1 and any(aside[0].iterdir()), "the damaged files are kept"
    swarm.cycles(3)  # the swarm moved on while it was down
    swarm.nodes[victim] = again = SwarmNode(swarm.config, victim, evolve=False)
    again.start()
    wait(swarm.converged, what=f"{victim} back at the swarm's head")
    assert again.halted is None
    assert again.store.verify().heads == swarm.nodes["node-1"].store.verify().heads
    for path in aside[0].iterdir():  # clean for the next attack
        path.unlink()
    aside[0].rmdir()


def test_a_flipped_byte_in_a_stopped_nodes_store(swarm: Swarm) -> None:
    victim = "node-3"
    swarm.nodes[victim].stop()
    flip_in_event(sqlite_path(swarm.config.store_url(victim)), b"Word counting, written")
    swarm.cycles(2)
    error = refused(swarm, victim, IntegrityError)
    assert f"{victim} refuses to start" in str(error) and "Registered" in str(error)
    assert f"tars node repair --config {swarm.config.path} --id {victim}" in (error.hint or "")
    repaired(swarm, victim)


def test_a_flipped_page_header_in_a_stopped_nodes_store(swarm: Swarm) -> None:
    victim = "node-2"
    swarm.nodes[victim].stop()
    flip_page_header(sqlite_path(swarm.config.store_url(victim)))
    error = refused(swarm, victim, StoreError)
    assert f"{victim} refuses to start" in str(error)
    assert "quick_check" in str(error) or "malformed" in str(error)
    assert "tars node repair" in (error.hint or "")
    repaired(swarm, victim)


def test_a_journal_cut_mid_file(swarm: Swarm) -> None:
    victim = "node-3"
    time.sleep(1.2)  # the journal's one-second tick marks what it acknowledged
    swarm.nodes[victim].stop()
    journal = swarm.config.journal_path(victim)
    cut_journal(journal)
    error = refused(swarm, victim, ConsensusError)
    assert f"{victim} refuses to start" in str(error) and "lost acknowledged entries" in str(error)
    assert str(journal) in str(error)
    assert f"tars node repair --config {swarm.config.path} --id {victim}" in (error.hint or "")
    repaired(swarm, victim)


def test_repair_refuses_a_running_node_and_the_only_member(swarm: Swarm, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["node", "repair", "--config", str(swarm.config.path), "--id", "node-1"]
    )
    assert result.exit_code != 0 and "node-1 is running" in result.output
    assert sqlite_path(swarm.config.store_url("node-1")).exists(), "nothing moved"
    alone = load_cluster(write_cluster(tmp_path / "alone", 1, TINY, 1, 1, 3, 1))
    result = runner.invoke(app, ["node", "repair", "--config", str(alone.path), "--id", "node-1"])
    assert result.exit_code != 0 and "only member" in result.output


def test_repair_keeps_the_term_and_vote(swarm: Swarm) -> None:
    import msgpack

    victim = "node-2"
    node = swarm.nodes[victim]
    node.stop()
    meta = swarm.config.journal_path(victim).with_name("raft.journal.meta")
    before = msgpack.unpackb(meta.read_bytes(), raw=False)
    assert before["term"] >= 1
    result = runner.invoke(
        app, ["node", "repair", "--config", str(swarm.config.path), "--id", victim]
    )
    assert result.exit_code == 0, result.output
    after = msgpack.unpackb(meta.read_bytes(), raw=False)
    assert (after["term"], after["voted_for"]) == (before["term"], before["voted_for"])
    assert not swarm.config.journal_path(victim).exists()
    assert not store_mark(swarm.config, victim).exists()
    swarm.nodes[victim] = again = SwarmNode(swarm.config, victim, evolve=False)
    again.start()
    wait(swarm.converged, what=f"{victim} back")


# ---- as a user runs it: `tars node start` processes -------------------------------------


def tars(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_processes_refuse_then_repair_and_rejoin(tmp_path: Path) -> None:
    swarm = LocalSwarm(tmp_path / "swarm")
    try:
        swarm.up()
        leader = swarm.leader()
        victim = next(n for n in swarm.ids if n != leader)
        swarm.wait_for(lambda: swarm.adopted_count(victim) >= 1, 180, "an adoption")
        config = str(swarm.config.path)
        attacks = [
            lambda: flip_in_event(
                sqlite_path(swarm.config.store_url(victim)), b"Word counting, written"
            ),
            lambda: flip_page_header(sqlite_path(swarm.config.store_url(victim))),
            lambda: cut_journal(swarm.config.journal_path(victim)),
        ]
        for attack in attacks:
            time.sleep(1.2)  # the journal's one-second tick
            swarm.launcher.stop(victim)
            attack()
            start = tars("node", "start", "--config", config, "--id", victim)
            said = start.stdout + start.stderr
            assert start.returncode != 0, said
            assert f"{victim} refuses to start" in said and "tars node repair" in said, said
            fixed = tars("node", "repair", "--config", config, "--id", victim)
            assert fixed.returncode == 0, fixed.stdout + fixed.stderr
            before = swarm.applied(leader)
            swarm.up([victim])
            swarm.wait_for(
                lambda b=before: swarm.applied(victim) > b, 120, f"{victim} past {before}"
            )
            swarm.check_invariants(30.0)
    finally:
        swarm.down()
