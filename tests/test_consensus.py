"""Three (or four) Raft engines in one process, over the in-memory hub and over ZeroMQ.

No test asserts a duration: waits are bounded only so that a broken engine fails the
test instead of hanging it.  Every engine and transport a test starts is stopped by the
``cluster`` fixture, and the fixture checks that no engine thread outlives the test.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from consensus.engine import RaftEngine, RaftTimers
from consensus.interface import Committed, Consensus
from consensus.journal import CrcJournal
from consensus.testing import LocalHub
from consensus.wire import CHANNEL, TAG, RaftNode, _RaftWire, from_wire, safe_loads, to_wire
from evolution.errors import ConfigError, ConsensusError, NotCommittedError
from runtime.testing import WAIT, free_port, wait_until

try:  # the ZeroMQ transport is written in parallel; test over it once it exists
    from runtime import transport as zmq_transport
    from runtime.keys import generate_keypair
except ImportError:  # pragma: no cover - depends on the tree
    zmq_transport = None  # type: ignore[assignment]

PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class Cluster:
    """Engines and transports of one test; everything started here is stopped in close()."""

    def __init__(self, root: Path, kind: str) -> None:
        self.root = root
        self.kind = kind
        self.hub = LocalHub()
        self.transports: dict[str, Any] = {}
        self.engines: dict[str, RaftEngine] = {}
        self.seen: dict[str, list[Committed]] = {}
        self.threads: dict[str, set[str]] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._endpoints: dict[str, str] = {}
        self.wire_log: list[tuple[str, str, Any]] = []

    # ---- transports ----
    def _peer_list(self, node_id: str, ids: list[str]) -> list[Any]:
        return [
            zmq_transport.Peer(p, self._endpoints[p], self._keys[p][0]) for p in ids if p != node_id
        ]

    def transport(self, node_id: str, ids: list[str]) -> Any:
        if node_id in self.transports:
            return self.transports[node_id]
        if self.kind == "hub":
            t: Any = self.hub.transport(node_id)
            original = t.send

            def recording_send(peer: str, channel: str, body: Any, _o: Any = original) -> bool:
                self.wire_log.append((peer, channel, body))
                return bool(_o(peer, channel, body))

            t.send = recording_send
        else:
            for p in ids:
                if p not in self._keys:
                    self._keys[p] = generate_keypair()
                    self._endpoints[p] = f"tcp://127.0.0.1:{free_port()}"
            public, secret = self._keys[node_id]
            t = zmq_transport.Transport(
                node_id, self._endpoints[node_id], public, secret, self._peer_list(node_id, ids)
            )
        t.start()
        self.transports[node_id] = t
        return t

    def introduce(self, node_id: str) -> None:
        """Make every running transport know a new node (before it is added)."""
        if self.kind == "hub" or node_id in self._keys:
            return
        self._keys[node_id] = generate_keypair()
        self._endpoints[node_id] = f"tcp://127.0.0.1:{free_port()}"
        peer = zmq_transport.Peer(node_id, self._endpoints[node_id], self._keys[node_id][0])
        for t in self.transports.values():
            t.add_peer(peer)

    def block(self, node_id: str, peers: list[str]) -> None:
        self.transports[node_id].block(peers)

    def heal(self, node_id: str) -> None:
        self.transports[node_id].block([])

    # ---- engines ----
    def start(self, node_id: str, ids: list[str], timers: RaftTimers | None = None) -> RaftEngine:
        transport = self.transport(node_id, ids)
        engine = RaftEngine(node_id, transport, ids, self.root / f"{node_id}.journal", timers)
        seen: list[Committed] = []
        self.seen[node_id] = seen
        engine.on_commit(seen.append)
        engine.start()
        self.engines[node_id] = engine
        return engine

    def stop(self, node_id: str, transport_too: bool = True) -> None:
        engine = self.engines.pop(node_id, None)
        if engine is not None:
            engine.stop()
        if transport_too:
            t = self.transports.pop(node_id, None)
            if t is not None:
                t.stop()

    def close(self) -> None:
        for node_id in list(self.engines):
            self.stop(node_id)
        for node_id in list(self.transports):
            self.transports.pop(node_id).stop()

    # ---- observations ----
    def leader(self, among: list[str] | None = None) -> str:
        """The leader every running engine in ``among`` agrees on (waits for one)."""
        names = among or list(self.engines)

        def agreed() -> str | None:
            views = {self.engines[n].leader() for n in names}
            roles = [self.engines[n].status()["role"] for n in names]
            if len(views) == 1 and None not in views and roles.count("leader") == 1:
                return views.pop()
            return None

        return str(wait_until(agreed, f"one leader among {names}"))

    def follower(self, among: list[str] | None = None) -> str:
        leader = self.leader(among)
        return next(n for n in (among or list(self.engines)) if n != leader)

    def log(self, node_id: str) -> list[tuple[int, bytes]]:
        return [(c.index, c.data) for c in list(self.seen[node_id])]

    def converged(self, names: list[str], count: int) -> list[tuple[int, bytes]]:
        def same() -> list[tuple[int, bytes]] | None:
            logs = [self.log(n) for n in names]
            if len(logs[0]) >= count and all(log == logs[0] for log in logs):
                return logs[0]
            return None

        return list(wait_until(same, f"{names} to deliver the same {count} entries"))


def propose_until_committed(engine: RaftEngine, data: bytes) -> int:
    """Propose, retrying while the swarm has no leader (an election is in progress)."""

    def attempt() -> int | None:
        with contextlib.suppress(NotCommittedError):
            return engine.propose(data, timeout=1.0)
        return None

    return int(wait_until(attempt, f"{data!r} to commit on {engine.node_id}"))


KINDS = ["hub", "zmq"]


@contextlib.contextmanager
def no_leaked_threads() -> Iterator[None]:
    """Fail the test if an engine, hub or transport thread it started outlives it."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t.name
        for t in threading.enumerate()
        if t.ident not in before
        and t.is_alive()
        and t.name.startswith(("raft-", "hub-", "transport-"))
    ]
    assert not leaked, f"threads left running: {leaked}"


