"""Log compaction end to end on every store backend: three engines, the real ledger, real stores.

``tests/test_compaction.py`` drives the engine with a small in-memory application; here
each engine's application is what a swarm node runs — ``consensus.applier.Applier`` (the
engine's ``SnapshotApp``) over ``consensus.ledger.LedgerState`` and a store made by the
``create_store()`` hook of ``tests/storekit.py`` — on memory, SQLite and PostgreSQL,
since exactly once across a snapshot and a state transfer rests on the backend's
tracking records.  The engines talk over the in-memory hub; the state transfer's bulk
channel reaches the peer's real ``transfer.serve`` handler in-process (:class:`Bulk`),
with every body through msgpack as on the wire.  The same over ZeroMQ between real
nodes (SQLite only) is ``tests/test_swarm.py``.

No test asserts a duration: waits are upper bounds for something to happen at all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from storekit import Backend, MemoryBackend, PostgresBackend, SQLiteBackend
from test_consensus import Cluster, no_leaked_threads
from test_ledger import BASE, MEMBERS, adoption, edit, record

from consensus import ledger as L
from consensus import snapshot, transfer
from consensus.applier import Applier
from consensus.engine import RaftEngine
from consensus.wire import command_ok
from events.store import GenomeStore
from evolution.errors import NotCommittedError, TarsError, TransportError
from runtime.testing import WAIT, wait_until

#: the Raft members, and the ledger's member list until the ``members`` entry below
IDS = MEMBERS
#: compaction settings small enough that a few dozen entries compact the log several times
AFTER, KEEP = 12, 4
GENOME = "g"

CHILD = edit(BASE, "return 1", "return 10")
WIN = adoption(BASE, CHILD)
PROPOSAL = L.proposal_id(GENOME, "node-1", 1, WIN.version)
#: a ledger member list other than the nodes' configured one: a node can only know it
#: from the ledger (replayed, or the state blob of a snapshot or a transfer)
GROWN = [*IDS, "node-4"]


def opening() -> list[bytes]:
    """Register the genome; a proposal and a second yes vote adopt a child version."""
    return [
        L.register_entry(GENOME, BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0),
        L.cycle_entry(GENOME, "node-1", 1, 7, [record(BASE, CHILD)], [], WIN, 1001.0),
        L.vote_entry(GENOME, PROPOSAL, WIN.version, "node-2", True, "tests pass", 1002.0),
    ]


def grow() -> bytes:
    return L.members_entry(GROWN, "node-1", 1003.0)


def cycles(first: int, count: int) -> list[bytes]:
    """``count`` cycle entries without a proposal, from cycle number ``first`` on."""
    return [
        L.cycle_entry(GENOME, "node-1", c, 7, [], [], None, 1010.0 + c)
        for c in range(first, first + count)
    ]


def _wire(body: Any) -> Any:
    return msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False)


class Node:
    """One swarm node's ledger side, wired as ``node.SwarmNode`` wires it."""

    def __init__(
        self, node_id: str, store: GenomeStore, transport: Any, journal: Path, bulk: Bulk
    ) -> None:
        self.id = node_id
        self.store = store
        self.state = L.LedgerState(store, IDS)
        self.engine = RaftEngine(node_id, transport, IDS, journal)
        self.stopping = threading.Event()
        #: every entry this node's applier handled, re-deliveries included, in order
        self.results: list[L.Applied] = []
        self.applier = Applier(
            node_id,
            self.state,
            store,
            self.engine,
            bulk,
            self.stopping,
            on_applied=self.results.extend,
            stage=lambda _stage: None,
        )
        self.engine.on_commit(self.applier.on_commit)
        self.engine.on_snapshot(self.applier, compact_after=AFTER, keep=KEEP)
        #: this node's "bulk" request handler, as the transport would serve it
        self.serve: Callable[[str, Any], Any] = transfer.serve(self.state)

    def start(self) -> None:
        self.engine.start()
        self.applier.start()

    def stop(self) -> None:
        """As ``SwarmNode.stop``: no commit after the engine stops, then the applier drains."""
        self.stopping.set()
        self.engine.stop()
        self.applier.stop()
        self.applier.join(timeout=WAIT)

    def handled(self, index: int) -> None:
        """Wait until this node's applier has handled (applied or skipped) ``index``."""
        wait_until(
            lambda: any(r.raft_index >= index for r in list(self.results)),
            f"{self.id} to handle ledger index {index}",
        )

    def written(self) -> list[int]:
        """The indexes whose entries this node's store wrote (not skipped as applied)."""
        return [r.raft_index for r in list(self.results) if r.written]

    def fingerprint(self) -> dict[str, Any]:
        """What must be equal on every node once they have applied the same index."""
        report = self.store.verify()
        head = self.store.head(GENOME)
        return {
            "applied": self.state.applied_index,
            "tracking": self.store.applied(L.LEDGER),
            "heads": report.heads,
            "events": report.events,
            "positions": self.store.positions(),
            "head": (head.version, head.versions_count, head.cycles_completed, head.proposals),
            "members": self.state.members,
        }


