"""Deployments: a node's handle on its Deployer (``actors/deployer.py``), and its wiring.

Like ``actors.voter.Votes``: it starts the actor, asks it to resume or end what the log
says was running when the node stopped, feeds it what each applied run of entries did,
ticks it on a thread, and answers the admin channel's ``rollout`` and ``deploy`` ops.
:func:`deployer_for` builds it from a swarm node's parts (docs/rollouts.md, "Wiring").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from actors.deployer import ORDERS, Clock, Deployer, Propose
from actors.messages import DeployVersion, HeadMoved, RolloutOrder, RolloutTick
from consensus.ledger import Applied
from events.store import GenomeStore
from evolution.errors import RolloutError, TarsError
from evolution.manifest import RolloutSettings
from evolution.rollout_plan import read_plan
from runtime.service.control import ServiceControl

log = logging.getLogger("tars.deployer")

#: Seconds between two looks at the clock (a window ends at most this late).
TICK = 0.25


class Deployments:
    """The node's handle on its Deployer: start (resuming from the log), feed, tick, ask."""

    def __init__(
        self,
        node_id: str,
        store: GenomeStore,
        service: ServiceControl,
        propose: Propose,
        clock: Clock,
        stopping: threading.Event,
        *,
        defaults: RolloutSettings | None = None,
        tick: float | None = TICK,
    ) -> None:
        self.id, self.store, self.stopping, self.tick_every = node_id, store, stopping, tick
        self._halt = threading.Event()  # this handle's own stop (the node's ``stopping`` too)
        self.service = service
        #: each genome's rollout on this node (phase, version, step, weight, last result,
        #: reason), updated by the Deployer after every input: read it without asking it
        self.board: dict[str, dict[str, object]] = {}
        self._args = (node_id, store, service, propose, clock, defaults or RolloutSettings())
        self._ref: pykka.ActorRef[Any] | None = None
        self._ticker: threading.Thread | None = None
        self._stopped: pykka.Future[Any] | None = None

    def start(self, resume: bool = True) -> None:
        """Start the Deployer and its ticks; with ``resume``, resume or end at once what the
        log says ran here (else per genome by :meth:`served`, once the service serves it:
        the Deployer needs blue up to know what to roll out)."""
        self._ref = Deployer.start(*self._args, self.board)
        for genome in self.store.genomes() if resume else ():
            self._tell(HeadMoved(genome, "restart"))
        if self.tick_every is not None:
            self._ticker = threading.Thread(
                target=self._tick_loop, name=f"deployer-tick-{self.id}", daemon=True
            )
            self._ticker.start()

    def served(self, genome: str) -> None:
        """The service came up on ``genome``: resume or end what the log says ran here."""
        self._tell(HeadMoved(genome, "restart"))

    def moved(self, genome: str, version: str, tree: object) -> None:
        """The service saw a head blue does not run (``NodeService.follow``): roll it out."""
        self._tell(HeadMoved(genome, "adopted"))

    def after_apply(self, results: Iterable[Applied]) -> None:
        """An applied run moved a head (an adoption decided, or a rollback): follow it."""
        for applied in results:
            if applied.genome is None or not applied.written:
                continue
            if applied.kind == "rollback":
                self._tell(HeadMoved(applied.genome, "rollback"))
            elif "adopt" in applied.decided.values():
                self._tell(HeadMoved(applied.genome, "adopted"))

    def tick(self, timeout: float = 30.0) -> None:
        """One tick, waited for (tests drive the clock themselves and call this)."""
        self._ask(RolloutTick(), timeout)

    def current(self) -> dict[str, dict[str, object]]:
        """Every genome's rollout as it stands (for /metrics: ``tars_rollout_step``, ``_weight``)."""
        return dict(self.board)

    def order(self, genome: str, order: str, timeout: float = 30.0) -> dict[str, Any]:
        """A person's order (or ``status``) for one genome's rollout on this node."""
        if order != "status" and order not in ORDERS:
            raise RolloutError(
                f"unknown rollout order {order!r}", hint="status, promote, abort, pause or resume"
            )
        self.store.head(genome)  # an unknown genome says so here
        answer: dict[str, Any] = self._ask(RolloutOrder(genome, order), timeout)
        return answer

    def deploy(self, genome: str, version: str, plan: Any = None) -> dict[str, Any]:
        """Start rolling ``version`` (a prefix will do) out here, with the deploy's own
        ``plan`` (its map; None: this node's settings); refused unless the log has the
        version and the plan is well formed (:func:`evolution.rollout_plan.read_plan`)."""
        checked = None if plan is None else read_plan(plan)
        full = self.store.resolve(genome, version)
        if self.service.serving(genome).get("blue") == full:
            raise RolloutError(
                f"{self.id} already serves {full[:12]} of {genome} as blue",
                hint="deploy another version (`tars log lineage` lists them)",
            )
        self._tell(DeployVersion(genome, full, checked))
        answer: dict[str, Any] = {"ok": True, "node": self.id, "version": full}
        return answer if checked is None else {**answer, "plan": checked.to_wire()}

    def admin_ops(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The admin channel's ``rollout`` and ``deploy`` ops (``consensus.admin.Admin(ops=...)``)."""
        return {"rollout": self._admin_rollout, "deploy": self._admin_deploy}

    def _admin_rollout(self, body: dict[str, Any]) -> Any:
        try:
            return self.order(str(body.get("genome", "")), str(body.get("order", "status")))
        except TarsError as exc:
            return {"ok": False, "node": self.id, "error": str(exc)}

    def _admin_deploy(self, body: dict[str, Any]) -> Any:
        try:
            genome, version = str(body.get("genome", "")), str(body.get("version", ""))
            return self.deploy(genome, version, body.get("plan"))
        except TarsError as exc:
            return {"ok": False, "node": self.id, "error": str(exc)}

    def _tick_loop(self) -> None:
        assert self.tick_every is not None
        while not self._halt.wait(self.tick_every) and not self.stopping.is_set():
            self._tell(RolloutTick())

    def _tell(self, message: Any) -> None:
        if self._ref is not None and not self.stopping.is_set() and not self._halt.is_set():
            try:
                self._ref.tell(message)
            except pykka.ActorDeadError:
                log.warning("%s: the deployer is not running", self.id)

    def _ask(self, message: Any, timeout: float) -> Any:
        if self._ref is None:
            raise RolloutError(
                f"{self.id} runs no deployer", hint="start the node with its service"
            )
        try:
            return self._ref.ask(message, timeout=timeout)
        except pykka.Timeout:
            raise RolloutError(
                f"{self.id}'s deployer did not answer within {timeout:.0f} s (green may be starting)",
                hint="ask again in a moment",
            ) from None

    def stop(self) -> None:
        """Stop ticking; the Deployer stops after what its inbox holds."""
        self._halt.set()
        if self._ref is not None and self._stopped is None:
            self._stopped = self._ref.stop(block=False)

    def join(self, timeout: float) -> None:
        if self._ticker is not None:
            self._ticker.join(timeout)
        if self._stopped is not None:
            try:
                self._stopped.get(timeout=timeout)
            except pykka.Timeout:
                log.warning("%s: the deployer did not stop within %.0f s", self.id, timeout)


def deployer_for(
    node_id: str,
    store: GenomeStore,
    service: ServiceControl,
    propose: Propose,
    clock: Clock,
    stopping: threading.Event,
    defaults: RolloutSettings | None = None,
) -> Deployments:
    """A swarm node's Deployments from its parts (see docs/rollouts.md, "Wiring")."""
    return Deployments(node_id, store, service, propose, clock, stopping, defaults=defaults)
