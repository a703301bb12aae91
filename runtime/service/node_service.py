"""A swarm node's live service: one router and one HTTP front, kept on the genome's head.

:class:`NodeService` serves every registered genome whose head manifest has
``[service]``, on the node's HTTP address (cluster.yml ``http``). The node tells it
when the ledger applied something (:meth:`changed`); a thread of its own then compares
each genome's head with what blue serves, so the applier never waits for a worker to
start. A genome seen for the first time gets its blue; a new head (an adoption or a
rollback) goes through ``follow(genome, version, tree)``: by default green is started
and promoted at once (no steps). The Deployer replaces ``follow`` with its rollout
(steps, analysis); this one stays as the fallback when no Deployer is configured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from evolution.errors import ManifestError, TarsError
from evolution.manifest import parse_manifest
from evolution.tree import Tree
from runtime.sandbox import Sandbox
from runtime.service.contained import ContainerSpec, remove_leftovers
from runtime.service.front import Front, OnRequest, Render
from runtime.service.router import Router

__all__ = ["Heads", "NodeService"]

log = logging.getLogger("tars.service")
Follow = Callable[[str, str, Tree], None]
#: how often heads are compared even without news (a state transfer moves heads quietly)
POLL_SECONDS = 5.0
#: how long a head that could not be served waits before it is tried again
RETRY_SECONDS = 120.0


class Heads(Protocol):
    """What the service reads of the node's store (``events.store.GenomeStore`` fits)."""

    def genomes(self) -> list[str]: ...

    def head(self, name: str) -> Any: ...

    def materialise(self, name: str, version: str) -> Tree: ...


class NodeService:
    """The router, the front and the thread that keeps blue on each genome's head."""

    def __init__(
        self,
        node_id: str,
        sandbox: Sandbox,
        heads: Heads,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        on_request: OnRequest | None = None,
        render: Render | None = None,
        ready_timeout: float = 30.0,
        first: Callable[[str], str | None] | None = None,
        on_served: Callable[[str], None] | None = None,
        containers: ContainerSpec | None = None,
    ) -> None:
        """``first(genome)`` names the version blue starts on when the node comes up (the
        Deployer's: the last one this node promoted; None or absent: the head), and
        ``on_served(genome)`` is told once blue serves it (the Deployer then resumes);
        ``containers``: run every pool in a new container of the node's image."""
        self.node_id, self.heads, self.ready_timeout = node_id, heads, ready_timeout
        self.first, self.on_served = first, on_served
        self.containers = containers
        self.router = Router(sandbox, containers=containers)
        self.front = Front(self.router, node_id, host, port, on_request=on_request, render=render)
        #: what a new head does to the service; the Deployer replaces it
        self.follow: Follow = self.switch
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"service-{node_id}", daemon=True)
        #: genome -> (version, why, when) of a head that could not be served: tried again
        #: only once the head moves or RETRY_SECONDS have passed (a machine busy for a while)
        self.problems: dict[str, tuple[str, str, float]] = {}

    @property
    def url(self) -> str:
        return self.front.url

    def start(self) -> None:
        self.front.start()
        self._thread.start()
        self._wake.set()
        log.info("%s: service on %s", self.node_id, self.front.url)

    def changed(self, genomes: Iterable[str | None] = ()) -> None:
        """The ledger applied something: compare heads soon (never blocks the caller)."""
        self._wake.set()

    def _run(self) -> None:
        if self.containers is not None:
            try:
                if gone := remove_leftovers(self.containers):
                    log.info(
                        "%s: removed %d service containers of its last run", self.node_id, gone
                    )
            except Exception as exc:  # noqa: BLE001 (no engine: the first pool says so again)
                log.warning("%s: cannot look for old service containers: %s", self.node_id, exc)
        while not self._stopping.is_set():
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                genomes = self.heads.genomes()
            except Exception as exc:  # noqa: BLE001 (a store closed or damaged: the node says so)
                log.warning("%s: the service cannot read the heads: %s", self.node_id, exc)
                continue
            for genome in genomes:
                self._sync_logged(genome)

    def _sync_logged(self, genome: str) -> None:
        """:meth:`sync`, never raising: a head that cannot be served is logged, not retried."""
        version = ""
        try:
            version = self.heads.head(genome).version
            seen, _, when = self.problems.get(genome, ("", "", 0.0))
            if seen != version or time.monotonic() - when > RETRY_SECONDS:
                self.sync(genome)
                self.problems.pop(genome, None)
        except Exception as exc:  # noqa: BLE001 (the service thread must outlive any head)
            why = str(exc) if isinstance(exc, TarsError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s: %s %s not served: %s", self.node_id, genome, version[:12], why)
            self.problems[genome] = (version, why, time.monotonic())

    def sync(self, genome: str) -> None:
        """Serve ``genome``'s head: start blue, follow a new head, or stop serving it."""
        head = self.heads.head(genome)
        try:
            manifest = parse_manifest(head.tree.get("genome.toml", ""), f"{genome}/genome.toml")
        except ManifestError:
            manifest = None
        served = genome in self.router.genomes()
        if manifest is None or manifest.service is None:
            if served:
                self.router.remove(genome)
            return
        if not served:
            version, tree = head.version, head.tree
            first = self.first(genome) if self.first is not None else None
            if first is not None and first != version:
                version, tree = first, self.heads.materialise(genome, first)
            self.router.add(genome, version, tree, self.ready_timeout)
            log.info("%s: serving %s %s", self.node_id, genome, version[:12])
            if self.on_served is not None:
                self.on_served(genome)
        elif self.router.serving(genome)["blue"] != head.version:
            self.follow(genome, head.version, head.tree)

    def switch(self, genome: str, version: str, tree: Tree) -> None:
        """The fallback ``follow``: green on ``version``, promoted as soon as it is ready."""
        self.router.start_green(genome, version, tree, self.ready_timeout)
        self.router.promote(genome)
        log.info("%s: %s now serves %s", self.node_id, genome, version[:12])

    def stop(self) -> None:
        """Stop following, stop listening, kill every worker."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.front.stop()
        self.router.stop()
