"""The web dashboard (docs/dashboard.md): a whole swarm's (`tars dashboard`) or a node's own.

:func:`for_swarm` reads every node of a cluster.yml over its admin channel;
:func:`for_node` reads the node it runs in (its own admin handler, in-process).  Both
log people in with the admin key's secret or a token (:mod:`runtime.access_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evolution.errors import ConfigError
from runtime.cluster_config import ADMIN, ClusterConfig
from runtime.dashboard.auth import Logins
from runtime.dashboard.server import Dashboard, DashboardServer, Decide
from runtime.dashboard.sources import AdminSource, LocalSource

__all__ = ["Dashboard", "DashboardServer", "Decide", "for_node", "for_swarm", "logins_for"]


def logins_for(config: ClusterConfig) -> Logins:
    """The admin key's secret (where this machine holds it) and the config's tokens."""
    from runtime.access_tokens import check_token, token_role

    try:
        secret: str | None = config.keypair(ADMIN)[1]
    except ConfigError:
        secret = None
    return Logins(
        admin_secret=secret,
        check_token=lambda presented: check_token(config, presented),
        role_of=lambda name: token_role(config, name),
    )


def for_swarm(
    config: ClusterConfig, *, decide: Decide | None = None,
    signs_for: frozenset[str] = frozenset(), poll: float = 0.1,
) -> Dashboard:  # fmt: skip
    """Every node of ``config``, asked over the admin channel with the admin key;
    ``decide`` signs held-candidate decisions for the approvers in ``signs_for`` (their
    keys are where this dashboard runs: `tars dashboard --approver NAME`)."""
    return Dashboard(AdminSource(config), logins_for(config), title=f"TARS {config.name}",
                     decide=decide, signs_for=signs_for, poll=poll)  # fmt: skip


def for_node(
    config: ClusterConfig, node_id: str, handle: Callable[[dict[str, Any]], Any],
    *, decide: Decide | None = None, signs_for: frozenset[str] = frozenset(),
) -> Dashboard:  # fmt: skip
    """The node ``node_id`` as it sees the swarm; ``handle`` answers its admin requests.
    node.py gives it no ``decide``: a node holds no person's key (docs/dashboard.md)."""
    return Dashboard(LocalSource(node_id, handle), logins_for(config),
                     title=f"TARS {node_id}", decide=decide, signs_for=signs_for)  # fmt: skip
