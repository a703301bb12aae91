"""The transport over real sockets on 127.0.0.1: identity, reliability, hostile input, limits.

Every transport, socket and context a test creates is stopped by a fixture, and the
``no_thread_leak`` fixture fails a test that leaves a thread running.  Waits are bounded
polls for a condition, never assertions about how long something took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import zmq

from evolution.errors import ConfigError, TransportError
from runtime.keys import generate_keypair
from runtime.testing import free_port, wait_until
from runtime.transport import Client, Frame, Peer, Transport


class Swarm:
    """Key pairs, addresses and transports for a handful of nodes, all stopped at the end."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, str]] = {}
        self.peers: dict[str, Peer] = {}
        self.started: list[Transport] = []
        self.closers: list[Callable[[], None]] = []

    def node(self, node_id: str) -> Peer:
        if node_id not in self.peers:
            self.keys[node_id] = generate_keypair()
            self.peers[node_id] = Peer(
                node_id, f"tcp://127.0.0.1:{free_port()}", self.keys[node_id][0]
            )
        return self.peers[node_id]

    def transport(
        self, node_id: str, peers: list[str], *, start: bool = True, **kwargs: Any
    ) -> Transport:
        me = self.node(node_id)
        known = [self.node(p) for p in peers]
        transport = Transport(node_id, me.endpoint, *self.keys[node_id], known, **kwargs)
        self.started.append(transport)
        if start:
            transport.start()
        return transport

    def raw_dealer(self, to: str, keys: tuple[str, str]) -> zmq.Socket[bytes]:
        """An authenticated raw DEALER to ``to``'s ROUTER, for sending hostile frames."""
        ctx: zmq.Context[Any] = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.curve_serverkey = self.peers[to].public_key.encode()
        sock.curve_publickey = keys[0].encode()
        sock.curve_secretkey = keys[1].encode()
        sock.connect(self.peers[to].endpoint)

        def close() -> None:
            sock.close(0)
            ctx.term()

        self.closers.append(close)
        return sock

    def close(self) -> None:
        for transport in self.started:
            transport.stop()
        for close in self.closers:
            close()


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not extra, f"threads left running: {[t.name for t in extra]}"


@pytest.fixture
def swarm(no_thread_leak: None) -> Iterator[Swarm]:
    made = Swarm()
    try:
        yield made
    finally:
        made.close()