C = TypeVar("C", bound=Cluster)


def running(kind: type[C], request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[C]:
    """A cluster of ``kind`` on the fixture's transport, closed and checked for leaked threads."""
    if request.param == "zmq" and zmq_transport is None:
        pytest.skip("runtime/transport (the ZeroMQ transport) is not in the tree yet")
    with no_leaked_threads():
        c = kind(tmp_path, request.param)
        try:
            yield c
        finally:
            c.close()


@pytest.fixture(params=KINDS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    yield from running(Cluster, request, tmp_path)


ABC = ["a", "b", "c"]


def test_engine_satisfies_the_protocol(tmp_path: Path) -> None:
    engine = RaftEngine("a", LocalHub().transport("a"), ABC, tmp_path / "a.journal")
    assert isinstance(engine, Consensus)
    assert engine.status()["role"] == "stopped"
    with pytest.raises(ConsensusError, match="not running"):
        engine.propose(b"x")
    engine.stop()  # stopping an engine that never started is a no-op


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    hub = LocalHub()
    with pytest.raises(ConfigError, match="own peer list"):
        RaftEngine("z", hub.transport("z"), ABC, tmp_path / "z.journal")
    with pytest.raises(ConfigError, match="3 × heartbeat"):
        RaftTimers(election_min=0.05, heartbeat=0.03)


def test_elect_propose_and_same_sequence_everywhere(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    follower = cluster.follower()
    indexes = [cluster.engines[leader].propose(b"from leader %d" % i) for i in range(5)]
    indexes.append(cluster.engines[follower].propose(b"from follower"))
    assert indexes == sorted(indexes) and len(set(indexes)) == 6
    log = cluster.converged(ABC, 6)
    assert [i for i, _ in log] == indexes
    assert log[-1][1] == b"from follower"
    statuses = [cluster.engines[n].status() for n in ABC]
    for status in statuses:
        assert status["members"] == ABC
        assert status["leader"] == leader
        assert status["commit_index"] >= indexes[-1]
        assert set(status) >= {
            "node",
            "role",
            "term",
            "leader",
            "commit_index",
            "last_applied",
            "log_len",
            "members",
        }
    assert sorted(s["role"] for s in statuses) == ["follower", "follower", "leader"]


def test_large_entry_and_binary_payloads(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    big = os.urandom(3 << 20)  # over the 1 MiB batch size: pysyncobj's chunked path
    odd = b"\x00\n\x80\x04\xff"  # newline and a pickle-looking header, as plain data
    cluster.engines[leader].propose(big, timeout=WAIT)
    cluster.engines[cluster.follower()].propose(odd)
    log = cluster.converged(ABC, 2)
    assert [d for _, d in log] == [big, odd]


def test_stop_leader_new_leader_commits(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    old = cluster.leader()
    cluster.engines[old].propose(b"before")
    cluster.stop(old)
    rest = [n for n in ABC if n != old]
    new = cluster.leader(rest)
    assert new != old
    propose_until_committed(cluster.engines[new], b"after")
    log = cluster.converged(rest, 2)
    assert [d for _, d in log][-2:] == [b"before", b"after"]


def test_restart_redelivers_from_the_start_and_catches_up(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    victim = cluster.follower()
    for i in range(3):
        cluster.engines[leader].propose(b"one %d" % i)
    first = cluster.converged(ABC, 3)
    cluster.stop(victim)
    for i in range(3):
        cluster.engines[leader].propose(b"two %d" % i)
    cluster.start(victim, ABC)
    log = cluster.converged(ABC, 6)
    assert log[:3] == first  # same indexes, delivered again from the start
    assert cluster.engines[victim].status()["members"] == ABC


def test_whole_swarm_restart_redelivers_committed_entries(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    cluster.engines[cluster.leader()].propose(b"survives")
    before = cluster.converged(ABC, 1)
    for n in ABC:
        cluster.stop(n)
    for n in ABC:
        cluster.start(n, ABC)
    assert cluster.converged(ABC, 1) == before
    cluster.engines[cluster.leader()].propose(b"and more")
    assert cluster.converged(ABC, 2)[:1] == before


def test_partition_minority_fails_majority_continues_heal_catches_up(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    cluster.engines[cluster.leader()].propose(b"before")
    cluster.converged(ABC, 1)
    lonely = cluster.leader()  # partition the leader itself: the hardest case
    majority = [n for n in ABC if n != lonely]
    cluster.block(lonely, majority)
    with pytest.raises(NotCommittedError) as err:
        cluster.engines[lonely].propose(b"minority", timeout=1.0)
    assert err.value.hint
    new = cluster.leader(majority)
    propose_until_committed(cluster.engines[new], b"majority 1")
    propose_until_committed(cluster.engines[cluster.follower(majority)], b"majority 2")
    cluster.converged(majority, 3)
    with pytest.raises(NotCommittedError):
        cluster.engines[lonely].propose(b"minority again", timeout=0.5)
    cluster.heal(lonely)
    log = cluster.converged(ABC, 3)
    assert b"minority" not in [d for _, d in log]
    assert b"minority again" not in [d for _, d in log]
    propose_until_committed(cluster.engines[lonely], b"after heal")
    assert cluster.converged(ABC, 4)[-1][1] == b"after heal"


def test_no_quorum_propose_raises_with_a_hint(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    survivor = cluster.follower()
    for n in ABC:
        if n != survivor:
            cluster.stop(n)
    with pytest.raises(NotCommittedError) as err:
        cluster.engines[survivor].propose(b"alone", timeout=1.0)
    assert survivor in str(err.value)
    assert err.value.hint and "majority" in err.value.hint
    assert leader != survivor


def test_add_and_remove_member(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    cluster.engines[leader].propose(b"three members")
    abcd = [*ABC, "d"]
    cluster.introduce("d")  # the transports must know the new node before it is added
    cluster.engines[leader].add_member("d", timeout=WAIT)
    cluster.start("d", abcd)
    wait_until(lambda: all(cluster.engines[n].members() == abcd for n in abcd), "d everywhere")
    cluster.engines[cluster.follower()].propose(b"four members")
    cluster.converged(abcd, 2)
    cluster.engines[cluster.leader()].add_member("d")  # already a member: a no-op

    cluster.engines[cluster.leader()].remove_member("d", timeout=WAIT)
    wait_until(lambda: all(cluster.engines[n].members() == ABC for n in ABC), "d gone")
    # d is told too: it is still sent the log for a grace period after its removal
    wait_until(lambda: cluster.engines["d"].status()["removed"], "d to learn it was removed")
    assert "d" not in cluster.engines["d"].members()
    cluster.stop("d")
    propose_until_committed(cluster.engines[cluster.follower()], b"three again")
    cluster.converged(ABC, 3)


def test_leader_removes_itself_by_handing_over(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    cluster.engines[leader].propose(b"x")
    cluster.converged(ABC, 1)
    follower = cluster.follower()
    with pytest.raises(ConsensusError, match="it is the leader"):
        cluster.engines[follower].remove_member(leader)
    cluster.engines[leader].remove_member(leader, timeout=WAIT)
    rest = [n for n in ABC if n != leader]
    wait_until(lambda: all(cluster.engines[n].members() == rest for n in rest), "members")
    assert cluster.engines[leader].status()["removed"]
    new = cluster.leader(rest)
    propose_until_committed(cluster.engines[new], b"two left")
    assert cluster.converged(rest, 2)[-1][1] == b"two left"


def test_callback_runs_on_one_thread_in_order_and_a_failure_halts(cluster: Cluster) -> None:
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    for i in range(5):
        cluster.engines[leader].propose(b"%d" % i)
    cluster.converged(ABC, 5)
    cluster.stop("a")
    threads: set[int] = set()
    delivered: list[int] = []

    def flaky(entry: Committed) -> None:
        threads.add(threading.get_ident())
        if len(delivered) == 3:
            raise RuntimeError("store is down")
        delivered.append(entry.index)

    engine = RaftEngine("a", cluster.transport("a", ABC), ABC, cluster.root / "a.journal")
    engine.on_commit(flaky)
    cluster.engines["a"] = engine
    engine.start()
    wait_until(lambda: engine.status()["apply_error"], "the failure to be reported")
    assert delivered == sorted(delivered) and len(delivered) == 3
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert "store is down" in engine.status()["apply_error"]
    with pytest.raises(ConsensusError, match="before start"):
        engine.on_commit(flaky)


def test_no_pickle_on_the_wire_or_in_the_journal(cluster: Cluster) -> None:
    if cluster.kind != "hub":
        pytest.skip("the hub records every frame")
    for n in ABC:
        cluster.start(n, ABC)
    for i in range(5):
        cluster.engines[cluster.leader()].propose(b"payload %d" % i)
    cluster.converged(ABC, 5)
    raft_frames = [body for _, channel, body in cluster.wire_log if channel == CHANNEL]
    assert {b["type"] for b in raft_frames} >= {"append_entries", "next_node_idx"}
    for body in raft_frames:
        for command in [body.get("command")] + [e[0] for e in body.get("entries", [])]:
            if command is not None:
                assert command[:1] in (TAG, b"\x01"), command[:8]
    for n in ABC:
        cluster.stop(n)
        blob = (cluster.root / f"{n}.journal").read_bytes()
        for header in PICKLE_HEADERS:
            assert header not in blob


def test_bad_frames_are_dropped_and_counted(cluster: Cluster) -> None:
    if cluster.kind != "hub":
        pytest.skip("forging frames needs the hub")
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    stranger = cluster.hub.transport("mallory")
    stranger.start()
    try:
        stranger.send(
            leader,
            CHANNEL,
            {"type": "request_vote", "term": 99, "last_log_index": 99, "last_log_term": 99},
        )
        member = cluster.transports[cluster.follower()]
        evil = b"\x00" + pickle.dumps((0, ("x",)))  # a REGULAR pysyncobj command
        member.send(leader, CHANNEL, {"type": "apply_command", "command": evil})
        member.send(leader, CHANNEL, {"type": "append_entries", "term": "x"})
        member.send(leader, CHANNEL, "not even a dict")
        wait_until(lambda: cluster.engines[leader].status()["dropped_frames"] >= 4, "drops")
    finally:
        stranger.stop()
    assert cluster.engines[leader].status()["term"] < 99
    cluster.engines[leader].propose(b"still fine")
    cluster.converged(ABC, 1)


# ---- the wire format, without engines -----------------------------------------------


def test_wire_roundtrip_of_every_message_type() -> None:
    messages = [
        {"type": "request_vote", "term": 3, "last_log_index": 9, "last_log_term": 2},
        {"type": "response_vote", "term": 3},
        {"type": "timeout_now", "term": 3},
        {
            "type": "append_entries",
            "term": 3,
            "commit_index": 4,
            "prevLogIdx": 4,
            "prevLogTerm": 2,
            "entries": [(b"Tx", 5, 3), (b"\x01", 6, 3)],
        },
        {
            "type": "append_entries",
            "term": 3,
            "commit_index": 4,
            "prevLogIdx": None,
            "prevLogTerm": None,
            "entries": [],
        },
        {"type": "apply_command", "command": b"Tdata", "request_id": 7},
        {"type": "apply_command_response", "request_id": 7, "log_idx": 5, "log_term": 3},
        {"type": "apply_command_response", "request_id": 7, "error": 2},
        {"type": "next_node_idx", "next_node_idx": 6, "reset": False, "success": True},
        {"type": "pre_vote", "term": 4, "last_log_index": 9, "last_log_term": 2},
        {"type": "pre_vote_response", "term": 4, "granted": True},
    ]
    import msgpack

    for message in messages:
        body = to_wire(message)
        assert body is not None
        back = from_wire(msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False))
        assert back == message


def test_wire_refuses_what_must_not_travel() -> None:
    assert (
        to_wire({"type": "append_entries", "term": 1, "commit_index": 1, "serialized": b"pickle"})
        is None
    )
    # a snapshot chunk travels only as [bytes, is_first, is_last], and never with entries
    chunk = {
        "type": "append_entries",
        "term": 1,
        "commit_index": 1,
        "serialized": (b"x", True, False),
    }
    assert to_wire(chunk) == {**chunk, "serialized": [b"x", True, False]}
    assert from_wire({**chunk, "serialized": [b"x", 1, 0]}) is None
    assert from_wire({**chunk, "prevLogIdx": 1, "prevLogTerm": 1}) is None
    assert from_wire({"type": "append_entries", "term": 1, "commit_index": 1}) is None
    assert to_wire({"type": "whatever"}) is None
    assert from_wire({"type": "apply_command", "command": b"\x00" + pickle.dumps(1)}) is None
    assert from_wire({"type": "apply_command", "command": b"\x03" + pickle.dumps(1)}) is None
    membership = b"\x02" + pickle.dumps(["add", "d"], protocol=2)
    assert from_wire({"type": "apply_command", "command": membership}) is not None
    assert (
        from_wire({"type": "next_node_idx", "next_node_idx": 1, "reset": 0, "success": True})
        is None
    )


def test_restricted_unpickler_refuses_globals() -> None:
    assert safe_loads(pickle.dumps(["rem", "b"], protocol=2)) == ["rem", "b"]
    assert safe_loads(pickle.dumps((b"\x00\xff", 3, 4), protocol=2)) == (b"\x00\xff", 3, 4)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        safe_loads(pickle.dumps(os.system, protocol=2))


def test_resent_entries_we_hold_are_skipped_not_truncated(tmp_path: Path) -> None:
    journal = CrcJournal(tmp_path / "j")
    try:
        for idx in range(1, 6):
            journal.add(b"T%d" % idx, idx, 1)
        got: list[dict[str, Any]] = []
        wire = _RaftWire(
            LocalHub().transport("a"), {"b": RaftNode("b")}, journal.sync, 1.0, journal
        )
        wire.setOnMessageReceivedCallback(lambda node, message: got.append(message))

        def append(prev: int, entries: list[tuple[bytes, int, int]]) -> dict[str, Any]:
            body = to_wire(
                {
                    "type": "append_entries",
                    "term": 2,
                    "commit_index": 3,
                    "prevLogIdx": prev,
                    "prevLogTerm": 1,
                    "entries": entries,
                }
            )
            wire.deliver("b", body)
            return got[-1]

        resent = append(2, [(b"T3", 3, 1), (b"T4", 4, 1), (b"T5", 5, 1), (b"T6", 6, 2)])
        assert (resent["prevLogIdx"], resent["prevLogTerm"]) == (5, 1)
        assert resent["entries"] == [(b"T6", 6, 2)]
        conflict = append(2, [(b"T3", 3, 1), (b"TX4", 4, 2)])
        assert conflict["prevLogIdx"] == 3 and conflict["entries"] == [(b"TX4", 4, 2)]
        assert wire.skipped_entries == 4
        wire.deliver("mallory", body={"type": "response_vote", "term": 1})
        assert wire.dropped_unknown == 1 and len(got) == 2
    finally:
        journal.close()


def test_pre_vote_rule() -> None:
    from consensus.prevote import would_vote

    ok = {
        "candidate_term": 5,
        "candidate_log": (3, 10),
        "term": 4,
        "log": (3, 10),
        "leader_alive": False,
    }
    assert would_vote(**ok)  # type: ignore[arg-type]
    assert not would_vote(**{**ok, "leader_alive": True})  # type: ignore[arg-type]
    assert not would_vote(**{**ok, "candidate_term": 4})  # type: ignore[arg-type]
    assert not would_vote(**{**ok, "candidate_log": (3, 9)})  # type: ignore[arg-type]
    assert not would_vote(**{**ok, "candidate_log": (2, 99)})  # type: ignore[arg-type]
    assert would_vote(**{**ok, "candidate_log": (4, 1)})  # type: ignore[arg-type]


def test_a_cut_off_follower_does_not_depose_the_leader_when_it_returns(cluster: Cluster) -> None:
    """Pre-vote: a node that cannot win never raises its term, so healing it costs no election."""
    for n in ABC:
        cluster.start(n, ABC)
    leader = cluster.leader()
    propose_until_committed(cluster.engines[leader], b"before")
    term = cluster.engines[leader].status()["term"]
    lonely = cluster.follower()
    granted = cluster.engines[lonely].status()["pre_votes_granted"]  # the first election's
    cluster.block(lonely, [n for n in ABC if n != lonely])
    # Many election timeouts alone: it keeps asking, and its term stays where it was.
    wait_until(
        lambda: cluster.engines[lonely].status()["pre_vote_rounds"] >= 5,
        "pre-vote rounds while cut off",
    )
    assert cluster.engines[lonely].status()["term"] == term
    assert (
        cluster.engines[lonely].status()["pre_votes_granted"] == granted
    )  # cut off: nobody can ask
    cluster.heal(lonely)
    # It rejoins as a follower of the same swarm (a heavily loaded machine may still hold
    # an ordinary election of its own; the term the lonely node brings back is not a cause).
    propose_until_committed(cluster.engines[cluster.leader()], b"after heal")
    cluster.converged(ABC, 2)
    wait_until(
        lambda: len({cluster.engines[n].status()["term"] for n in ABC}) == 1, "one term everywhere"
    )