class Bulk:
    """The bulk channel's request/reply for one node: the peer's handler, called in-process.

    A peer that is not running (or that the hub does not let this node reach) does not
    answer, and a handler's error comes back as a TransportError, as over ZeroMQ.
    """

    def __init__(self, swarm: LedgerSwarm, node_id: str) -> None:
        self.swarm = swarm
        self.id = node_id

    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any:
        assert channel == transfer.CHANNEL
        target = self.swarm.nodes.get(peer)
        mine = self.swarm.transports.get(self.id)
        theirs = self.swarm.transports.get(peer)
        if (
            target is None
            or mine is None
            or theirs is None
            or peer in mine.blocked
            or self.id in theirs.blocked
        ):
            raise TransportError(f"{self.id}: {peer} did not answer on {channel}")
        try:
            reply = target.serve(self.id, _wire(body))
        except TarsError as exc:
            raise TransportError(f"{peer} answered {channel} with an error: {exc}") from exc
        return _wire(reply)


class LedgerSwarm(Cluster):
    """Three nodes on the hub; ``close`` stops every engine, applier and transport."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, "hub")
        self.nodes: dict[str, Node] = {}

    def start_node(self, node_id: str, store: GenomeStore) -> Node:
        transport = self.transport(node_id, IDS)
        node = Node(node_id, store, transport, self.journal(node_id), Bulk(self, node_id))
        node.start()
        self.nodes[node_id] = node
        self.engines[node_id] = node.engine
        return node

    def stop_node(self, node_id: str) -> Node:
        node = self.nodes.pop(node_id)
        self.engines.pop(node_id, None)
        node.stop()
        transport = self.transports.pop(node_id, None)
        if transport is not None:
            transport.stop()
        return node

    def close(self) -> None:
        for node_id in list(self.nodes):
            self.stop_node(node_id)
        super().close()

    def journal(self, node_id: str) -> Path:
        return self.root / f"{node_id}.journal"

    def snapshot_file(self, node_id: str) -> Path:
        return self.root / f"{node_id}.journal.snap"

    def lead(self) -> Node:
        return self.nodes[self.leader()]

    def commit(self, data: bytes) -> int:
        """Commit an entry through the leader and wait until the leader has applied it."""

        def attempt() -> int | None:
            with contextlib.suppress(NotCommittedError):
                return self.lead().applier.propose(data, timeout=2.0)
            return None

        return int(wait_until(attempt, "an entry to commit and apply on the leader"))

    def settled(self, at_least: int = 0) -> dict[str, Node]:
        """Wait until every running node has applied the same index (at least ``at_least``)."""

        def same() -> bool:
            applied = {n.state.applied_index for n in self.nodes.values()}
            return len(applied) == 1 and applied.pop() >= at_least

        wait_until(same, f"{sorted(self.nodes)} to apply the same ledger index")
        return self.nodes

    def assert_same_stores(self) -> dict[str, Any]:
        prints = {n: node.fingerprint() for n, node in self.settled().items()}
        first = next(iter(prints.values()))
        for node_id, print_ in prints.items():
            assert print_ == first, f"{node_id}'s store differs: {print_} != {first}"
        return first


@contextlib.contextmanager
def no_leaked_appliers() -> Iterator[None]:
    """Fail if a node's applier thread (``<id>-apply``) outlives the test."""
    before = {t.ident for t in threading.enumerate()}
    yield
    left = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before and t.is_alive() and t.name.endswith("-apply")
    ]
    assert not left, f"applier threads left running: {left}"