class Inbox:
    """A subscribe handler that records frames; thread-safe enough for list appends."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def __call__(self, frame: Frame) -> None:
        self.frames.append(frame)

    def bodies(self) -> list[Any]:
        return [f.body for f in self.frames]


# ---------------------------------------------------------------- traffic and identity


def test_one_way_frames_carry_the_authenticated_sender(swarm: Swarm) -> None:
    a = swarm.transport("a", ["a", "b", "c"])
    b = swarm.transport("b", ["a", "b", "c"])
    c = swarm.transport("c", ["a", "b", "c"])
    inbox = Inbox()
    b.subscribe("gossip", inbox)
    assert a.send("b", "gossip", {"from": "c", "n": 1})  # a claims to be c: irrelevant
    assert c.send("b", "gossip", [1, 2.5, None, True, b"\x00bytes", "text"])
    wait_until(lambda: len(inbox.frames) == 2, "two frames at b")
    by_sender = {f.sender: f for f in inbox.frames}
    assert by_sender["a"] == Frame("a", "gossip", {"from": "c", "n": 1})
    assert by_sender["c"].body == [1, 2.5, None, True, b"\x00bytes", "text"]
    assert b.stats()["received"] == 2
    assert a.stats()["sent"] >= 1


def test_request_reply_between_three_nodes(swarm: Swarm) -> None:
    nodes = {n: swarm.transport(n, ["a", "b", "c"]) for n in ("a", "b", "c")}

    def whoami(name: str) -> Callable[[str, Any], Any]:
        return lambda sender, body: {"me": name, "you": sender, "x": body}

    for name, node in nodes.items():
        node.serve("whoami", whoami(name))
    assert nodes["a"].request("b", "whoami", 1) == {"me": "b", "you": "a", "x": 1}
    assert nodes["c"].request("a", "whoami", [2]) == {"me": "a", "you": "c", "x": [2]}
    assert nodes["b"].request("c", "whoami", None) == {"me": "c", "you": "b", "x": None}


def test_concurrent_requests_each_get_their_own_reply(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    b.serve("square", lambda _sender, n: n * n)
    results: dict[int, Any] = {}

    def ask(i: int) -> None:
        results[i] = a.request("b", "square", i, timeout=20)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i * i for i in range(20)}


def test_handler_exception_becomes_an_error_at_the_requester(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])

    def broken(_sender: str, _body: Any) -> Any:
        raise ValueError("the ledger is on fire")

    b.serve("broken", broken)
    b.serve("echo", lambda _sender, body: body)
    with pytest.raises(TransportError) as info:
        a.request("b", "broken", None)
    assert "the ledger is on fire" in str(info.value)
    assert "'broken'" in str(info.value) and "b" in str(info.value)
    assert a.request("b", "echo", "still here") == "still here"
    assert b.stats()["handler_errors"] == 1


def test_request_on_a_channel_nobody_serves_fails_fast(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    with pytest.raises(TransportError) as info:
        a.request("b", "nothing-here", None)
    assert "serves no channel 'nothing-here'" in str(info.value)
    assert b.stats()["dropped_unknown_channel"] == 1


def test_slow_request_handler_does_not_stall_the_receive_loop(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    release = threading.Event()
    inbox = Inbox()
    b.subscribe("tick", inbox)
    b.serve("slow", lambda _sender, _body: release.wait(30) and "slow done")
    b.serve("fast", lambda _sender, _body: "fast done")
    answers: list[Any] = []
    waiter = threading.Thread(target=lambda: answers.append(a.request("b", "slow", None, 30)))
    waiter.start()
    try:
        wait_until(lambda: b.stats()["received"] >= 1, "the slow request at b")
        assert a.send("b", "tick", 1)
        wait_until(lambda: inbox.bodies() == [1], "a one-way frame while a handler is busy")
        assert a.request("b", "fast", None) == "fast done"
    finally:
        release.set()
        waiter.join()
    assert answers == ["slow done"]


def test_request_timeout_names_peer_and_channel(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    release = threading.Event()
    b.serve("stuck", lambda _sender, _body: release.wait(30))
    try:
        with pytest.raises(TransportError) as info:
            a.request("b", "stuck", None, timeout=0.3)
        assert "no reply from b on channel 'stuck'" in str(info.value)
    finally:
        release.set()
    # The late reply is counted, not delivered to anyone.
    wait_until(lambda: a.stats()["late_replies"] == 1, "the late reply")


def test_request_to_a_node_that_is_down_times_out(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    swarm.node("b")  # known, never started
    with pytest.raises(TransportError) as info:
        a.request("b", "anything", None, timeout=0.3)
    assert "no reply from b" in str(info.value)


# ---------------------------------------------------------------- reliable channel


def test_send_reliable_delivers_in_order_exactly_once(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    inbox = Inbox()
    b.subscribe("log", inbox)
    for i in range(500):
        a.send_reliable("b", "log", i)
    wait_until(lambda: len(inbox.frames) >= 500, "500 reliable frames")
    assert inbox.bodies() == list(range(500))
    assert {f.sender for f in inbox.frames} == {"a"}
    # Everything is acknowledged: nothing is left to retransmit.
    time.sleep(0.5)
    assert inbox.bodies() == list(range(500))


def test_send_reliable_survives_a_receiver_restart(swarm: Swarm) -> None:
    """Stop the receiver mid-stream and start a new one on the same port: no loss, no dup.

    A third of the frames each: delivered then lost in b1's queues, sent while nobody
    listens, sent to b2 (the retransmits of the first two thirds take most of the time)."""
    third = 400
    total = 3 * third
    a = swarm.transport("a", ["b"])
    delivered: list[int] = []
    reached = threading.Event()

    def slow_after_a_quarter(frame: Frame) -> None:
        delivered.append(frame.body)
        if len(delivered) >= third // 4:  # from here on, frames pile up in b1's queues
            reached.set()
            time.sleep(0.005)

    b1 = swarm.transport("b", ["a"], start=False)
    b1.subscribe("log", slow_after_a_quarter)
    b1.start()
    for i in range(third):
        a.send_reliable("b", "log", i)
    assert reached.wait(30)
    b1.stop()  # whatever b1 had queued but not delivered is gone with it
    first_part = len(delivered)
    assert first_part < third
    for i in range(third, 2 * third):  # sent while nobody listens on b's port
        a.send_reliable("b", "log", i)
    b2 = swarm.transport("b", ["a"], start=False)
    b2.subscribe("log", lambda frame: delivered.append(frame.body))
    b2.start()
    for i in range(2 * third, total):
        a.send_reliable("b", "log", i)
    wait_until(lambda: len(delivered) >= total, f"{total} frames across both receivers")
    time.sleep(3 * 0.2)  # a few retransmit periods: a duplicate would show up now
    assert delivered == list(range(total)), (
        f"first receiver got {first_part}; missing "
        f"{sorted(set(range(total)) - set(delivered))[:10]}, "
        f"duplicates {len(delivered) - len(set(delivered))}"
    )
    assert a.stats()["retransmits"] > 0  # the frames lost with b1 came back this way


def test_send_reliable_survives_a_sender_restart(swarm: Swarm) -> None:
    """A new sender incarnation starts a new stream; the receiver follows it."""
    b = swarm.transport("b", ["a"])
    inbox = Inbox()
    b.subscribe("log", inbox)
    a1 = swarm.transport("a", ["b"])
    for i in range(100):
        a1.send_reliable("b", "log", i)
    wait_until(lambda: len(inbox.frames) == 100, "the first sender's frames")
    a1.stop()
    a2 = swarm.transport("a", ["b"])
    for i in range(100, 200):
        a2.send_reliable("b", "log", i)
    wait_until(lambda: len(inbox.frames) == 200, "the second sender's frames")
    assert inbox.bodies() == list(range(200))


def test_send_reliable_backlog_is_bounded(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"], queue_limit=50)
    swarm.node("b")  # never started: nothing is acknowledged
    for i in range(50):
        a.send_reliable("b", "log", i)
    with pytest.raises(TransportError) as info:
        a.send_reliable("b", "log", 50)
    assert "50 unacknowledged frames for b" in str(info.value)


def test_a_slow_receiver_gets_batches_in_order(swarm: Swarm) -> None:
    """When b cannot keep up, a's frames wait and leave in batches: none lost, none reordered."""
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    inbox = Inbox()
    release = threading.Event()

    def slow(frame: Frame) -> None:
        release.wait(30)  # b's I/O thread is stuck: its socket and a's fill up
        inbox(frame)

    b.subscribe("bulk", slow)
    b.serve("echo", lambda _sender, body: body)
    total = 5000
    for i in range(total):
        while not a.send("b", "bulk", i):
            release.set()  # a's queue is full: let b drain it
            time.sleep(0.001)
        if i == 3000:
            release.set()
    release.set()
    wait_until(lambda: len(inbox.frames) == total, f"{total} frames at b")
    assert inbox.bodies() == list(range(total))
    assert a.request("b", "echo", "after the burst") == "after the burst"


