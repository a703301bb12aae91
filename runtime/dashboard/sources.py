"""Where the dashboard reads from: every node of a cluster.yml, or the node it runs in.

Both answer the admin channel's requests (``status``, ``log``, ``genome``, ``version``,
``rollout``; consensus/admin.py and consensus/admin_reads.py), so the pages are built
the same way whether `tars dashboard` reads a whole swarm over the network or a node
shows its own view.  The calls block; the server runs them on its executor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from evolution.errors import TarsError
from runtime.cluster_config import ADMIN, ClusterConfig

__all__ = ["AdminSource", "LocalSource", "Source", "rollouts", "statuses"]


class Source(Protocol):
    """The nodes a dashboard shows and one admin request to one of them."""

    @property
    def nodes(self) -> list[str]: ...

    def ask(self, node_id: str, body: dict[str, Any], timeout: float) -> Any: ...


class AdminSource:
    """Every node of a cluster.yml, asked over its admin channel with the admin key.

    The dashboard asks often (the live poll, ten times a second), so clients are kept and
    reused rather than made per request as the CLI does (each has its own ZeroMQ context
    and I/O thread): one per node and per concurrent caller, each used by one thread at a
    time; a client whose request failed is closed, the next request makes a new one.
    """

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._idle: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def nodes(self) -> list[str]:
        return list(self.config.ids)

    def ask(self, node_id: str, body: dict[str, Any], timeout: float) -> Any:
        client = self._take(node_id)
        try:
            reply = client.request("admin", body, timeout=timeout)
        except BaseException:
            client.close()
            raise
        with self._lock:
            if not self._closed:
                self._idle.setdefault(node_id, []).append(client)
                return reply
        client.close()
        return reply

    def _take(self, node_id: str) -> Any:
        with self._lock:
            idle = self._idle.get(node_id)
            if idle:
                return idle.pop()
        from runtime.transport import Client

        public, secret = self.config.keypair(ADMIN)
        return Client(
            self.config.endpoint(node_id), self.config.public_key(node_id), public, secret
        )

    def close(self) -> None:
        """Close every kept client (the dashboard is stopping)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for clients in idle.values():
            for client in clients:
                client.close()


class LocalSource:
    """The node the dashboard runs in: its own admin handler, called in-process."""

    def __init__(self, node_id: str, handle: Callable[[dict[str, Any]], Any]) -> None:
        self.node_id, self.handle = node_id, handle

    @property
    def nodes(self) -> list[str]:
        return [self.node_id]

    def ask(self, node_id: str, body: dict[str, Any], timeout: float) -> Any:
        return self.handle(body)


def _each(source: Source, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Every node's answer to ``body``, asked at once; None for a node that did not answer."""
    nodes = source.nodes

    def one(node_id: str) -> Any:
        try:
            return source.ask(node_id, body, timeout)
        except TarsError:
            return None

    if len(nodes) == 1:
        return {nodes[0]: one(nodes[0])}
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return dict(zip(nodes, pool.map(one, nodes), strict=True))


def statuses(source: Source, timeout: float = 2.0) -> dict[str, dict[str, Any] | None]:
    """Each node's ``status`` (None: down or not answering)."""
    return {k: v if isinstance(v, dict) else None for k, v in _each(source, {"op": "status"}, timeout).items()}  # fmt: skip


def rollouts(
    source: Source, genome: str, order: str = "status", timeout: float = 15.0
) -> dict[str, Any]:
    """Each node's rollout of ``genome`` after ``order`` (``status`` only reads)."""
    return _each(source, {"op": "rollout", "genome": genome, "order": order}, timeout)
