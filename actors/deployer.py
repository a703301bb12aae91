"""Deployer: rolls the ledger's head out on this node's running service, step by step.

Thin: the decisions are the pure machine's (:mod:`evolution.rollout`); this actor feeds it
(a head moved by an applied adoption or rollback, a window that ended on the clock it was
handed, a person's order) and performs its actions on the node's service, only through
:class:`runtime.service.control.ServiceControl`, and in the ledger: every step is a
``rollout`` entry in this node's name, and a Failed analysis proposes a rollback of the
head to its parent, signed by this node (docs/rollouts.md).

``actors/deployments.py`` is the node's handle on it (start, feed, tick, the admin ops)
and builds it from a node's parts (``deployer_for``).
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from collections.abc import Callable
from typing import Any, ClassVar

from actors.base import RoleActor
from actors.messages import DeployVersion, HeadMoved, RolloutOrder, RolloutTick
from consensus.entries import rollback_entry, rollout_entry
from events.domain import head_parent_of, rollouts_of
from events.store import GenomeStore
from evolution.errors import ManifestError, TarsError
from evolution.manifest import RolloutSettings, parse_manifest
from evolution.rollout import (
    ENDED,
    Abort,
    AbortGreen,
    Action,
    Input,
    NotReady,
    Pause,
    Promote,
    PromoteGreen,
    ProposeRollback,
    Ready,
    Record,
    ReloadInPlace,
    Resume,
    RolloutState,
    SetMirror,
    SetWeight,
    Start,
    StartGreen,
    Tick,
    advance,
    describe,
)
from evolution.rollout_plan import RolloutPlan, read_plan
from evolution.tree import short
from runtime.service.control import ServiceControl

log = logging.getLogger("tars.deployer")

#: Commits an entry (this node's; the applier signs it) and returns its index once applied.
Propose = Callable[[bytes], int]
Clock = Callable[[], float]
#: The orders a person may give (`tars rollout ...`), each the machine's input.
ORDERS: dict[str, Callable[[], Input]] = {
    "promote": lambda: Promote("by hand"),
    "abort": lambda: Abort("aborted by hand"),
    "pause": Pause,
    "resume": Resume,
}


class Deployer(RoleActor):
    """Messages in; the rollout machine asked; the service driven; steps proposed."""

    role: ClassVar[str] = "deployer"
    handlers: ClassVar[dict[type, str]] = {
        HeadMoved: "on_head_moved",
        RolloutTick: "on_tick",
        RolloutOrder: "on_order",
        DeployVersion: "on_deploy",
    }
    use_daemon_thread: ClassVar[bool] = True  # green's start may block on a dead service

    def __init__(
        self,
        node_id: str,
        store: GenomeStore,
        service: ServiceControl,
        propose: Propose,
        clock: Clock,
        defaults: RolloutSettings,
        board: dict[str, dict[str, object]] | None = None,
    ) -> None:
        super().__init__()
        self.id, self.store, self.service = node_id, store, service
        self.propose, self.clock, self.defaults = propose, clock, defaults
        self.machines: dict[str, RolloutState] = {}
        #: when each running rollout's current window began (the handed-in clock)
        self.window_began: dict[str, float] = {}
        #: entries not committed yet, in order (a rollback only after its Failed step)
        self.outbox: list[bytes] = []
        #: each genome's rollout as ``describe`` gives it, read by other threads (/metrics)
        self.board = board if board is not None else {}
        #: the deploy's own plan in force for a version of each genome (docs/rollouts.md)
        self.plans: dict[str, tuple[str, RolloutPlan]] = {}

    # -- messages --

    def on_head_moved(self, message: HeadMoved) -> None:
        try:
            why = self._restarted(message.genome) if message.why == "restart" else message.why
            self._reconcile(message.genome, why)
        except TarsError as exc:
            log.warning("%s: cannot follow the head of %s: %s", self.id, message.genome, exc)
        except Exception:  # a bug must not stop the actor: the next head moved tries again
            log.exception("%s: following the head of %s failed", self.id, message.genome)
        self._flush()

    def on_tick(self, message: RolloutTick) -> None:
        now = self.clock()
        for genome, state in list(self.machines.items()):
            if state.phase != "stepping":
                continue
            if now - self.window_began.get(genome, now) < state.settings.interval:
                continue
            try:
                window = self.service.window(genome)
            except Exception as exc:  # the service's trouble, whatever its type: blue is safe
                self._feed(genome, Abort(f"the service gave no window: {exc}"))
                continue
            self.window_began[genome] = now
            self._feed(genome, Tick(window))
        self._flush()

    def on_order(self, message: RolloutOrder) -> dict[str, Any]:
        genome, order = message
        state = self.machines.get(genome, RolloutState(genome))
        if order != "status":
            refused = self._feed(genome, ORDERS[order]())
            self._flush()
            if refused is not None:
                return {"ok": False, "node": self.id, "error": refused}
            state = self.machines[genome]
        return {"ok": True, "node": self.id, **describe(state)}

    def on_deploy(self, message: DeployVersion) -> None:
        genome, version, plan = message
        if plan is not None:
            self.plans[genome] = (version, plan)
        else:  # a deploy without a plan: the node's settings, as before
            self.plans.pop(genome, None)
        state = self.machines.get(genome)
        if state is not None and state.active:
            self._feed(genome, Abort(f"superseded by {short(version)}, deployed by hand"))
        try:
            self._start(genome, version, "deployed by hand", immediate=False)
        except Exception as exc:
            log.warning("%s: cannot deploy %s of %s: %s", self.id, short(version), genome, exc)
        self._flush()

    # -- following the head --

    def _reconcile(self, genome: str, why: str) -> None:
        """Make this node's service follow the head: abort a rollout of another version, then
        roll the head out unless blue runs it, or its rollout here already ended badly."""
        head = self.store.load(genome).head
        state = self.machines.get(genome, RolloutState(genome))
        if state.active and state.version != head:
            reason = "the head moved back by a rollback" if why == "rollback" else "a newer head"
            self._feed(genome, Abort(f"{reason}: {short(head)} is the head now"))
        elif state.active or (state.version == head and state.phase in ("aborted", "abandoned")):
            return  # running already; or failed here: only `tars evolve deploy` tries again
        self._start(genome, head, why, immediate=why == "rollback")

    def _start(self, genome: str, version: str, why: str, *, immediate: bool) -> None:
        blue = self.service.serving(genome).get("blue")
        if blue is None:
            log.info("%s: the service does not serve %s: nothing to roll out", self.id, genome)
            return
        if blue == version:
            return
        lineage = self.store.load(genome)
        parent = head_parent_of(lineage) if version == lineage.head and not immediate else None
        reason = {
            "adopted": f"{short(version)} adopted",
            "rollback": f"the swarm rolled back to {short(version)}: promoted once ready",
            "resume": "resumed after a restart: the rollout starts again from its first step",
            "restart": f"{short(version)} is the head; the service came up on {short(blue)}",
        }.get(why, why)
        settings, reload = self._settings(genome, blue)
        if settings.start == "manual" and why in ("adopted", "restart"):
            log.info(
                "%s: %s of %s waits for a deploy ([rollout] start = manual); blue %s serves",
                self.id, short(version), genome, short(blue),
            )  # fmt: skip
            return
        plan = self._plan(genome, version)
        if plan is not None:
            settings, reason = plan.settings(settings), f"{reason} ({plan.describe()})"
        else:  # a plan is for its version: another version's rollout ends it
            self.plans.pop(genome, None)
        self._feed(genome, Start(version, blue, parent, settings, immediate, reason, reload))

    def _settings(self, genome: str, blue: str) -> tuple[RolloutSettings, bool]:
        """Blue's manifest's ``[rollout]`` (never the new version's: it cannot loosen its own
        analysis), else cluster.yml's, else the defaults; and whether blue's manifest says
        ``[service] reloadable = true`` (hot reload in place instead of blue/green)."""
        try:
            text = self.store.materialise(genome, blue).get("genome.toml", "")
            service = tomllib.loads(text).get("service", {})
        except (TarsError, tomllib.TOMLDecodeError):
            return self.defaults, False
        reload = isinstance(service, dict) and service.get("reloadable") is True
        try:
            return parse_manifest(text, f"{genome}/genome.toml").rollout or self.defaults, reload
        except ManifestError:
            return self.defaults, reload

    def _plan(self, genome: str, version: str) -> RolloutPlan | None:
        """The deploy's own plan for ``version``, if one is in force (else the settings')."""
        kept = self.plans.get(genome)
        return kept[1] if kept is not None and kept[0] == version else None

    def _restarted(self, genome: str) -> str:
        """What the log says this node was doing when it stopped (docs/rollouts.md, "Restart").

        A rollout still running then is recorded as aborted (its green died with the node)
        and :meth:`_reconcile` starts it again from the first step; one that ended Failed
        proposes its rollback again if the head is still that version (the proposal may have
        died with the node; the ledger takes one at most)."""
        lineage = self.store.load(genome)
        last = rollouts_of(lineage).get(self.id)
        if last is None:
            return "restart"
        version, blue = str(last["version"]), str(last["blue"])
        if last.get("plan"):  # the rollout runs again with its deploy's plan, from the log
            try:
                self.plans[genome] = (version, read_plan(last["plan"]))
            except TarsError as exc:  # checked when it was committed: not expected
                log.warning("%s: the logged plan of %s is unreadable: %s", self.id, genome, exc)
        kept = RolloutState(genome, self.defaults, version, blue, phase="idle")
        if last["phase"] not in ENDED:
            reason = f"the node stopped during the rollout ({last['phase']} at step {last['step']})"
            self._record(
                genome, Record(version, blue, "aborted", int(last["step"]), 0.0, "", reason)
            )
            self.machines[genome] = kept
            return "resume" if lineage.head == version else "restart"  # else: a newer head
        if last["result"] == "Failed" and lineage.head == version:
            self.machines[genome] = dataclasses.replace(kept, phase="aborted")
            parent = head_parent_of(lineage)
            if parent is not None:
                why = f"rollout of {short(version)} failed on {self.id} (proposed again after a restart)"
                self.outbox.append(rollback_entry(genome, parent, why, self.id, self.clock()))
        return "restart"

    # -- the machine and its actions --

    def _feed(self, genome: str, given: Input) -> str | None:
        """One input to the genome's machine; its actions performed in order; the refusal."""
        out = advance(self.machines.get(genome, RolloutState(genome)), given)
        self.machines[genome] = out.state
        self.board[genome] = describe(out.state)  # one assignment: readers see old or new
        for action in out.actions:
            self._perform(genome, action)
        return out.refused

    def _perform(self, genome: str, action: Action) -> None:
        service = self.service
        try:
            match action:
                case Record():
                    self._record(genome, action)
                case ProposeRollback(version, to, reason):
                    why = f"rollout of {short(version)} failed on {self.id}: {reason}"
                    self.outbox.append(rollback_entry(genome, to, why, self.id, self.clock()))
                case ReloadInPlace(version):
                    self._reload(genome, version)
                case StartGreen(version, timeout):
                    self._flush()  # "started" is in the log before green's start may block
                    self._start_green(genome, version, timeout)
                case SetWeight(weight):
                    service.set_weight(genome, weight)
                    service.window(genome)  # the next window starts at this weight
                    self.window_began[genome] = self.clock()
                case SetMirror(share):
                    service.set_mirror(genome, share)
                case PromoteGreen():
                    service.promote(genome)
                case AbortGreen():
                    service.abort(genome)
        except Exception as exc:  # the service's trouble, whatever its type: back to blue
            log.error("%s: %s of %s failed: %s", self.id, type(action).__name__, genome, exc)
            if not isinstance(action, AbortGreen):
                self._feed(genome, Abort(f"the service failed to {type(action).__name__}: {exc}"))

    def _reload(self, genome: str, version: str) -> None:
        self._flush()
        try:
            self.service.reload(genome, version, self.store.materialise(genome, version))
        except Exception as exc:  # the old code keeps serving
            self._feed(genome, NotReady(str(exc)))
            return
        self._feed(genome, Ready())

    def _start_green(self, genome: str, version: str, timeout: float) -> None:
        try:
            tree = self.store.materialise(genome, version)
            self.service.start_green(genome, version, tree, timeout)
        except Exception as exc:  # not ready, or the service broke: green is abandoned
            self._feed(genome, NotReady(str(exc)))
            return
        self._feed(genome, Ready())

    def _record(self, genome: str, step: Record) -> None:
        log.info(
            "%s: rollout of %s %s: %s %s",
            self.id,
            genome,
            short(step.version),
            step.phase,
            step.reason,
        )
        plan = self._plan(genome, step.version) if step.phase == "started" else None
        wire = plan.to_wire() if plan is not None else None
        self.outbox.append(rollout_entry(genome, self.id, *step, at=self.clock(), plan=wire))

    def _flush(self) -> None:
        """Propose what waits, in order; what the ledger cannot take now waits for the next tick."""
        while self.outbox:
            try:
                self.propose(self.outbox[0])
            except TarsError as exc:
                log.warning(
                    "%s: %d rollout entries wait for the ledger: %s", self.id, len(self.outbox), exc
                )
                return
            self.outbox.pop(0)