def test_malformed_batches_are_dropped_and_counted(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    swarm.node("mallory")
    b = swarm.transport("b", ["a", "mallory"])
    inbox = Inbox()
    b.subscribe("votes", inbox)
    b.serve("echo", lambda _sender, body: body)
    raw = swarm.raw_dealer("b", swarm.keys["mallory"])
    raw.send(
        msgpack.packb(
            [
                "bat",
                "",
                None,
                [
                    ["msg", "votes", None, "first"],
                    "not a frame",
                    ["bat", "", None, []],  # no batches in batches
                    ["msg", "no-such-channel", None, 1],
                    ["msg", "votes", None, "second"],
                ],
            ]
        )
    )
    raw.send(msgpack.packb(["bat", "", None, "not a list"]))
    wait_until(lambda: inbox.bodies() == ["first", "second"], "the good frames of the batch")
    stats = b.stats()
    assert stats["dropped_undecodable"] == 3
    assert stats["dropped_unknown_channel"] == 1
    assert {f.sender for f in inbox.frames} == {"mallory"}
    assert a.request("b", "echo", "alive") == "alive"


# ---------------------------------------------------------------- authentication


def test_unknown_client_key_is_rejected_and_counted(swarm: Swarm) -> None:
    admin = generate_keypair()
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"], clients={"admin": admin[0]})
    b.serve("status", lambda sender, _body: {"asked_by": sender})
    stranger = Client(swarm.peers["b"].endpoint, swarm.peers["b"].public_key, *generate_keypair())
    swarm.closers.append(stranger.close)
    with pytest.raises(TransportError) as info:
        stranger.request("status", None, timeout=0.5)
    assert "no reply from" in str(info.value) and "'status'" in str(info.value)
    wait_until(lambda: b.stats()["dropped_unknown_key"] >= 1, "the rejection to be counted")
    # The node keeps serving its peers and its known clients.
    assert a.request("b", "status", None) == {"asked_by": "a"}
    with Client(swarm.peers["b"].endpoint, swarm.peers["b"].public_key, *admin) as client:
        assert client.request("status", None) == {"asked_by": "admin"}
        with pytest.raises(TransportError) as info:
            client.request("nothing-here", None)
        assert "serves no channel" in str(info.value)


def test_a_client_may_only_make_requests(swarm: Swarm) -> None:
    admin = generate_keypair()
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"], clients={"admin": admin[0]})
    inbox = Inbox()
    b.subscribe("votes", inbox)
    b.serve("echo", lambda _sender, body: body)
    raw = swarm.raw_dealer("b", admin)
    raw.send(msgpack.packb(["msg", "votes", None, "forged vote"]))
    raw.send(msgpack.packb(["rel", "votes", [1, 0, 0], "forged entry"]))
    wait_until(lambda: b.stats()["dropped_not_allowed"] == 2, "the client's frames dropped")
    assert inbox.frames == []
    assert a.request("b", "echo", 1) == 1


def test_a_peer_cannot_claim_another_identity(swarm: Swarm) -> None:
    """The sender is the key's owner, whatever the frame says."""
    a = swarm.transport("a", ["b", "c"])
    swarm.node("c")
    b = swarm.transport("b", ["a", "c"])
    inbox = Inbox()
    b.subscribe("votes", inbox)
    raw = swarm.raw_dealer("b", swarm.keys["c"])  # holds c's key: it is c
    raw.send(msgpack.packb(["msg", "votes", "a", {"sender": "a"}]))
    wait_until(lambda: len(inbox.frames) == 1, "the frame from c")
    assert inbox.frames[0].sender == "c"
    assert a.send("b", "votes", 2)
    wait_until(lambda: len(inbox.frames) == 2, "the frame from a")
    assert inbox.frames[1].sender == "a"


# ---------------------------------------------------------------- hostile input and limits


def test_malformed_frames_are_dropped_and_counted(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    swarm.node("mallory")
    b = swarm.transport("b", ["a", "mallory"], max_frame=4096)
    inbox = Inbox()
    b.subscribe("votes", inbox)
    b.serve("echo", lambda _sender, body: body)
    raw = swarm.raw_dealer("b", swarm.keys["mallory"])
    valid = msgpack.packb(["msg", "votes", None, "ok"])
    raw.send(b"\xc1\xc1\xc1")  # never-used msgpack byte
    raw.send(valid[:-2])  # truncated
    raw.send(msgpack.packb([1, 2]))  # wrong shape
    raw.send(msgpack.packb({"kind": "msg"}))  # wrong type
    raw.send(msgpack.packb(["msg", ["not", "a", "str"], None, 1]))  # channel not a string
    raw.send(msgpack.packb(["bogus", "votes", None, 1]))  # unknown kind
    raw.send(msgpack.packb(["rel", "votes", "not-a-list", 1]))  # bad reliable ident
    raw.send_multipart([valid, valid])  # two parts: not our framing
    raw.send(msgpack.packb(["msg", "no-such-channel", None, 1]))
    raw.send(msgpack.packb(["msg", "votes", None, b"x" * 5000]))  # over max_frame
    raw.send(msgpack.packb(["rep", "echo", 999, "nobody asked"]))
    raw.send(valid)  # and one good frame, last
    wait_until(lambda: inbox.bodies() == ["ok"], "the good frame")
    stats = b.stats()
    assert stats["dropped_undecodable"] == 8
    assert stats["dropped_unknown_channel"] == 1
    assert stats["dropped_oversize"] == 1
    assert stats["late_replies"] == 1
    assert a.request("b", "echo", "alive") == "alive"


def test_frames_over_the_hard_limit_cost_the_sender_its_connection(swarm: Swarm) -> None:
    """MAXMSGSIZE (2 x max_frame) stops a huge frame before it is buffered whole."""
    a = swarm.transport("a", ["b"])
    swarm.node("mallory")
    b = swarm.transport("b", ["a", "mallory"], max_frame=4096)
    b.serve("echo", lambda _sender, body: body)
    raw = swarm.raw_dealer("b", swarm.keys["mallory"])
    raw.send(b"\x00" * 20_000)
    assert a.request("b", "echo", "alive") == "alive"
    assert b.stats()["received"] == 1  # the huge frame never reached the application


def test_oversized_body_is_refused_at_the_sender(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"], max_frame=4096)
    swarm.node("b")
    with pytest.raises(TransportError) as info:
        a.send("b", "bulk", b"x" * 5000)
    assert "over the 4096-byte frame limit" in str(info.value)


def test_unencodable_body_is_refused_at_the_sender(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    swarm.node("b")
    with pytest.raises(TransportError) as info:
        a.send("b", "bulk", object())
    assert "cannot encode the body for b on channel 'bulk'" in str(info.value)


def test_a_failing_one_way_handler_does_not_kill_the_node(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])

    def explode(_frame: Frame) -> None:
        raise RuntimeError("handler bug")

    b.subscribe("bad", explode)
    b.serve("echo", lambda _sender, body: body)
    assert a.send("b", "bad", 1)
    a.send_reliable("b", "bad", 2)
    wait_until(lambda: b.stats()["handler_errors"] == 2, "both handler failures")
    assert a.request("b", "echo", "alive") == "alive"


# ---------------------------------------------------------------- lifecycle and faults


def test_taken_port_is_a_transport_error(swarm: Swarm) -> None:
    swarm.transport("a", ["b"])
    intruder = Transport("b", swarm.peers["a"].endpoint, *generate_keypair(), [])
    with pytest.raises(TransportError) as info:
        intruder.start()
    port = swarm.peers["a"].endpoint
    assert info.value.message == (
        f"b cannot listen on {port}: the port is in use by another process"
    )
    assert info.value.hint == "stop the other process or change the node's port in cluster.yml"
    intruder.stop()  # a no-op: nothing was left running


def test_block_drops_both_ways_and_heal_restores(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    at_a, at_b = Inbox(), Inbox()
    a.subscribe("raft", at_a)
    b.subscribe("raft", at_b)
    b.serve("echo", lambda _sender, body: body)
    a.block(["b"])
    assert not a.send("b", "raft", "lost")
    assert b.send("a", "raft", "lost too")  # b is not partitioned itself; a drops it
    a.send_reliable("b", "raft", "kept")
    with pytest.raises(TransportError):
        a.request("b", "echo", 1, timeout=0.3)
    wait_until(lambda: a.stats()["dropped_blocked"] >= 4, "the blocked traffic to be counted")
    assert at_a.frames == [] and at_b.frames == []
    a.block([])
    assert a.send("b", "raft", "after heal")
    assert b.send("a", "raft", "after heal too")
    assert a.request("b", "echo", 2) == 2
    wait_until(lambda: len(at_b.frames) == 2, "the reliable frame and the new one at b")
    assert sorted(at_b.bodies()) == ["after heal", "kept"]
    wait_until(lambda: at_a.bodies() == ["after heal too"], "the frame at a")


def test_unknown_peer_is_refused(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    assert not a.send("zed", "raft", 1)
    assert a.stats()["dropped_unknown_peer"] == 1
    with pytest.raises(TransportError) as info:
        a.request("zed", "echo", 1)
    assert "'zed'" in str(info.value) and "not a known peer" in str(info.value)
    with pytest.raises(TransportError):
        a.send_reliable("zed", "log", 1)


def test_add_and_remove_peers_at_run_time(swarm: Swarm) -> None:
    a = swarm.transport("a", [])
    c = swarm.transport("c", ["a"])
    c.serve("echo", lambda sender, body: [sender, body])
    assert not a.send("c", "raft", 1)
    a.add_peer(swarm.peers["c"])

    def echo_works() -> bool:
        # c's replies travel on c's own connection to a, which a refused while c was a
        # stranger: c dials again within a second, so the first requests may time out.
        try:
            return bool(a.request("c", "echo", 1, timeout=0.5) == ["a", 1])
        except TransportError:
            return False

    wait_until(echo_works, "a request to the new peer")
    a.remove_peer("c")
    assert not a.send("c", "raft", 2)
    with pytest.raises(TransportError):
        a.request("c", "echo", 2)
    # c is no longer admitted by a either: what c sends to a is dropped.
    inbox = Inbox()
    a.subscribe("raft", inbox)
    assert c.send("a", "raft", 3)
    wait_until(
        lambda: a.stats()["dropped_unknown_key"] >= 1,
        "c's frames to be refused at a",
    )
    assert inbox.frames == []


def test_add_peer_with_a_duplicate_key_changes_nothing(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    clone = Peer("z", "tcp://127.0.0.1:1", swarm.peers["b"].public_key)
    with pytest.raises(ConfigError) as info:
        a.add_peer(clone)
    assert "'b' and 'z' share the public key" in str(info.value)
    assert not a.send("z", "raft", 1)
    assert a.stats()["dropped_unknown_peer"] == 1


def test_config_errors_say_what_is_wrong() -> None:
    public, secret = generate_keypair()
    with pytest.raises(ConfigError) as info:
        Transport("a", "tcp://127.0.0.1:1", public, secret, [Peer("b", "tcp://x:1", "short")])
    assert "peer b has an invalid public key" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Transport("a", "127.0.0.1:7101", public, secret, [])
    assert "invalid endpoint '127.0.0.1:7101'" in str(info.value)
    other = generate_keypair()[0]
    with pytest.raises(ConfigError) as info:
        Transport(
            "a",
            "tcp://127.0.0.1:1",
            public,
            secret,
            [Peer("b", "tcp://127.0.0.1:2", other), Peer("c", "tcp://127.0.0.1:3", other)],
        )
    assert "share the public key" in str(info.value)


def test_stop_leaves_no_thread_and_is_idempotent(swarm: Swarm) -> None:
    before = set(threading.enumerate())
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    b.serve("echo", lambda _sender, body: body)
    assert a.request("b", "echo", 1) == 1
    a.send_reliable("b", "log", 1)
    assert len(set(threading.enumerate()) - before) >= 2 * 6  # I/O, ZAP, 4 workers each
    a.stop()
    b.stop()
    a.stop()
    assert set(threading.enumerate()) - before == set()
    assert not a.send("b", "raft", 1)
    assert a.stats()["dropped_not_running"] == 1
    with pytest.raises(TransportError) as info:
        a.request("b", "echo", 1)
    assert "not running" in str(info.value)


def test_request_from_a_subscribe_handler_is_refused(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    a.serve("echo", lambda _sender, body: body)
    errors: list[str] = []

    def handler(frame: Frame) -> None:
        try:
            b.request("a", "echo", frame.body)
        except TransportError as exc:
            errors.append(str(exc))

    b.subscribe("raft", handler)
    assert a.send("b", "raft", 1)
    wait_until(lambda: len(errors) == 1, "the refusal")
    assert "deadlock" in errors[0]


# ---------------------------------------------------------------- fast paths


def test_inline_handler_answers_on_the_receive_thread(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    threads: list[str] = []

    def where(sender: str, body: Any) -> Any:
        threads.append(threading.current_thread().name)
        return [sender, body]

    def broken(_sender: str, _body: Any) -> None:
        raise ValueError("bad inline input")

    b.serve("where", where, inline=True)
    b.serve("broken", broken, inline=True)
    assert a.request("b", "where", 7) == ["a", 7]
    assert threads == ["transport-io-b"]
    with pytest.raises(TransportError) as info:
        a.request("b", "broken", None)
    assert "ValueError: bad inline input" in str(info.value)
    assert b.stats()["handler_errors"] == 1
    # serve() again without inline moves the channel back to the workers.
    b.serve("where", where)
    assert a.request("b", "where", 8) == ["a", 8]
    assert threads[-1].startswith("transport-worker-b"), (threads, b._inline)


def test_an_oversized_inline_reply_becomes_an_error(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"], max_frame=4096)
    b.serve("big", lambda _sender, body: b"x" * body, inline=True)
    assert a.request("b", "big", 100) == b"x" * 100
    with pytest.raises(TransportError) as info:
        a.request("b", "big", 5000)
    assert "over the 4096-byte frame limit" in str(info.value)
    assert b.stats()["handler_errors"] == 1
    assert a.request("b", "big", 10) == b"x" * 10  # and the node carries on


def test_each_calling_thread_has_its_own_request_socket(swarm: Swarm) -> None:
    """Replies come back to the thread that asked, on its own socket, whoever asks."""
    a = swarm.transport("a", ["b", "c"])
    b = swarm.transport("b", ["a", "c"])
    c = swarm.transport("c", ["a", "b"])
    b.serve("who", lambda sender, body: ["b", sender, body])
    c.serve("who", lambda sender, body: ["c", sender, body], inline=True)
    results: dict[tuple[int, str], Any] = {}

    def ask(i: int) -> None:
        for peer in ("b", "c", "b"):
            results[(i, peer)] = a.request(peer, "who", i, timeout=20)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {(i, p): [p, "a", i] for i in range(8) for p in ("b", "c")}
    # The sockets of threads that ended are closed when the next one is opened.
    assert a.request("b", "who", "main") == ["b", "a", "main"]
    assert len(a._callers) <= 2  # this thread's, plus at most one for c
    # Requests are counted on the caller's socket, and the counts of closed ones are kept.
    assert a.stats()["received"] == 25
    assert a.stats()["sent"] >= 25
    wait_until(lambda: b.stats()["sent"] == 17 and c.stats()["sent"] == 8, "the replies counted")
    # Each worker reply woke b's I/O thread through its ROUTER: none of them is a frame.
    assert b.stats()["dropped_unknown_key"] == 0
    assert b.stats()["received"] == 17


@pytest.mark.parametrize(
    ("cut", "says"),
    [(lambda a: a.stop(), "stopped"), (lambda a: a.remove_peer("b"), "was removed")],
    ids=["stop", "remove_peer"],
)
def test_cutting_the_caller_off_fails_a_request_in_flight(
    swarm: Swarm, cut: Callable[[Any], None], says: str
) -> None:
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    release = threading.Event()
    b.serve("stuck", lambda _sender, _body: release.wait(30))
    errors: list[str] = []

    def ask() -> None:
        try:
            a.request("b", "stuck", None, timeout=30)
        except TransportError as exc:
            errors.append(str(exc))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        wait_until(lambda: b.stats()["received"] >= 1, "the request at b")
        cut(a)
        asker.join(10)
        assert not asker.is_alive()
        assert len(errors) == 1 and says in errors[0]
    finally:
        release.set()


def test_coalesced_bursts_arrive_complete_and_in_order(swarm: Swarm) -> None:
    a = swarm.transport("a", ["b"], coalesce=0.001)
    b = swarm.transport("b", ["a"])
    inbox = Inbox()
    b.subscribe("bulk", inbox)
    total = 3000
    for i in range(total):
        while not a.send("b", "bulk", i):
            time.sleep(0.001)
    wait_until(lambda: len(inbox.frames) == total, f"{total} frames at b")
    assert inbox.bodies() == list(range(total))
    assert {f.sender for f in inbox.frames} == {"a"}
    # A lone frame after a pause leaves at once, and so does the straggler of a burst.
    time.sleep(0.01)
    assert a.send("b", "bulk", "alone")
    wait_until(lambda: inbox.bodies()[-1] == "alone", "the lone frame")
    assert a.stats()["sent"] >= total + 1
    with pytest.raises(ConfigError):
        Transport("x", "tcp://127.0.0.1:1", *swarm.keys["a"], [], coalesce=1.0)


def test_identity_survives_reconnections(swarm: Swarm) -> None:
    """Cached sender identities follow connections: restarted peers are still themselves."""
    a = swarm.transport("a", ["b", "c"])
    b = swarm.transport("b", ["a", "c"])
    c = swarm.transport("c", ["a", "b"])
    inbox = Inbox()
    b.subscribe("votes", inbox)
    assert a.send("b", "votes", "a1")
    assert c.send("b", "votes", "c1")
    wait_until(lambda: len(inbox.frames) == 2, "the first frames")
    a.stop()
    c.stop()
    restarted = {}
    for name in ("c", "a"):  # new connections, new routing ids, in the other order
        others = [swarm.peers[p] for p in ("a", "b", "c") if p != name]
        node = Transport(name, swarm.peers[name].endpoint, *swarm.keys[name], others)
        swarm.started.append(node)
        node.start()
        restarted[name] = node

    def both_arrived() -> bool:
        bodies = inbox.bodies()
        for name, node in restarted.items():
            if f"{name}2" not in bodies:
                node.send("b", "votes", f"{name}2")
        return {"a2", "c2"} <= set(inbox.bodies())

    wait_until(both_arrived, "frames from the restarted nodes")
    assert all(f.sender == str(f.body)[0] for f in inbox.frames)


def test_send_many_delivers_each_frame_in_order(swarm: Swarm) -> None:
    """send_many: the same frames as send() calls, in order, one handler call each."""
    a = swarm.transport("a", ["b"])
    b = swarm.transport("b", ["a"])
    inbox = Inbox()
    b.subscribe("bulk", inbox)
    total, sent = 5000, 0
    while sent < total:
        taken = a.send_many("b", "bulk", range(sent, min(sent + 300, total)))
        sent += taken
        if taken == 0:
            time.sleep(0.001)
    assert a.send_many("b", "bulk", ["last"]) == 1  # a single frame leaves as a plain one
    wait_until(lambda: len(inbox.frames) == total + 1, f"{total + 1} frames at b")
    assert inbox.bodies() == [*range(total), "last"]
    assert {f.sender for f in inbox.frames} == {"a"}
    assert a.send_many("b", "bulk", []) == 0
    with pytest.raises(TransportError):  # refused before anything leaves
        a.send_many("b", "bulk", [1, object()])
    with pytest.raises(TransportError):
        a.send_many("b", "bulk", [b"x" * (a.max_frame + 1)])
    assert a.send_many("nobody", "bulk", [1]) == 0
    a.block(["b"])
    assert a.send_many("b", "bulk", [1, 2]) == 0
    stats = a.stats()
    assert stats["dropped_unknown_peer"] == 1 and stats["dropped_blocked"] == 1
