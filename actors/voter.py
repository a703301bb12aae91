"""Voter: this node's vote on a peer's proposal, cast through the ledger.

A version is adopted once a majority of the swarm votes yes, and a node votes only on
its own evidence: the Validator re-runs the genome's tests on the patch in this node's
sandbox.  The Voter's inbox is the queue of proposals waiting for this node's vote, so
they are checked one at a time (validation is a sandbox run, and a node's cores are
shared with its incubators); the vote itself is a ledger entry, proposed and waited
for like any other.

:class:`Votes` is the node's handle on it: it starts the actor, queues what waited for
this node's vote while it was down, queues what each applied run leaves waiting, and
makes sure a proposal is queued (and so validated) once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import pykka

from actors.base import RoleActor
from actors.messages import Validate, Verdict, VoteOn
from consensus.applier import Clock
from consensus.ledger import Applied, vote_entry
from events.store import GenomeStore
from evolution.errors import TarsError
from evolution.manifest import parse_manifest
from evolution.tree import short

# The node's log lines keep the one logger name they had when all of this was node.py.
log = logging.getLogger("tars.node")

#: Commits an entry and returns its index once this node has applied it.
Propose = Callable[[bytes], int]
#: Asks this node's (supervised) Validator for its verdict.
AskValidator = Callable[[Validate], Verdict]


class Pending:
    """Proposals queued for this node's vote, or voted on: each is validated once.

    Shared by whoever queues (the node at start, the apply thread after each run) and
    the Voter, which releases a proposal it could not vote on so that a later entry
    can queue it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    def claim(self, proposal: str, version: str) -> bool:
        """True if this proposal's version was not queued yet (and is now)."""
        with self._lock:
            if (proposal, version) in self._keys:
                return False
            self._keys.add((proposal, version))
            return True

    def release(self, proposal: str, version: str) -> None:
        with self._lock:
            self._keys.discard((proposal, version))


class Voter(RoleActor):
    """Message in (:class:`VoteOn`), the Validator asked, a vote entry out to the ledger."""

    role: ClassVar[str] = "voter"
    handlers: ClassVar[dict[type, str]] = {VoteOn: "on_vote_on"}
    #: A vote blocked on a long validation must not keep a stopped node's process alive.
    use_daemon_thread: ClassVar[bool] = True

    def __init__(
        self,
        node_id: str,
        store: GenomeStore,
        validate: AskValidator,
        propose: Propose,
        clock: Clock,
        pending: Pending,
        stopping: threading.Event,
        counters: dict[str, int],
    ) -> None:
        super().__init__()
        self.id = node_id
        self.store = store
        self.validate = validate
        self.propose = propose
        self.clock = clock
        self.pending = pending
        self.stopping = stopping
        self.counters = counters

    def on_vote_on(self, message: VoteOn) -> None:
        """Never raises: a failure is logged and the proposal may be queued again later."""
        if self.stopping.is_set():
            return  # stopping: what is left in the inbox drains without work
        genome, proposal, version = message
        try:
            self._vote(message)
        except TarsError as exc:
            log.warning("%s: cannot vote on %s of %s yet: %s", self.id, proposal, genome, exc)
            self.pending.release(proposal, version)
        except Exception:
            log.exception("%s: validating %s of %s failed", self.id, proposal, genome)
            self.pending.release(proposal, version)

    def _vote(self, message: VoteOn) -> None:
        genome, proposal, version = message
        head = self.store.head(genome)
        data = head.proposals.get(proposal)
        if data is None or data["version"] != version or self.id in data["votes"]:
            return  # decided, rebased or voted meanwhile
        parent = (
            head.tree
            if data["parent"] == head.version
            else self.store.materialise(genome, data["parent"])
        )
        manifest = parse_manifest(head.manifest_text, f"{genome}/genome.toml")
        verdict = self.validate(
            Validate(genome, proposal, version, manifest, parent, data["patch"])
        )
        log.info(
            "%s votes %s on %s (%s): %s",
            self.id,
            "yes" if verdict.yes else "no",
            proposal,
            short(version),
            verdict.reason,
        )
        self.propose(
            vote_entry(
                genome, proposal, version, self.id, verdict.yes, verdict.reason, self.clock()
            )
        )
        self.counters["votes"] += 1


class Votes:
    """The node's handle on its Voter: what to queue, and a clean start and stop."""

    def __init__(
        self,
        node_id: str,
        store: GenomeStore,
        validate: AskValidator,
        propose: Propose,
        clock: Clock,
        stopping: threading.Event,
    ) -> None:
        self.id = node_id
        self.store = store
        self.stopping = stopping
        self.pending = Pending()
        self.counters: dict[str, int] = {"votes": 0}
        self._args = (node_id, store, validate, propose, clock, self.pending, stopping)
        self._ref: pykka.ActorRef[Any] | None = None
        self._stopped: pykka.Future[Any] | None = None

    def start(self) -> None:
        """Start the Voter and queue the proposals that waited for this node's vote."""
        self._ref = Voter.start(*self._args, self.counters)
        for genome in self.store.genomes():  # they waited while this node was down
            for proposal, data in self.store.head(genome).proposals.items():
                if self.id not in data["votes"]:
                    self.offer(genome, proposal, data["version"])

    def offer(self, genome: str, proposal: str, version: str) -> bool:
        """Queue a proposal for this node's vote unless it is queued or voted on already."""
        if self._ref is None or self.stopping.is_set():
            return False
        if not self.pending.claim(proposal, version):
            return False
        try:
            self._ref.tell(VoteOn(genome, proposal, version))
        except pykka.ActorDeadError:
            self.pending.release(proposal, version)
            return False
        return True

    def after_apply(self, results: Iterable[Applied]) -> None:
        """Queue what an applied run left waiting for this node's vote."""
        for applied in results:
            if applied.genome is None:
                continue
            for proposal, (version, voters) in applied.waiting.items():
                if self.id not in voters:
                    self.offer(applied.genome, proposal, version)

    def stop(self) -> None:
        """Ask the Voter to stop after its inbox (which drains without work once stopping)."""
        if self._ref is not None and self._stopped is None:
            self._stopped = self._ref.stop(block=False)

    def join(self, timeout: float) -> None:
        if self._stopped is not None:
            try:
                self._stopped.get(timeout=timeout)
            except pykka.Timeout:
                log.warning("%s: the voter did not stop within %.0f s", self.id, timeout)