class CompactionTests(Backend):
    """Compaction, snapshots and state transfer on one backend; the classes below pick it."""

    @contextlib.contextmanager
    def swarm(self) -> Iterator[LedgerSwarm]:
        """Three nodes, each on a new store of this backend; everything stopped and checked."""
        with no_leaked_threads(), no_leaked_appliers():
            swarm = LedgerSwarm(self.tmp_path)
            try:
                for node_id in IDS:
                    swarm.start_node(node_id, self.create_store(node_id))
                yield swarm
            finally:
                swarm.close()

    def revive(self, store: GenomeStore, name: str) -> GenomeStore:
        """The store of a node that was down: reopened, where the backend can.

        A memory store cannot be reopened, so there the same object stands for it (the
        node's process kept its store while its ledger side was down).
        """
        if not self.reopenable:
            return store
        self.close_store(store)
        return self.reopen_store(name)

    @pytest.mark.parametrize("comeback", ["down", "new"])
    def test_a_node_behind_the_compacted_log_ends_with_the_same_store(self, comeback: str) -> None:
        """A follower misses what the others compact away, then comes back: ``down`` with
        its journal and its store (a prefix of the others'), or ``new``, with an empty
        store and no journal.  It fetches the events it lacks from a peer, stands on the
        leader's snapshot, and goes on from the log, applying nothing twice."""
        with self.swarm() as swarm:
            registered = [swarm.commit(data) for data in opening()]
            swarm.settled(at_least=registered[-1])
            lagging = swarm.follower()
            old = swarm.stop_node(lagging)
            assert old.store.head(GENOME).version == WIN.version  # it saw the adoption
            behind = old.state.applied_index
            had = old.store.verify().events if comeback == "down" else 0
            up = [n for n in IDS if n != lagging]

            swarm.commit(grow())
            for data in cycles(2, 3 * AFTER):
                swarm.commit(data)
            wait_until(
                lambda: all(swarm.engines[n].status()["log_start"] > behind + 1 for n in up),
                "both running nodes to compact past what the stopped node applied",
            )

            if comeback == "down":
                store = self.revive(old.store, lagging)
            else:
                for path in self.tmp_path.glob(f"{lagging}.journal*"):
                    path.unlink()
                store = self.create_store(f"{lagging}-new")
            back = swarm.start_node(lagging, store)
            leader = swarm.lead()
            swarm.settled(at_least=leader.state.applied_index)
            installed = wait_until(
                lambda: (s := back.engine.status())["snapshots_installed"] and s,
                "the node to install the leader's snapshot once it has the state",
            )
            assert installed["log_start"] > behind + 1  # it stands on the snapshot
            got = wait_until(lambda: back.applier.last_transfer, "the node's state transfer")
            assert got is not None and got.peer in up
            assert got.events == leader.store.verify().events - had  # only what it lacked
            assert got.index >= installed["snapshot_index"] > behind
            assert back.state.members == GROWN  # the member list came with the state
            swarm.assert_same_stores()

            # the log after the snapshot reaches it as usual, and every entry once
            last = 0
            for data in cycles(2 + 3 * AFTER, 3):
                last = swarm.commit(data)
            back.handled(last)
            state = swarm.assert_same_stores()
            assert state["applied"] == last
            assert state["head"][2] == 1 + 3 * AFTER + 3  # every cycle completed
            written = back.written()
            assert written and len(written) == len(set(written))
            assert min(written) > got.index  # nothing the transfer brought is applied again
            assert last in written

    def test_a_restart_after_compaction_replays_nothing_twice(self) -> None:
        """A node restarts on its own compacted journal and its reopened store: it stands on
        its snapshot (its member list), the journal after it is delivered again and skipped
        through the tracking records, nothing is fetched, and new entries apply once."""
        if not self.reopenable:
            pytest.skip("an in-memory store does not survive closing")
        with self.swarm() as swarm:
            for data in [*opening(), grow(), *cycles(2, 3 * AFTER)]:
                swarm.commit(data)
            settled = swarm.settled(at_least=swarm.lead().state.applied_index)
            restarted = swarm.follower()
            node = settled[restarted]
            wait_until(
                lambda: node.engine.status()["compactions"] >= 1, "the follower to compact its log"
            )
            before = swarm.assert_same_stores()
            events = [(e.type, e.version, e.node, e.time) for e in node.store.log()]

            swarm.stop_node(restarted)
            cut = snapshot.read(swarm.snapshot_file(restarted), command_ok)
            assert cut.index < before["applied"]
            back = swarm.start_node(restarted, self.revive(node.store, restarted))
            back.handled(before["applied"])  # the journal after the snapshot, delivered again
            replayed = [r.raft_index for r in back.results]
            assert replayed and min(replayed) > cut.index  # nothing before the snapshot
            assert back.written() == []  # and nothing after it applied a second time
            assert back.applier.last_transfer is None  # its own store had the state
            assert back.fingerprint() == before  # the members too, from its snapshot
            assert [(e.type, e.version, e.node, e.time) for e in back.store.log()] == events

            new = [swarm.commit(data) for data in cycles(2 + 3 * AFTER, 2)]
            back.handled(new[-1])
            after = swarm.assert_same_stores()
            assert after["applied"] == new[-1]
            assert after["events"] > before["events"]
            assert back.written() == new  # each new entry exactly once


class TestCompactionMemory(MemoryBackend, CompactionTests):
    pass


class TestCompactionSQLite(SQLiteBackend, CompactionTests):
    pass


@pytest.mark.postgres
class TestCompactionPostgres(PostgresBackend, CompactionTests):
    pass
