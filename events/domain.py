"""The lineage of one genome as an event-sourced aggregate.

One :class:`Lineage` per genome, its id derived from the genome's name so every node
finds the same aggregate without a lookup table.  The aggregate keeps only what deciding
the next event needs (head, head tree, counters, pending approvals, last chain); the
history itself is the event sequence, read by projections.  That keeps snapshots small
and replay time flat however long the genome has been evolving.

Command methods validate and compute (chain, timestamp); event ``apply`` methods only
derive state from the event, so replaying them on any node, at any time, is pure: the
one heavy step, applying a patch to the head tree, uses the pure
:func:`evolution.patch.apply_patch`, and the result is checked against the version id
the event claims, so a patch that does not give its version can never become a head,
neither when it is decided nor when it is replayed.

The events that store a candidate, an adoption (or proposal) or a held candidate inherit
their fields from the records in :mod:`events.records` (``CandidateEvaluated(CandidateRecord,
Event)`` …), so each field list is written once: commands store a record's fields with
:func:`~events.records.stored_fields`, and :meth:`Lineage.proposal`/:meth:`Lineage.held`
rebuild records from the aggregate's state the same way.  The record comes first among the
bases so the stored field order stays what it was (the event's own fields, then the
record's); the chain hashes fields key-sorted, so order never changes a chain anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from events._eventsourcing import Aggregate, create_aggregate
from events.chain import GENESIS, link
from events.lineage_state import LeftOutWhenEmpty, approvals_of, rejected_of, rollout_step
from events.lineage_state import head_parent_of as head_parent_of
from events.lineage_state import proposals_of as proposals_of
from events.lineage_state import rollouts_of as rollouts_of
from events.records import Adoption, CandidateRecord, Held, left_out, stored_fields
from evolution.errors import IntegrityError, PatchError, PolicyError
from evolution.patch import apply_patch
from evolution.tree import Tree, short, version_id


def lineage_id(name: str) -> UUID:
    """The aggregate id of a genome: the same on every node, from the name alone."""
    return uuid5(NAMESPACE_URL, "tars:genome:" + name)


class Lineage(Aggregate):
    """Every version, decision and rollback of one genome."""

    name: str
    manifest_text: str
    registered_version: str
    head: str
    head_tree: Tree
    head_fitness: float | None
    versions_count: int
    cycles_completed: int
    pending: dict[str, dict[str, Any]]
    chain: str
    #: swarm proposals waiting for votes: proposal id -> fields + ``votes`` (node -> yes)
    proposals: dict[str, dict[str, Any]]

    def __init__(self) -> None:
        """State is set by :meth:`Registered.apply`, the same code path a replay takes."""

    class Event(Aggregate.Event):
        """Every lineage event names the node that decided it and carries its chain link."""

        node: str
        chain: str

        def mutate(self, aggregate: Any) -> Any:
            mutated: Any = super().mutate(aggregate)
            mutated.chain = self.chain
            return mutated

    class Registered(Event, Aggregate.Created):
        name: str
        manifest_text: str
        tree: dict[str, str]
        version: str
        fitness: float | None

        def apply(self, aggregate: Any) -> None:
            got = version_id(self.tree)
            if got != self.version:
                raise IntegrityError(
                    f"registration of {self.name} claims version {short(self.version)} but its tree is {short(got)}",
                    hint="run `tars log verify`",
                )
            aggregate.name = self.name
            aggregate.manifest_text = self.manifest_text
            aggregate.registered_version = self.version
            aggregate.head = self.version
            aggregate.head_tree = dict(self.tree)
            aggregate.head_fitness = self.fitness
            aggregate.versions_count = 1
            aggregate.cycles_completed = 0
            aggregate.pending = {}
            aggregate.proposals = {}
            aggregate.head_parent = None

    class CandidateEvaluated(CandidateRecord, Event):
        """One candidate a cycle proved (the fields of :class:`CandidateRecord`).

        The record's later fields are stored only when set (:data:`~events.records.LEFT_OUT_EMPTY`):
        an event stored before them, or one that leaves them empty, holds exactly the
        older fields, and the chain covers exactly what is stored.
        """

        def __post_init__(self) -> None:
            super().__post_init__()
            left_out(CandidateRecord, self.__dict__)

    class VersionAdopted(Adoption, Event):
        """A new head (the fields of :class:`Adoption`)."""

        def apply(self, aggregate: Any) -> None:
            if aggregate.head != self.parent:
                raise IntegrityError(
                    f"adoption of {short(self.version)} in {aggregate.name} names parent {short(self.parent)}, "
                    f"but the head is {short(aggregate.head)}",
                    hint="run `tars log verify`",
                )
            tree = apply_patch(aggregate.head_tree, self.patch)
            got = version_id(tree)
            if got != self.version:
                raise IntegrityError(
                    f"adoption in {aggregate.name} claims version {short(self.version)} "
                    f"but its patch on {short(self.parent)} gives {short(got)}",
                    hint="the candidate's version id must be the hash of parent + patch; regenerate it",
                )
            aggregate.head = self.version
            aggregate.head_parent = self.parent
            aggregate.head_tree = tree
            aggregate.head_fitness = self.fitness_after
            aggregate.versions_count += 1
            aggregate.pending.pop(self.version, None)
            proposal = self.evidence.get("proposal")
            if proposal is not None:
                proposals_of(aggregate).pop(proposal, None)

    class RolledBack(Event):
        to_version: str
        from_version: str
        reason: str
        tree: dict[str, str]
        fitness: float | None

        def apply(self, aggregate: Any) -> None:
            got = version_id(self.tree)
            if got != self.to_version:
                raise IntegrityError(
                    f"rollback in {aggregate.name} to {short(self.to_version)} carries tree {short(got)}",
                    hint="run `tars log verify`",
                )
            aggregate.head = self.to_version
            aggregate.head_parent = None  # a member may not roll back a head reached this way
            aggregate.head_tree = dict(self.tree)
            aggregate.head_fitness = self.fitness

    class ApprovalRequested(Held, Event):
        """A candidate held for a human (the fields of :class:`Held`)."""

        def apply(self, aggregate: Any) -> None:
            held = stored_fields(Held, self)
            del held["candidate"]  # the key
            tally = approvals_of(aggregate).pop(self.candidate, {})  # held again: a new count
            if "reject" in tally.values():  # ... unless rejected: that is final
                approvals_of(aggregate)[self.candidate] = tally
                return
            aggregate.pending[self.candidate] = held

    class Approved(Event):
        candidate: str

        def apply(self, aggregate: Any) -> None:
            aggregate.pending.pop(self.candidate, None)

    class ApprovalGiven(Event):
        """An approver's signed decision on a held candidate (an ``approval`` ledger entry,
        docs/approval.md); a rejection is final: the candidate waits no more."""

        candidate: str
        approver: str
        decision: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            approvals_of(aggregate).setdefault(self.candidate, {})[self.approver] = self.decision
            if self.decision == "reject" and self.candidate in aggregate.pending:
                rejected_of(aggregate)[self.candidate] = aggregate.pending.pop(self.candidate)

    class CycleCompleted(LeftOutWhenEmpty, Event):
        left_out_when_empty = ("llm",)  # events without it keep their bytes and chain
        cycle: int
        adopted: str | None
        candidates: int
        seed: int
        #: the models' calls, spend and failures (evolution.llm_usage); stored only when set
        llm: dict[str, Any] = field(default_factory=dict)

        def apply(self, aggregate: Any) -> None:
            aggregate.cycles_completed = max(aggregate.cycles_completed, self.cycle)

    class ProposalSubmitted(Adoption, Event):
        """A proven candidate put before the swarm: its id and the :class:`Adoption` it
        would become.  It waits for a majority of votes."""

        proposal: str = field(kw_only=True)  # after the record's defaulted ``evidence``

        def apply(self, aggregate: Any) -> None:
            waiting = stored_fields(Adoption, self)
            waiting.update(proposer=self.node, votes={})
            proposals_of(aggregate)[self.proposal] = waiting

    class VoteCast(Event):
        """A node's verdict on one proposal's version after re-running the genome's tests."""

        proposal: str
        version: str
        yes: bool
        reason: str

        def apply(self, aggregate: Any) -> None:
            found = proposals_of(aggregate).get(self.proposal)
            if found is not None and found["version"] == self.version:
                found["votes"][self.node] = self.yes

    class ProposalRebased(Event):
        """The head moved under a proposal; its three-way merge onto the head needs new votes."""

        proposal: str
        parent: str
        version: str
        patch: str
        fitness_before: float | None

        def apply(self, aggregate: Any) -> None:
            found = proposals_of(aggregate)[self.proposal]
            found.update(
                parent=self.parent,
                version=self.version,
                patch=self.patch,
                fitness_before=self.fitness_before,
            )
            found["votes"] = {}

    class ProposalRejected(Event):
        proposal: str
        version: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            proposals_of(aggregate).pop(self.proposal, None)

    class RolloutStepped(LeftOutWhenEmpty, Event):
        """One step of ``node``'s own rollout of ``version`` over ``blue`` (a ``rollout``
        ledger entry; docs/rollouts.md): the lineage keeps each node's last step, which
        decides whether that node may roll the head back (consensus/authors.py).  ``plan``:
        a deploy's own plan, on a ``started`` step, stored only when set (not a new event:
        docs/rollouts.md, "A deploy's own plan")."""

        left_out_when_empty = ("plan",)
        version: str
        blue: str
        phase: str
        step: int
        weight: float
        result: str
        reason: str
        plan: dict[str, Any] = field(default_factory=dict)

        def apply(self, aggregate: Any) -> None:
            rollouts = rollouts_of(aggregate)
            rollouts[self.node] = rollout_step(rollouts.get(self.node), self)

    # ---- commands: validate, then trigger; no I/O ----

    @classmethod
    def register(
        cls,
        name: str,
        manifest_text: str,
        tree: Mapping[str, str],
        fitness: float | None,
        node: str,
        *,
        timestamp: datetime | None = None,
    ) -> Lineage:
        """A new lineage whose first version is ``tree``."""
        ident = lineage_id(name)
        when = timestamp or cls.Registered.create_timestamp()
        fields: dict[str, Any] = {
            "name": name,
            "manifest_text": manifest_text,
            "tree": dict(tree),
            "version": version_id(tree),
            "fitness": fitness,
            "node": node,
        }
        chain = link(GENESIS, "Registered", ident, cls.INITIAL_VERSION, when, fields)
        return create_aggregate(
            cls, cls.Registered, id=ident, timestamp=when, chain=chain, **fields
        )

    def evaluate(
        self, record: CandidateRecord, node: str, *, timestamp: datetime | None = None
    ) -> None:
        fields = left_out(CandidateRecord, stored_fields(CandidateRecord, record))
        self._trigger(self.CandidateEvaluated, timestamp, node=node, **fields)

    def adopt(self, adoption: Adoption, node: str, *, timestamp: datetime | None = None) -> None:
        if adoption.parent != self.head:
            raise PatchError(
                f"candidate {short(adoption.version)} of {self.name} was made against {short(adoption.parent)}, "
                f"but the head is {short(self.head)}",
                hint="rebase the candidate on the current head and prove it again",
            )
        fields = stored_fields(Adoption, adoption)
        self._trigger(self.VersionAdopted, timestamp, node=node, **fields)

    def hold(self, held: Held, node: str, *, timestamp: datetime | None = None) -> None:
        self._trigger(self.ApprovalRequested, timestamp, node=node, **stored_fields(Held, held))

    def approve(self, candidate: str, node: str, *, timestamp: datetime | None = None) -> Held:
        if candidate not in self.pending:
            raise PolicyError(
                f"no candidate {candidate} of {self.name} is waiting for approval",
                hint=f"waiting: {', '.join(sorted(self.pending)) or 'none'}",
            )
        held = self.held(candidate)
        self._trigger(self.Approved, timestamp, candidate=candidate, node=node)
        return held

    def give_approval(
        self, candidate: str, approver: str, decision: str, reason: str, *, timestamp: datetime
    ) -> None:
        """Record one approver's decision on a held candidate (the ledger checked it)."""
        self._trigger(self.ApprovalGiven, timestamp, node=approver, candidate=candidate,
                      approver=approver, decision=decision, reason=reason)  # fmt: skip

    def rollback(
        self,
        to_version: str,
        tree: Mapping[str, str],
        fitness: float | None,
        reason: str,
        node: str,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        if to_version == self.head:
            raise PolicyError(
                f"{self.name} is already at {short(to_version)}",
                hint="roll back to an earlier version (`tars log lineage` lists them)",
            )
        self._trigger(
            self.RolledBack,
            timestamp,
            to_version=to_version,
            from_version=self.head,
            reason=reason,
            tree=dict(tree),
            fitness=fitness,
            node=node,
        )

    def step_rollout(
        self,
        node: str,
        version: str,
        blue: str,
        phase: str,
        step: int,
        weight: float,
        result: str,
        reason: str,
        *,
        timestamp: datetime | None = None,
        plan: dict[str, Any] | None = None,
    ) -> None:
        """Record one step of ``node``'s rollout (every step is an event: `tars log` shows it)."""
        self._trigger(
            self.RolloutStepped, timestamp, node=node, version=version, blue=blue,
            phase=phase, step=step, weight=weight, result=result, reason=reason,
            **({"plan": plan} if plan else {}),
        )  # fmt: skip

    def complete_cycle(
        self,
        cycle: int,
        adopted: str | None,
        candidates: int,
        seed: int,
        node: str,
        *,
        timestamp: datetime | None = None,
        llm: dict[str, Any] | None = None,
    ) -> None:
        extra = {"llm": llm} if llm else {}
        self._trigger(self.CycleCompleted, timestamp, cycle=cycle, adopted=adopted,
                      candidates=candidates, seed=seed, node=node, **extra)  # fmt: skip

    def submit(
        self, proposal: str, adoption: Adoption, node: str, *, timestamp: datetime | None = None
    ) -> None:
        """Put a proven candidate before the swarm (its parent need not be the head any more)."""
        if proposal in proposals_of(self):
            raise PolicyError(f"proposal {proposal} of {self.name} is already waiting for votes")
        fields = stored_fields(Adoption, adoption)
        self._trigger(self.ProposalSubmitted, timestamp, proposal=proposal, node=node, **fields)

    def vote(
        self,
        proposal: str,
        version: str,
        yes: bool,
        reason: str,
        node: str,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        found = proposals_of(self).get(proposal)
        if found is None or found["version"] != version:
            raise PolicyError(
                f"proposal {proposal} of {self.name} is not waiting for votes on {short(version)}"
            )
        self._trigger(
            self.VoteCast,
            timestamp,
            proposal=proposal,
            version=version,
            yes=yes,
            reason=reason,
            node=node,
        )

    def rebase_proposal(
        self,
        proposal: str,
        tree: Mapping[str, str],
        patch: str,
        node: str,
        *,
        timestamp: datetime | None = None,
    ) -> None:
        self._trigger(
            self.ProposalRebased,
            timestamp,
            proposal=proposal,
            parent=self.head,
            version=version_id(tree),
            patch=patch,
            fitness_before=self.head_fitness,
            node=node,
        )

    def reject_proposal(
        self, proposal: str, reason: str, node: str, *, timestamp: datetime | None = None
    ) -> None:
        found = proposals_of(self)[proposal]
        self._trigger(
            self.ProposalRejected,
            timestamp,
            proposal=proposal,
            version=found["version"],
            reason=reason,
            node=node,
        )

    def proposal(self, proposal: str) -> Adoption:
        """A waiting proposal as the adoption it would become."""
        fields = stored_fields(Adoption, proposals_of(self)[proposal], items=True)
        fields["evidence"]["proposal"] = proposal  # a copy: the waiting proposal is unchanged
        return Adoption(**fields)

    def held(self, candidate: str) -> Held:
        """The pending approval ``candidate`` as a record."""
        stored = {**self.pending[candidate], "candidate": candidate}
        return Held(**stored_fields(Held, stored, items=True))

    def _trigger(
        self, event_class: type[Lineage.Event], timestamp: datetime | None, **fields: Any
    ) -> None:
        """Trigger the next event with its chain link computed over exactly what will be stored."""
        when = timestamp or event_class.create_timestamp()
        chain = link(self.chain, event_class.__name__, self.id, self.version + 1, when, fields)
        self.trigger_event(event_class, timestamp=when, chain=chain, **fields)
