"""An in-process stand-in for the ZeroMQ transport, for tests and benchmarks.

Engines can be tested, and other packages can test against real consensus, without
sockets.  Like etcd's raft test network, the hub can :meth:`~LocalHub.cut` a link,
:meth:`~LocalHub.isolate` a node, :meth:`~LocalHub.drop` part of one direction's
traffic, and :meth:`~LocalHub.heal` all of it; each endpoint can also
:meth:`~LocalTransport.block` peers of its own.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import msgpack

from consensus.interface import Frame

logger = logging.getLogger(__name__)

__all__ = ["LocalFrame", "LocalHub", "LocalTransport"]


class LocalFrame(NamedTuple):
    sender: str
    channel: str
    body: Any


class LocalHub:
    """In-process stand-in for the ZeroMQ transport, with partitions and loss.

    Bodies go through msgpack exactly as on the wire, so anything that would not survive
    the real transport fails here too; each endpoint delivers on its own receive thread,
    as the real one does.  ``seed`` makes :meth:`drop`'s losses repeatable.
    """

    def __init__(self, max_frame: int = 8 << 20, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, LocalTransport] = {}
        self.max_frame = max_frame
        self.dropped = 0
        self._cuts: set[frozenset[str]] = set()
        self._isolated: set[str] = set()
        self._loss: dict[tuple[str, str], float] = {}
        self._random = random.Random(seed)

    def transport(self, node_id: str) -> LocalTransport:
        with self._lock:
            endpoint = LocalTransport(self, node_id)
            self._endpoints[node_id] = endpoint
            return endpoint

    # ---- faults (etcd's network: cut, isolate, drop, recover) ----------------------------

    def cut(self, one: str, other: str) -> None:
        """Drop every frame between ``one`` and ``other``, both ways, until :meth:`heal`."""
        with self._lock:
            self._cuts.add(frozenset((one, other)))

    def isolate(self, node_id: str) -> None:
        """Drop every frame to and from ``node_id`` until :meth:`heal`."""
        with self._lock:
            self._isolated.add(node_id)

    def drop(self, sender: str, receiver: str, rate: float = 1.0) -> None:
        """Lose the fraction ``rate`` of the frames from ``sender`` to ``receiver`` (one way)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"drop rate {rate} is not between 0 and 1")
        with self._lock:
            if rate:
                self._loss[(sender, receiver)] = rate
            else:
                self._loss.pop((sender, receiver), None)

    def heal(self) -> None:
        """Undo every :meth:`cut`, :meth:`isolate` and :meth:`drop` (not endpoints' blocks)."""
        with self._lock:
            self._cuts.clear()
            self._isolated.clear()
            self._loss.clear()

    def _severed(self, sender: str, receiver: str) -> bool:
        if sender in self._isolated or receiver in self._isolated:
            return True
        if frozenset((sender, receiver)) in self._cuts:
            return True
        rate = self._loss.get((sender, receiver))
        return rate is not None and self._random.random() < rate

    def _route(self, sender: str, peer_id: str, channel: str, body: Any) -> bool:
        wire = msgpack.packb(body, use_bin_type=True)
        if len(wire) > self.max_frame - 64:
            raise ValueError(f"body of {len(wire)} bytes is over the {self.max_frame}-byte frame")
        with self._lock:
            source = self._endpoints.get(sender)
            target = self._endpoints.get(peer_id)
            if (
                source is None
                or target is None
                or not target.running
                or peer_id in source.blocked
                or sender in target.blocked
                or self._severed(sender, peer_id)
            ):
                self.dropped += 1
                return False
        target._inbox.put((sender, channel, wire))
        return True


class LocalTransport:
    """One node's endpoint on a :class:`LocalHub` (same surface as runtime.transport)."""

    def __init__(self, hub: LocalHub, node_id: str) -> None:
        self._hub = hub
        self.node_id = node_id
        self.blocked: frozenset[str] = frozenset()
        self._handlers: dict[str, Callable[[Frame], None]] = {}
        self._inbox: queue.SimpleQueue[tuple[str, str, bytes] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.running = False
        self.max_frame = hub.max_frame

    def subscribe(self, channel: str, handler: Callable[[Frame], None]) -> None:
        self._handlers[channel] = handler

    def unsubscribe(self, channel: str) -> None:
        self._handlers.pop(channel, None)

    def send(self, peer_id: str, channel: str, body: Any) -> bool:
        if not self.running:
            return False
        return self._hub._route(self.node_id, peer_id, channel, body)

    def block(self, peers: Iterable[str]) -> None:
        """Drop every frame to and from ``peers`` (replaces the previous set)."""
        self.blocked = frozenset(peers)

    def unblock(self) -> None:
        self.blocked = frozenset()

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self._thread = threading.Thread(
            target=self._receive, name=f"hub-recv-{self.node_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _receive(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            if not self.running:
                continue
            sender, channel, wire = item
            handler = self._handlers.get(channel)
            if handler is None:
                continue
            try:
                handler(LocalFrame(sender, channel, msgpack.unpackb(wire, raw=False)))
            except Exception:
                logger.exception("local hub: handler for %r on %s failed", channel, self.node_id)
