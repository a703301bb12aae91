"""A swarm node's live side: its service, its Deployer and its metrics, wired together.

The three parts are built in their own modules (``runtime/service/node_service.py``,
``actors/deployments.py``, ``runtime/metrics.py``); this one only hands them to each
other, so ``node.py`` gains one part, not three:

* the front reports every request to the metrics (``on_request``) and serves their
  ``render`` at ``/metrics``, with the rollout gauges read from the Deployer's board at
  each scrape (so they are never stale);
* the service starts blue on the version this node last promoted (the log's rollout
  events say which), tells the Deployer once blue serves, and hands every head blue does
  not run to the Deployer instead of switching at once;
* every applied run of ledger entries reaches both the Deployer and the metrics.

docs/service.md, docs/rollouts.md and docs/monitoring.md say what each part does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors.deployer import Clock, Propose
from actors.deployments import Deployments, deployer_for
from consensus.ledger import Applied
from events.domain import rollouts_of
from events.store import GenomeStore
from evolution.manifest import RolloutSettings
from runtime.metrics import Metrics
from runtime.sandbox import Sandbox
from runtime.service.contained import ContainerSpec
from runtime.service.node_service import NodeService

__all__ = ["Live"]


class Live:
    """One node's service, Deployer and metrics; started after the ledger, stopped before it."""

    def __init__(
        self,
        node_id: str,
        *,
        sandbox: Sandbox,
        store: GenomeStore,
        http: tuple[str, int],
        propose: Propose,
        clock: Clock,
        stopping: threading.Event,
        raft: Callable[[], Mapping[str, Any]],
        transport: Callable[[], Mapping[str, int]],
        rollout: RolloutSettings | None = None,
        containers: ContainerSpec | None = None,
    ) -> None:
        self.id, self.store = node_id, store
        self.metrics = Metrics(node_id, raft=raft, transport=transport)
        self.service = NodeService(
            node_id,
            sandbox,
            store,
            *http,
            on_request=self.metrics.on_request,
            render=self._render,
            first=self._last_promoted,
            containers=containers,
        )
        self.deployments: Deployments = deployer_for(
            node_id, store, self.service.router, propose, clock, stopping, defaults=rollout
        )
        self.service.on_served = self.deployments.served
        self._stopped = False
        self.service.follow = self.deployments.moved

    @property
    def url(self) -> str:
        return self.service.url

    def admin_ops(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The admin channel's ``rollout`` and ``deploy`` ops (``tars rollout``, ``evolve deploy``)."""
        return self.deployments.admin_ops()

    def start(self) -> None:
        self.deployments.start(resume=False)  # each genome resumes once blue serves it
        self.service.start()

    def after_apply(self, results: Iterable[Applied]) -> None:
        results = list(results)
        self.deployments.after_apply(results)
        self.metrics.after_apply(results)
        self.service.changed(applied.genome for applied in results)

    def stop(self) -> None:
        """The Deployer first (no more orders), then the service (workers killed); once."""
        if self._stopped:
            return
        self._stopped = True
        self.deployments.stop()
        self.deployments.join(timeout=30)
        self.service.stop()

    # -- what the parts are handed --

    def _last_promoted(self, genome: str) -> str | None:
        """The version blue served when this node stopped: its last promoted, or the blue of
        a rollout that was running (green died with the node); None: the head."""
        last = rollouts_of(self.store.load(genome)).get(self.id)
        if last is None:
            return None
        return str(last["version"] if last["phase"] == "promoted" else last["blue"])

    def _render(self) -> tuple[bytes, str]:
        for genome, board in list(self.deployments.board.items()):
            step, weight = board.get("step", 0), board.get("weight", 0.0)
            running = board.get("phase") in ("starting", "stepping")
            self.metrics.set_rollout(
                genome,
                int(step) if running and isinstance(step, int) else 0,
                float(weight) if running and isinstance(weight, int | float) else 0.0,
            )
        return self.metrics.render()
