"""Log compaction and snapshots in the Raft engine (``RaftEngine.on_snapshot``).

The application here is a small in-memory one whose "bulk transfer" copies a peer's
entries in-process: what is tested is the engine's side — when it compacts, what it
keeps, when it lets a follower install a leader's snapshot, what it delivers after one,
and how it restarts from its own snapshot file.  The ledger's real transfer over ZeroMQ
is tested in ``tests/test_swarm.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_consensus import (
    KINDS,
    WAIT,
    Cluster,
    propose_until_committed,
    running,
    wait_until,
)

from consensus import snapshot
from consensus.engine import RaftEngine
from consensus.interface import Committed, Snapshot
from consensus.testing import LocalHub
from consensus.wire import command_ok
from evolution.errors import ConsensusError

ABC = ["a", "b", "c"]
AFTER, KEEP = 40, 5


class App:
    """Entries applied by index, as a store would hold them; ``peers`` stand in for the bulk channel."""

    def __init__(self, name: str, peers: dict[str, App]) -> None:
        self.name = name
        self.peers = peers
        peers[name] = self
        self.lock = threading.Lock()
        self.entries: dict[int, bytes] = {}
        self.applied = 0
        self.delivered: list[int] = []
        self.installs: list[Snapshot] = []

    def on_commit(self, committed: Committed) -> None:
        with self.lock:
            self.delivered.append(committed.index)
            if committed.index <= self.applied:
                return  # already applied (a re-delivery)
            self.entries[committed.index] = committed.data
            self.applied = committed.index

    def applied_index(self) -> int:
        return self.applied

    def snapshot_state(self, index: int) -> bytes:
        return b"state@%d" % index

    def install_snapshot(self, snap: Snapshot) -> None:
        self.installs.append(snap)
        if self.applied >= snap.index:
            return
        sources = [snap.source] if snap.source else [p for p in self.peers if p != self.name]
        for source in sources:
            peer = self.peers[source]
            with peer.lock:
                entries, applied = dict(peer.entries), peer.applied
            if applied >= snap.index:
                with self.lock:
                    self.entries = entries
                    self.applied = applied
                return
        raise ConsensusError(f"no peer of {self.name} has index {snap.index}")

    def view(self) -> dict[int, bytes]:
        with self.lock:
            return dict(self.entries)


class Swarm(Cluster):
    """The consensus test cluster, with a snapshot application on every engine."""

    def __init__(self, root: Path, kind: str) -> None:
        super().__init__(root, kind)
        self.apps: dict[str, App] = {}

    def start_app(self, node_id: str, ids: list[str], app: App | None = None) -> RaftEngine:
        transport = self.transport(node_id, ids)
        engine = RaftEngine(node_id, transport, ids, self.root / f"{node_id}.journal")
        app = app or App(node_id, self.apps)
        self.apps[node_id] = app
        engine.on_commit(app.on_commit)
        engine.on_snapshot(app, compact_after=AFTER, keep=KEEP)
        engine.start()
        self.engines[node_id] = engine
        return engine


@pytest.fixture(params=KINDS)
def swarm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Swarm]:
    yield from running(Swarm, request, tmp_path)


def fill(engine: RaftEngine, count: int, tag: str) -> None:
    for i in range(count):
        propose_until_committed(engine, f"{tag}-{i}".encode())


def test_a_follower_behind_the_compacted_log_installs_the_leaders_snapshot(swarm: Swarm) -> None:
    for node in ABC:
        swarm.start_app(node, ABC)
    leader = swarm.leader()
    lagging = next(n for n in ABC if n != leader)
    fill(swarm.engines[leader], 5, "early")
    wait_until(
        lambda: len(swarm.apps[lagging].view()) >= 5, "the follower to apply the first entries"
    )
    swarm.block(lagging, [n for n in ABC if n != lagging])
    fill(swarm.engines[leader], 3 * AFTER, "while-away")

    status = wait_until(
        lambda: (s := swarm.engines[leader].status())["compactions"] and s, "the leader to compact"
    )
    # what the follower lacks is no longer in the leader's log
    assert status["log_start"] > swarm.apps[lagging].applied + 1
    assert status["log_len"] <= AFTER + 2
    assert (
        snapshot.read(swarm.root / f"{leader}.journal.snap", command_ok).index
        == status["snapshot_index"]
    )

    swarm.heal(lagging)
    wait_until(
        lambda: swarm.apps[lagging].view() == swarm.apps[leader].view(),
        "the lagging follower to hold exactly the leader's entries",
    )
    follower = wait_until(
        lambda: (s := swarm.engines[lagging].status())["snapshots_installed"] and s,
        "the follower to install the leader's snapshot once it has the state",
    )
    assert follower["log_start"] > 1  # it stands on the snapshot, not on a replayed log
    assert any(s.source == leader for s in swarm.apps[lagging].installs)
    # entries after the snapshot arrive through the log as usual, and only once
    fill(swarm.engines[leader], 3, "after")
    wait_until(
        lambda: (
            all(swarm.apps[n].view() == swarm.apps[leader].view() for n in ABC)
            and len(swarm.apps[leader].view()) == 5 + 3 * AFTER + 3
        ),
        "every node to hold every entry",
    )
    delivered = [
        i for i in swarm.apps[lagging].delivered if i > swarm.apps[lagging].installs[-1].index
    ]
    assert len(delivered) == len(set(delivered))


def test_a_restart_stands_on_its_own_snapshot_and_replays_only_what_follows(tmp_path: Path) -> None:
    hub = LocalHub()
    apps: dict[str, App] = {}
    app = App("a", apps)

    def start() -> RaftEngine:
        engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
        engine.on_commit(app.on_commit)
        engine.on_snapshot(app, compact_after=AFTER, keep=KEEP)
        engine.start()
        return engine

    engine = start()
    try:
        fill(engine, 2 * AFTER, "x")
        wait_until(lambda: engine.status()["compactions"], "a compaction")
        fill(engine, 3, "y")
    finally:
        engine.stop()
    entries = app.view()
    cut = snapshot.read(tmp_path / "a.journal.snap", command_ok).index
    app.delivered.clear()
    engine = start()
    try:
        wait_until(
            lambda: app.delivered and app.delivered[-1] == max(entries),
            "the log after the snapshot",
        )
        assert app.installs[-1] == Snapshot(
            app.installs[-1].index, app.installs[-1].term, b"state@%d" % cut, None
        )
        assert app.installs[-1].index == cut
        assert min(app.delivered) > cut  # nothing before the snapshot is delivered again
        assert app.view() == entries
    finally:
        engine.stop()

    # The same journal with the application's state lost: it is fetched, not replayed.
    fresh = App("a2", apps)
    apps["a"] = App("a", {})  # the source copy: what a peer holds
    apps["a"].entries, apps["a"].applied = entries, max(entries)
    engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
    engine.on_commit(fresh.on_commit)
    engine.on_snapshot(fresh, compact_after=AFTER, keep=KEEP)
    engine.start()
    try:
        wait_until(
            lambda: fresh.view() == entries, "the state to be fetched from the peer copy", WAIT
        )
    finally:
        engine.stop()


def test_a_missing_or_damaged_snapshot_file_is_a_clear_error(tmp_path: Path) -> None:
    hub = LocalHub()
    app = App("a", {})
    engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
    engine.on_commit(app.on_commit)
    engine.on_snapshot(app, compact_after=AFTER, keep=KEEP)
    engine.start()
    try:
        fill(engine, 2 * AFTER, "x")
        wait_until(lambda: engine.status()["compactions"], "a compaction")
    finally:
        engine.stop()
    snap = tmp_path / "a.journal.snap"
    good = snap.read_bytes()

    def restart() -> None:
        again = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
        again.on_commit(app.on_commit)
        again.on_snapshot(app, compact_after=AFTER, keep=KEEP)
        try:
            again.start()
        finally:
            again.stop()

    snap.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ConsensusError, match=r"a\.journal\.snap is damaged"):
        restart()
    snap.unlink()
    with pytest.raises(
        ConsensusError, match=r"starts at index \d+, but its snapshot file .* is missing"
    ):
        restart()
    snap.write_bytes(good)
    restart()  # intact again: starts


def test_compaction_settings_are_checked(tmp_path: Path) -> None:
    engine = RaftEngine("a", LocalHub().transport("a"), ["a"], tmp_path / "a.journal")
    with pytest.raises(Exception, match="must exceed keep"):
        engine.on_snapshot(App("a", {}), compact_after=10, keep=10)


def test_a_crash_between_snapshot_and_cut_loses_no_entry(tmp_path: Path) -> None:
    """The snapshot file is written before the log is cut: a restart finishes the cut."""
    hub = LocalHub()
    app = App("a", {})
    engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
    engine.on_commit(app.on_commit)
    engine.start()  # no compaction: the whole log stays
    try:
        fill(engine, 30, "x")
    finally:
        engine.stop()
    entries = app.view()
    last = max(entries)
    # What the driver writes first when it compacts at index last - 10 ... then "crashes".
    from consensus.journal import CrcJournal

    with CrcJournal(tmp_path / "a.journal") as journal:
        first = journal[0][1]
        cut = last - 10
        data = snapshot.encode([journal[cut - 1 - first], journal[cut - first]], ["a"], b"state")
    snapshot.write(tmp_path / "a.journal.snap", data)

    app.delivered.clear()
    engine = RaftEngine("a", hub.transport("a"), ["a"], tmp_path / "a.journal")
    engine.on_commit(app.on_commit)
    engine.on_snapshot(app, compact_after=AFTER, keep=KEEP)
    engine.start()
    try:
        wait_until(
            lambda: app.delivered and app.delivered[-1] == last, "the entries after the snapshot"
        )
        assert engine.status()["log_start"] == cut - 1
        assert sorted(set(app.delivered)) == [i for i in sorted(entries) if i > cut]
        index = propose_until_committed(engine, b"after-restart")
        wait_until(lambda: app.view().get(index) == b"after-restart", "the new entry to be applied")
    finally:
        engine.stop()


class SlowApp(App):
    """Fetching the state takes a while, as a real transfer of a big store does."""

    def install_snapshot(self, snap: Snapshot) -> None:
        if self.applied < snap.index:
            time.sleep(1.5)
        super().install_snapshot(snap)


def test_while_the_state_is_fetched_the_leader_is_not_asked_to_offer_again(swarm: Swarm) -> None:
    """The leader re-offers its snapshot whenever the follower rejects its entries; the
    follower holds its answers while it fetches, so one offer is enough."""
    for node in ABC:
        swarm.start_app(node, ABC, SlowApp(node, swarm.apps))
    leader = swarm.leader()
    lagging = next(n for n in ABC if n != leader)
    swarm.block(lagging, [n for n in ABC if n != lagging])
    fill(swarm.engines[leader], 3 * AFTER, "while-away")
    wait_until(lambda: swarm.engines[leader].status()["compactions"], "the leader to compact")
    swarm.heal(lagging)
    wait_until(
        lambda: (
            swarm.engines[lagging].status()["snapshots_installed"]
            and swarm.apps[lagging].view() == swarm.apps[leader].view()
        ),
        "the follower to install the snapshot and hold every entry",
    )
    status = swarm.engines[lagging].status()
    assert status["held_append_entries"] >= 1  # heartbeats came while it fetched
    assert (
        status["snapshot_offers_deferred"] <= 2
    )  # at 30 ms heartbeats, 1.5 s would be ~50 without holding
