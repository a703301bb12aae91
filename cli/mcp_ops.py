"""What the MCP server serves (:class:`Target`) and what it asks of a swarm: status,
rollback, rollout; the same library calls as the `tars` verbs, returning JSON.

A :class:`Target` is what one `tars mcp` serves: a single store (``--store``), or a running
swarm (``--config cluster.yml``; its reads come from one node's store, its changes go
through the ledger over the admin channel, as `tars rollback --config` and `tars rollout`
do).  The one-node steps are in :mod:`cli.mcp_steps`.  Every function here is synchronous and blocking (the sandbox, SQLite, ZeroMQ); the
server runs each in a worker thread.  None of them prints: the CLI's verbs print tables,
these return the values the tables are made of.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import read_store, refuse_swarm_store, store_url
from cli.mcp_reads import genome_name, genomes, version_of
from evolution.errors import ConfigError, StoreError, TarsError, TransportError

if TYPE_CHECKING:
    from events.store import GenomeStore
    from runtime.config import ClusterConfig

#: The orders `tars rollout` gives a node's rollout.
ORDERS = ("status", "promote", "abort", "pause", "resume")
#: Seconds a node may take to answer an admin request (as `tars rollout`).
TIMEOUT = 15.0


@dataclass
class Target:
    """What the server serves, and where its scratch node keeps its sandbox."""

    store: str | None = None
    config_path: Path | None = None
    node: str | None = None
    workdir: Path = Path(".tars") / "mcp"
    weak: bool = False
    #: one change at a time: two runs on one store would race for its head
    writing: threading.Lock = field(default_factory=threading.Lock)
    _config: ClusterConfig | None = None

    def __post_init__(self) -> None:
        if self.store is None and self.config_path is None:
            raise ConfigError(
                "tars mcp needs something to serve",
                hint="pass --store PATH (one store) or --config cluster.yml (a running swarm)",
            )

    @property
    def config(self) -> ClusterConfig:
        """The swarm's cluster.yml (loaded once); an error when only a store is served."""
        if self.config_path is None:
            raise ConfigError(
                "this server serves a single store, not a swarm",
                hint="start it with `tars mcp --config cluster.yml` to reach a running swarm",
            )
        if self._config is None:
            from runtime.config import load_cluster

            self._config = load_cluster(self.config_path)
            if self.node is not None and self.node not in self._config.ids:
                raise ConfigError(
                    f"{self._config.path} has no node {self.node!r}",
                    hint=f"pass --node with one of: {', '.join(self._config.ids)}",
                )
        return self._config

    def read_url(self) -> str:
        """The store reads come from: --store, else the chosen (or first existing) node's."""
        if self.store is not None:
            return store_url(self.store, must_exist=True)
        config = self.config
        for node_id in [self.node] if self.node else config.ids:
            url = config.store_url(node_id)
            if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():
                return url
        raise StoreError(
            f"no node of {config.path} has a store yet",
            hint=f"start the swarm with `tars cluster up --config {config.path}`",
        )

    @contextmanager
    def reading(self) -> Iterator[GenomeStore]:
        """The served store, opened read-only for one call."""
        with read_store(self.read_url()) as handle:
            yield handle

    def weak_isolation(self) -> bool:
        if self.weak or self.config_path is None:
            return self.weak
        from runtime.cluster_config import sandbox_settings

        return sandbox_settings(self.config).accept_weak_isolation


# ---- the swarm -------------------------------------------------------------------------


def status(target: Target, timeout: float = 2.0) -> dict[str, Any]:
    """Members, leader, term, and each node's applied index and heads (`tars cluster status`);
    for a single store, its genomes' heads."""
    if target.config_path is None:
        with target.reading() as store:
            return {"swarm": None, "genomes": genomes(store)}
    from cli.swarm_requests import statuses

    config = target.config
    replies = statuses(config, timeout)
    applied = [int(s.get("applied_index") or 0) for s in replies.values() if s]
    nodes: list[dict[str, Any]] = []
    for node_id, reply in replies.items():
        if reply is None:
            nodes.append({"node": node_id, "up": False})
            continue
        nodes.append(
            {
                "node": node_id,
                "up": True,
                "role": reply.get("role"),
                "term": reply.get("term"),
                "leader": reply.get("leader"),
                "commit_index": reply.get("commit_index"),
                "applied_index": reply.get("applied_index"),
                "lag": max(applied, default=0) - int(reply.get("applied_index") or 0),
                "heads": reply.get("heads", {}),
                "isolation": reply.get("isolation"),
            }
        )
    up = [n for n in nodes if n["up"]]
    leaders = sorted({str(n["leader"]) for n in up if n.get("leader")})
    members = sorted({m for r in replies.values() if r for m in r.get("members", [])})
    return {
        "swarm": config.name,
        "members": members or list(config.ids),
        "leader": leaders[0] if len(leaders) == 1 else None,
        "term": max((int(n["term"] or 0) for n in up), default=None),
        "nodes": nodes,
    }


def rollback(target: Target, genome: str, to: str, reason: str, caller: str) -> dict[str, Any]:
    """Make an earlier version the head again: through the ledger for a swarm (every node
    applies it), else an event in the store (`tars rollback`)."""
    with target.reading() as store:
        name = genome_name(store, genome)
        version = version_of(store, name, to, "to")
        before = store.head(name).version
    if target.config_path is None:
        return _store_rollback(target, name, version, before, f"{reason} (by {caller})")
    from cli.swarm_requests import ask

    config, errors = target.config, []
    body = {"op": "rollback", "genome": name, "to": version, "reason": f"{reason} (by {caller})"}
    for node_id in config.ids:
        try:
            reply = ask(config, node_id, body, TIMEOUT)
        except TransportError as exc:
            errors.append(f"{node_id}: {exc.message}")
            continue
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise TarsError(
                f"the swarm refused the rollback of {name} to {version[:12]}: {error}",
                hint="the `lineage` tool lists the versions; `status` shows the swarm",
            )
        return {"genome": name, "from": before, "head": reply["head"], "index": reply["index"]}
    raise TransportError(
        f"no node of {config.path} answered ({'; '.join(errors)})",
        hint="start the swarm with `tars cluster up`",
    )


def _store_rollback(
    target: Target, name: str, version: str, before: str, reason: str
) -> dict[str, Any]:
    url = target.read_url()
    refuse_swarm_store(url)
    from events.store import GenomeStore

    with target.writing, GenomeStore.open(url, create=False) as handle:
        handle.rollback(name, version, reason, "mcp")
    return {"genome": name, "from": before, "head": version, "index": None}


def rollout(target: Target, genome: str, order: str, node: str | None) -> dict[str, Any]:
    """Each chosen node's rollout after ``order`` (`tars rollout status|promote|abort|…`)."""
    from cli.rollout import ask_each, chosen

    if order not in ORDERS:
        raise TarsError(
            f"argument 'order': {order!r} is not a rollout order",
            hint=f"pass one of: {', '.join(ORDERS)}",
        )
    config = target.config
    try:
        nodes = chosen(config, node)
    except TarsError as exc:
        raise TarsError(f"argument 'node': {exc.message}", hint=exc.hint) from exc
    replies = ask_each(config, nodes, {"op": "rollout", "genome": genome, "order": order})
    answered = [r for r in replies.values() if isinstance(r, dict)]
    if not answered:
        raise TransportError(
            f"no node of {config.path} answered", hint="start the swarm with `tars cluster up`"
        )
    return {"genome": genome, "order": order, "nodes": replies}
