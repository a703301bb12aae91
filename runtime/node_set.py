"""What every launcher does alike over cluster.yml's nodes, as processes or as containers.

``tars cluster up|down`` and the tests drive either launcher through the same verbs;
starting the nodes that are not running, stopping one, and checking that the ids asked
for are nodes of cluster.yml are the same whatever a node runs in.
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.cluster_config import ClusterConfig


class NodeSet:
    """What every launcher does alike over cluster.yml's nodes (processes or containers)."""

    config: ClusterConfig

    def pid(self, node_id: str) -> int | None:
        raise NotImplementedError

    def start(self, node_id: str) -> int:
        raise NotImplementedError

    def down(self, ids: Iterable[str] | None = None, timeout: float = 10.0) -> dict[str, bool]:
        raise NotImplementedError

    def up(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        """Start every node (or those named) that is not running; the pids of all of them."""
        pids: dict[str, int] = {}
        for node_id in self._ids(ids):
            running = self.pid(node_id)
            pids[node_id] = running if running is not None else self.start(node_id)
        return pids

    def stop(self, node_id: str, timeout: float = 10.0) -> bool:
        """Stop one node (SIGTERM, SIGKILL after ``timeout``); False when it was not running."""
        return self.down([node_id], timeout=timeout)[node_id]

    def _ids(self, ids: Iterable[str] | None) -> list[str]:
        chosen = list(ids) if ids is not None else self.config.ids
        for node_id in chosen:
            self.config.node(node_id)
        return chosen
