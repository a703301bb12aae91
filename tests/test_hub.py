"""The in-memory hub (consensus.testing): delivery, and etcd-style cut / isolate / drop / heal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_consensus import ABC, Cluster, no_leaked_threads, propose_until_committed, wait_until

from consensus.testing import LocalFrame, LocalHub, LocalTransport


class Node:
    """An endpoint that records what it receives."""

    def __init__(self, hub: LocalHub, name: str) -> None:
        self.name = name
        self.got: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.transport: LocalTransport = hub.transport(name)
        self.transport.subscribe("test", self.on_frame)
        self.transport.start()

    def on_frame(self, frame: Any) -> None:
        assert isinstance(frame, LocalFrame)
        with self.lock:
            self.got.append((frame.sender, frame.body))

    def received(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.got)


@pytest.fixture
def net() -> Iterator[tuple[LocalHub, dict[str, Node]]]:
    with no_leaked_threads():
        hub = LocalHub(seed=1)
        nodes = {n: Node(hub, n) for n in "abc"}
        try:
            yield hub, nodes
        finally:
            for node in nodes.values():
                node.transport.stop()


def settle(nodes: dict[str, Node], expected: dict[str, int]) -> None:
    wait_until(
        lambda: all(len(nodes[n].received()) == count for n, count in expected.items()),
        f"deliveries {expected}",
    )


def test_frames_arrive_as_msgpack_decodes_them(net: tuple[LocalHub, dict[str, Node]]) -> None:
    hub, nodes = net
    assert nodes["a"].transport.send("b", "test", {"x": (1, 2), "y": b"\x00"})
    settle(nodes, {"b": 1})
    assert nodes["b"].received() == [("a", {"x": [1, 2], "y": b"\x00"})]  # tuples become lists
    assert not nodes["a"].transport.send("nobody", "test", 1)
    with pytest.raises(ValueError, match="over the"):
        nodes["a"].transport.send("b", "test", b"x" * hub.max_frame)


def test_cut_is_both_ways_and_only_that_link(net: tuple[LocalHub, dict[str, Node]]) -> None:
    hub, nodes = net
    hub.cut("a", "b")
    assert not nodes["a"].transport.send("b", "test", 1)
    assert not nodes["b"].transport.send("a", "test", 2)
    assert nodes["a"].transport.send("c", "test", 3)
    assert nodes["c"].transport.send("b", "test", 4)
    settle(nodes, {"a": 0, "b": 1, "c": 1})
    assert hub.dropped == 2
    hub.heal()
    assert nodes["a"].transport.send("b", "test", 5)
    settle(nodes, {"b": 2})


def test_isolate_cuts_a_node_from_everyone(net: tuple[LocalHub, dict[str, Node]]) -> None:
    hub, nodes = net
    hub.isolate("c")
    for sender, receiver in (("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")):
        assert not nodes[sender].transport.send(receiver, "test", sender)
    assert nodes["a"].transport.send("b", "test", "a")
    settle(nodes, {"b": 1})
    hub.heal()
    assert nodes["c"].transport.send("a", "test", "c")
    settle(nodes, {"a": 1, "c": 0})


def test_drop_loses_one_direction_at_a_rate(net: tuple[LocalHub, dict[str, Node]]) -> None:
    hub, nodes = net
    hub.drop("a", "b")  # everything
    assert not any(nodes["a"].transport.send("b", "test", i) for i in range(20))
    assert nodes["b"].transport.send("a", "test", "back")  # the other way is untouched
    hub.drop("a", "b", 0.5)
    sent = [nodes["a"].transport.send("b", "test", i) for i in range(400)]
    assert 100 < sent.count(True) < 300  # seeded: some lost, some through
    settle(nodes, {"a": 1, "b": sent.count(True)})
    hub.drop("a", "b", 0.0)  # a zero rate removes the rule
    assert all(nodes["a"].transport.send("b", "test", i) for i in range(20))
    with pytest.raises(ValueError, match="between 0 and 1"):
        hub.drop("a", "b", 1.5)


def test_heal_leaves_an_endpoints_own_blocks(net: tuple[LocalHub, dict[str, Node]]) -> None:
    hub, nodes = net
    nodes["a"].transport.block(["b"])
    hub.heal()
    assert not nodes["a"].transport.send("b", "test", 1)
    nodes["a"].transport.unblock()
    assert nodes["a"].transport.send("b", "test", 1)


def test_raft_through_an_isolated_leader_and_a_lossy_link(tmp_path: Path) -> None:
    """The controls drive a real cluster: isolating the leader moves leadership, healing
    brings it back into the same log; a link losing a third of its frames still commits."""
    with no_leaked_threads():
        cluster = Cluster(tmp_path, "hub")
        try:
            for n in ABC:
                cluster.start(n, ABC)
            old = cluster.leader()
            propose_until_committed(cluster.engines[old], b"before")
            cluster.hub.isolate(old)
            rest = [n for n in ABC if n != old]
            new = cluster.leader(rest)
            assert new != old
            propose_until_committed(cluster.engines[new], b"while isolated")
            cluster.hub.heal()
            for other in rest:
                cluster.hub.drop(new, other, 0.3)
            propose_until_committed(cluster.engines[cluster.leader()], b"lossy")
            cluster.hub.heal()
            log = cluster.converged(ABC, 3)
            # a retried proposal may commit twice (propose_until_committed): order is what counts
            assert list(dict.fromkeys(d for _, d in log)) == [
                b"before",
                b"while isolated",
                b"lossy",
            ]
        finally:
            cluster.close()
