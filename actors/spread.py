"""Spread: the swarm's incubators as one pool (``evolution.spread`` in cluster.yml).

Every node lets its peers ask its incubators to prove a candidate (remote actor
messages over the transport, msgpack, only :data:`~actors.messages.Incubate` accepted).
With ``spread`` on, a node also adds its peers' incubators to its own pool, so the
leader's candidates are proven on every node's cores; a peer that cannot be reached is
replaced by a local incubator (the supervisor's fallback).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.messages import REMOTE_TYPES, Incubate
from actors.supervisor import Supervisor
from runtime import remote


class Spread:
    """Serves this node's incubators to peers; adds the peers' to this node's pool."""

    def __init__(self, transport: remote.MessageTransport, supervisor: Supervisor) -> None:
        self.transport = transport
        self.supervisor = supervisor
        self.codec = remote.Codec(REMOTE_TYPES)
        #: the peers' incubators in this node's pool (empty unless spread is on)
        self.remote: list[remote.RemoteActorRef] = []
        #: candidates this node proved for peers
        self.served = 0
        remote.serve(
            transport,
            self.codec,
            asks={"incubator": self._incubate_for_peer},
            accepts={"incubator": (Incubate,)},
        )

    def pool_with(self, peers: Iterable[str]) -> None:
        """Add these peers' incubators to this node's incubator pool."""
        for peer in peers:
            ref = remote.RemoteActorRef(self.transport, peer, "incubator", self.codec)
            self.remote.append(ref)
            self.supervisor.add("incubator", ref)

    @property
    def asked(self) -> int:
        """Candidates this node asked its peers to prove."""
        return sum(ref.asks for ref in self.remote)

    def _incubate_for_peer(self, message: Incubate) -> Any:
        """A peer's candidate, proven on this node's incubators (a transport worker waits)."""
        self.served += 1
        return self.supervisor.ask("incubator", message)
