"""Asking the running swarm over each node's admin channel: status, and membership changes.

A node that does not answer is ``None`` (down), never an error of the command; a
membership change is asked of the leader first, then of every other answering node.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from evolution.errors import TarsError, TransportError

if TYPE_CHECKING:
    from runtime.config import ClusterConfig


def ask(config: ClusterConfig, node_id: str, body: dict[str, Any], timeout: float) -> Any:
    """One signed admin request to one node (zmq is imported only when a command asks)."""
    from runtime.launcher import admin_request

    return admin_request(config, node_id, body, timeout=timeout)


def statuses(config: ClusterConfig, timeout: float) -> dict[str, dict[str, Any] | None]:
    """Every node's status, asked at once; None for a node that did not answer."""
    from runtime.config import ADMIN

    config.keypair(ADMIN)  # a missing admin key is the user's to fix, not a "down" swarm

    def one(node_id: str) -> dict[str, Any] | None:
        try:
            reply = ask(config, node_id, {"op": "status"}, timeout)
        except TarsError:
            return None
        return reply if isinstance(reply, dict) else None

    with ThreadPoolExecutor(max_workers=len(config.ids)) as pool:
        return dict(zip(config.ids, pool.map(one, config.ids), strict=True))


def _leader_first(config: ClusterConfig, skip: str, timeout: float) -> list[str]:
    """Nodes to ask for a membership change: the leader first, then every other answering node."""
    others = {k: v for k, v in statuses(config, timeout).items() if k != skip}
    answering = [node_id for node_id, status in others.items() if status is not None]
    leaders = [
        status.get("leader")
        for status in others.values()
        if status is not None and status.get("leader")
    ]
    leader = leaders[0] if leaders else None
    if leader in answering:
        answering.remove(leader)
        answering.insert(0, leader)
    return answering


def change_membership(
    config: ClusterConfig, op: str, node_id: str, timeout: float
) -> tuple[str | None, str | None]:
    """Ask the swarm to add or remove a member: (node that agreed, None) or (None, why not)."""
    asked = _leader_first(config, node_id, timeout)
    if not asked:
        return None, f"no node of {config.path} answered"
    why = "no answer"
    for target in asked:
        try:
            body = {"op": op, "node": node_id}
            body.update(_signed_members(config, target, op, node_id, timeout))
            reply = ask(config, target, body, max(timeout, 5.0))
        except TransportError as exc:
            why = exc.message
            continue
        if isinstance(reply, dict) and reply.get("ok"):
            return target, None
        why = str(reply.get("error") if isinstance(reply, dict) else reply)
    return None, why


def _signed_members(
    config: ClusterConfig, target: str, op: str, node_id: str, timeout: float
) -> dict[str, Any]:
    """The new member list as an entry this CLI signs with the admin key (``entry``), so a
    node need not hold that key; empty when this machine has no admin signing key (the
    node then signs, if it can: docs/swarm.md, "Signed decisions")."""
    import time

    from consensus.ledger import members_entry
    from consensus.signing import Signer
    from runtime.config import ADMIN
    from runtime.keys import encode_sign_key, has_sign_secret

    if not has_sign_secret(config.keys_dir, ADMIN):
        return {}
    status = ask(config, target, {"op": "status"}, timeout)
    members = set(status.get("members") or []) if isinstance(status, dict) else set()
    members = members | {node_id} if op == "add" else members - {node_id}
    keys = {node_id: encode_sign_key(config.sign_key(node_id))} if op == "add" else {}
    signer = Signer(ADMIN, config.sign_secret(ADMIN))
    return {"entry": members_entry(sorted(members), ADMIN, time.time(), keys=keys, signer=signer)}
