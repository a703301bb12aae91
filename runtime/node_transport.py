"""A swarm node's end of the transport, built from cluster.yml.

Its own key pair, its peers' endpoints and keys, the admin client's key (the only key
the admin channel answers) and the per-peer bounds of ``cluster.bounds``.  Kept out of
``node.py`` so the node stays wiring, and out of ``runtime/transport/`` so the
transport knows nothing of cluster.yml.
"""

from __future__ import annotations

from runtime.cluster_config import ADMIN, ClusterConfig
from runtime.transport import Peer, Transport

__all__ = ["node_transport"]


def node_transport(cluster: ClusterConfig, node_id: str) -> Transport:
    """``node_id``'s transport: keys, peers, the admin client and the bounds of the file."""
    spec = cluster.node(node_id)
    public, secret = cluster.keypair(node_id)
    admin_key = cluster.keypair(ADMIN)[0] if (cluster.keys_dir / f"{ADMIN}.key").exists() else None
    peers = [
        Peer(n.id, cluster.endpoint(n.id), cluster.public_key(n.id))
        for n in cluster.nodes
        if n.id != node_id
    ]
    bounds = cluster.bounds
    return Transport(
        node_id,
        f"tcp://{spec.host}:{spec.port}",
        public,
        secret,
        peers,
        clients={ADMIN: admin_key} if admin_key else {},
        max_reorder_bytes=bounds.reorder_bytes,
        max_backlog_bytes=bounds.backlog_bytes,
        max_unacked_bytes=bounds.unacked_bytes,
        max_request_bytes=bounds.request_bytes,
    )
