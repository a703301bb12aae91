"""The ledger: swarm decisions committed by Raft, applied to each node's event store.

A committed entry is a msgpack map with a ``type``; its typed form, encoding and checks
are in :mod:`consensus.entries`.  :class:`LedgerState` is the state machine: every node
applies the same entries in the same order and, because every decision here is a
function of the entry and of the store (never of a clock or of local luck), every
node's store ends with the same events, timestamps and hash chain.

Exactly once: each entry's writes and its Raft index go into ONE store transaction
(a tracking record), and an index the store already holds is skipped.  The engine
re-delivers committed entries from the start after every restart; those writes are
skipped, but the in-memory part of the state (the member list) is rebuilt from them.

What happens to waiting proposals is decided by the pure :func:`evolution.swarm.decide`;
this module turns its decisions into the lineage's domain events.  A run of entries and
its one transaction is :class:`consensus._run.Run`.

Signed decisions: given the swarm's signing keys (``keys``; a swarm node always passes
them), an entry counts only when its author may write it and ``sig`` verifies
(:func:`consensus.authors.signature_problem`); any other entry is refused the same way
on every node: recorded as applied, nothing else, and counted (``refused_signatures``).
The keys start as cluster.yml's and grow with the ``members`` entries that record a new
member's key; a snapshot carries them, so every node verifies with the same keys.
Without ``keys`` (unit tests of the state machine, tools reading one store) nothing is
verified.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgpack

from consensus._run import Run, waiting_of
from consensus.approvals import Approval, ApproverList, Approvers, apply_approval
from consensus.authors import Refused, member_rollback_problem, signature_problem
from consensus.blob import heads_of, store_heads
from consensus.entries import (
    ADMIN,
    MAX_ENTRY,
    Cycle,
    Entry,
    Members,
    Offer,
    Register,
    Rollback,
    Rollout,
    Vote,
    cycle_entry,
    incoming,
    members_entry,
    parse,
    proposal_id,
    read_map,
    register_entry,
    rollback_entry,
    vote_entry,
)
from consensus.ledger_snapshots import LedgerSnapshots
from consensus.offers import Offers
from consensus.signing import Keyring
from events.domain import Lineage, head_parent_of, proposals_of, rollouts_of
from events.store import GenomeStore
from evolution.errors import ConsensusError, TarsError
from evolution.llm_usage import from_log, to_log
from evolution.swarm import Adopt, Rebased, Reject, Waiting, decide
from evolution.tree import Tree, version_id

__all__ = [
    "LEDGER",
    "MAX_ENTRY",
    "Applied",
    "LedgerState",
    "cycle_entry",
    "heads_of",
    "decode",
    "encode",
    "members_entry",
    "proposal_id",
    "register_entry",
    "rollback_entry",
    "vote_entry",
]

logger = logging.getLogger(__name__)

#: The tracking name under which applied Raft indexes are recorded in the store.
LEDGER = "ledger"


class _Duplicate(Exception):  # noqa: N818 (a signal inside apply, never raised out)
    """A member's rollback of a version another member's rollback already undid."""


class Applied(NamedTuple):
    """What applying one entry did, for the node's side effects (validations, waiters)."""

    raft_index: int
    kind: str
    genome: str | None
    #: False when the store already held this index (a re-delivery after a restart)
    written: bool
    #: proposals of ``genome`` still waiting for votes: proposal id -> (version, voters)
    waiting: dict[str, tuple[str, frozenset[str]]]
    #: proposal ids decided by this entry: id -> "adopt" | "reject"
    decided: dict[str, str]


# ---- entries ---------------------------------------------------------------------------


def encode(kind: str, **fields: Any) -> bytes:
    """Any map with a ``type`` as entry bytes (typed entries go through ``entries.encode``)."""
    return msgpack.packb({"type": kind, **fields}, use_bin_type=True)


def decode(data: bytes) -> dict[str, Any]:
    """An entry's map; a malformed one is a :class:`ConsensusError`, never a crash."""
    return read_map(data)


# ---- the state machine -----------------------------------------------------------------


class LedgerState(LedgerSnapshots):
    """Applies committed entries to one node's store, the same way on every node."""

    def __init__(
        self,
        store: GenomeStore,
        members: Sequence[str],
        *,
        ledger: str = LEDGER,
        keys: Mapping[str, bytes] | None = None,
        approval: Approvers | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.members: list[str] = sorted(set(members))
        self.rejected_entries = 0
        #: entries refused for their signature or author (also counted as skipped)
        self.refused_signatures = 0
        #: the swarm's public signing keys; None verifies nothing (see the module docstring)
        self.keys: Keyring | None = Keyring(keys) if keys is not None else None
        #: who may approve a held candidate, and the quorum: cluster.yml's until the first
        #: committed ``approvers`` entry, that entry's from then on (docs/approval.md)
        self.approval = approval or Approvers({}, 1)
        self.approvers = Keyring(self.approval.keys)
        #: (index, approvers from that index on) since the first ``approvers`` entry
        #: (empty: cluster.yml's), for the snapshot blob at any index
        self._approver_changes: list[tuple[int, Approvers]] = []
        self._applied = store.applied(ledger) or 0
        #: (applied index, lineage id hex -> (last position, its chain)) as the store holds
        #: them, replaced whole after every stored run: a snapshot reads it without a lock
        self._heads: tuple[int, dict[str, tuple[int, str]]] = (
            self._applied,
            store_heads(self.store),
        )
        #: (index, members from that index on), for the snapshot blob at any index since
        #: this object was made or last restored (the log before it may be compacted)
        self._member_changes: list[tuple[int, list[str]]] = [(0, self.members)]
        #: held while a run is applied, so a peer's state transfer reads the store's
        #: applied index and its lineages' positions at one point of the log
        self.lock = threading.Lock()
        #: trees of recent heads by version: a rebase's parent is usually one of them,
        #: possibly adopted earlier in the same (not yet stored) run of entries
        self._trees: dict[str, Tree] = {}
        #: lineages as the last stored run left them: the ledger is the store's only
        #: writer on a swarm node, so the next run need not load them again
        self._live: dict[str, Lineage] = {}
        #: recent committed offers (what a peer may ask this node to prove); the index applying
        self.offers, self._applying = Offers(), 0

    @property
    def applied_index(self) -> int:
        return self._applied

    def apply(self, index: int, data: bytes) -> Applied:
        """Apply one committed entry (see :meth:`apply_batch`)."""
        return self.apply_batch([(index, data)])[0]

    def apply_batch(self, batch: Sequence[tuple[int, bytes]]) -> list[Applied]:
        """Apply a run of consecutive committed entries in as few transactions as possible.

        All events of the run and the run's last index go into one transaction (a
        rollback or a member change first stores what came before it, since they read
        the store).  A bad or impossible entry is recorded as applied and skipped; the
        skip is deterministic too (every node decodes the same bytes and fails the same
        way), so a poisoned entry cannot stop the swarm or split its history.
        """
        with self.lock:
            run = Run(self.store, self.ledger, self._live, self._applied, self._stored)
            out = [self._apply_one(run, index, data) for index, data in batch]
            run.flush()
        return out

    def _apply_one(self, run: Run, index: int, data: bytes) -> Applied:
        self._applying = index
        again = index <= max(run.applied, run.last_index)
        try:
            entry, raw, kind, genome = incoming(data, again=again)
        except ConsensusError as exc:
            return self._skip(run, index, "?", None, exc)
        if isinstance(entry, Members | ApproverList):  # rebuilt from re-deliveries too
            problem = self._refusal(entry, data)
            if problem is None and isinstance(entry, ApproverList):
                problem = self._take_approvers(index, entry)
            if problem is not None:
                if again:  # refused when it was first applied
                    return Applied(index, kind, genome, False, {}, {})
                return self._refuse(run, index, kind, genome, problem)
            if isinstance(entry, Members):
                self._take_members(index, entry)
        if again:
            self.offers.replayed(index, entry)
            # A re-delivery after a restart: only the last applied entry reports what
            # waits for votes, so replaying a long ledger stays one cheap check per entry.
            waiting = self._stored_waiting(genome) if index == run.applied and not run.dirty else {}
            return Applied(index, kind, genome, False, waiting, {})
        if entry is None:
            try:
                entry = parse(raw)
            except ConsensusError as exc:
                return self._skip(run, index, kind, genome, exc)
        if not isinstance(entry, Members | ApproverList):
            problem = self._refusal(entry, data)
            if problem is not None:
                return self._refuse(run, index, kind, genome, problem)
        if isinstance(entry, Rollback | Members):
            run.flush()
        run.begin()
        try:
            decided = self._handle(run, entry)
        except _Duplicate:  # no effect, and not written: nothing moved (metrics, deployer)
            run.abort()
            run.last_index = index
            return Applied(index, kind, genome, False, {}, {})
        except Refused as exc:  # a member's rollback the lineage does not allow
            run.abort()
            return self._refuse(run, index, kind, genome, str(exc))
        except (TarsError, KeyError, TypeError, ValueError, AttributeError) as exc:
            run.abort()
            return self._skip(run, index, kind, genome, exc)
        run.last_index = index
        return Applied(index, kind, genome, True, run.waiting(genome), decided)

    # -- signed decisions --

    def _refusal(self, entry: Entry, data: bytes) -> str | None:
        """Why the entry must not count (its author or signature), or None; see authors."""
        if self.keys is None:
            return None
        try:
            return signature_problem(entry, data, self.keys, self.members, self.approvers)
        except (TarsError, KeyError, TypeError, ValueError, AttributeError) as exc:
            return f"it cannot be checked ({type(exc).__name__}: {exc})"  # alike everywhere

    def _refuse(self, run: Run, index: int, kind: str, genome: str | None, problem: str) -> Applied:
        """An entry whose author may not write it, or whose signature does not verify:
        skipped on every node alike, and counted."""
        self.refused_signatures += 1
        return self._skip(run, index, kind, genome, ConsensusError(f"refused: {problem}"))

    def _skip(
        self, run: Run, index: int, kind: str, genome: str | None, exc: BaseException
    ) -> Applied:
        """Record ``index`` as applied with no effect: the same on every node."""
        self.rejected_entries += 1
        logger.warning("ledger entry %d (%s) skipped on every node: %s", index, kind, exc)
        run.last_index = index
        return Applied(index, kind, genome, False, {}, {})

    def _handle(self, run: Run, entry: Entry) -> dict[str, str]:
        """Trigger the entry's events on the run's lineages; the proposals it decided."""
        match entry:
            case Register():
                return self._register(run, entry)
            case Cycle():
                return self._cycle(run, entry)
            case Vote():
                return self._vote(run, entry)
            case Rollback():
                return self._rollback(run, entry)
            case Members():
                return self._members(run, entry)
            case Rollout():  # one step of the author's own rollout (docs/rollouts.md)
                _, node, *fields, at, plan = entry  # fields: version, blue … result, reason
                lineage = run.lineage(entry.genome)
                lineage.step_rollout(node, *fields, timestamp=_when(at), plan=plan)
                return {}
            case Offer():  # kept in the ledger state, not in the store (consensus/offers.py)
                self.offers.keep(self._applying, entry)
                return {}
            case Approval():
                return self._approval(run, entry)
            case ApproverList():  # taken in _apply_one, rebuilt from re-deliveries too
                return {}

    # -- handlers: trigger events on the run's lineages; the run stores them --

    def _register(self, run: Run, entry: Register) -> dict[str, str]:
        existing = run.lineage(entry.genome, missing_ok=True)
        if existing is None:
            lineage = Lineage.register(
                entry.genome,
                entry.manifest,
                entry.tree,
                entry.fitness,
                entry.node,
                timestamp=_when(entry.at),
            )
            run.add(lineage)
            self._remember(lineage)
        elif version_id(entry.tree) not in (existing.registered_version, existing.head):
            raise ConsensusError(f"genome {entry.genome} is already registered with another tree")
        return {}

    def _cycle(self, run: Run, entry: Cycle) -> dict[str, str]:
        at = _when(entry.at)
        node = entry.node
        lineage = run.lineage(entry.genome)
        if lineage.cycles_completed >= entry.cycle:
            # A retried proposal, or a deposed leader's late cycle: recorded once only.
            logger.info(
                "cycle %s of %s is already recorded; the entry changes nothing",
                entry.cycle,
                lineage.name,
            )
            return {}
        for record in entry.evaluated:
            lineage.evaluate(record, node, timestamp=at)
        for held in entry.held:
            lineage.hold(held, node, timestamp=at)
        if entry.proposal is not None:
            pid, adoption = entry.proposal
            lineage.submit(pid, adoption, node, timestamp=at)
            lineage.vote(pid, adoption.version, True, "proven by its proposer", node, timestamp=at)
        lineage.complete_cycle(
            entry.cycle, None, len(entry.evaluated), entry.seed, node, timestamp=at,
            llm=to_log(from_log(entry.llm)),  # a peer's map, rebuilt: well-formed and bounded
        )  # fmt: skip
        return self._resolve(lineage, at)

    def _vote(self, run: Run, entry: Vote) -> dict[str, str]:
        lineage = run.lineage(entry.genome)
        found = proposals_of(lineage).get(entry.proposal)
        if found is None or found["version"] != entry.version:
            # A late vote: the proposal was decided (or rebased) before it was counted.
            logger.debug("late vote of %s on %s ignored", entry.node, entry.proposal)
            return {}
        if found["votes"].get(entry.node) == entry.yes:
            return {}  # the same vote again (a retried proposal): nothing new to record
        at = _when(entry.at)
        lineage.vote(
            entry.proposal, entry.version, entry.yes, entry.reason, entry.node, timestamp=at
        )
        return self._resolve(lineage, at)

    def _rollback(self, run: Run, entry: Rollback) -> dict[str, str]:
        at = _when(entry.at)
        lineage = run.lineage(entry.genome)
        if entry.node != ADMIN and self.keys is not None:  # a member's own (authors.py)
            if entry.to == lineage.head:  # another node's rollback of it came first
                raise _Duplicate
            last = rollouts_of(lineage).get(entry.node)
            problem = member_rollback_problem(entry, lineage.head, head_parent_of(lineage), last)
            if problem is not None:
                raise Refused(problem)
        # the run was stored before this entry, so the store knows every earlier version
        tree, fitness = self.store.at_version(entry.genome, entry.to)
        lineage.rollback(entry.to, tree, fitness, entry.reason, entry.node, timestamp=at)
        self._remember(lineage)
        return self._resolve(lineage, at)

    def _approval(self, run: Run, entry: Approval) -> dict[str, str]:
        """A person's decision on a held candidate; the quorum's last approval adopts it."""
        at = _when(entry.at)
        lineage = run.lineage(entry.genome)
        if not apply_approval(lineage, entry, self.approval.quorum, at):
            return {}
        self._remember(lineage)
        return {f"approval:{entry.candidate}": "adopt", **self._resolve(lineage, at)}

    def _members(self, run: Run, entry: Members) -> dict[str, str]:
        """A new member list can complete or doom waiting proposals of every genome."""
        at = _when(entry.at)
        decided: dict[str, str] = {}
        for name in self.store.genomes():
            decided.update(self._resolve(run.lineage(name), at))
        return decided

    # -- deciding proposals: evolution.swarm.decide decides, the lineage records --

    def _resolve(self, lineage: Lineage, at: datetime) -> dict[str, str]:
        """Apply :func:`decide`'s decisions on the waiting proposals as domain events."""
        waiting = [
            Waiting(pid, p["parent"], p["version"], p["patch"], p["votes"], p["proposer"])
            for pid, p in proposals_of(lineage).items()
        ]
        if not waiting:
            return {}
        proposer = {w.id: w.proposer for w in waiting}
        decisions = decide(
            waiting,
            lineage.head,
            lineage.head_tree,
            self.members,
            lambda version: self._tree(lineage, version),
        )
        decided: dict[str, str] = {}
        for decision in decisions:
            node = proposer[decision.id]
            match decision:
                case Adopt(pid):
                    lineage.adopt(lineage.proposal(pid), node, timestamp=at)
                    self._remember(lineage)
                    decided[pid] = "adopt"
                case Reject(pid, reason):
                    lineage.reject_proposal(pid, reason, node, timestamp=at)
                    decided[pid] = "reject"
                case Rebased(pid, _, patch, tree):
                    lineage.rebase_proposal(pid, tree, patch, node, timestamp=at)
        return decided

    def _remember(self, lineage: Lineage) -> None:
        self._trees[lineage.head] = dict(lineage.head_tree)
        while len(self._trees) > TREE_CACHE:
            self._trees.pop(next(iter(self._trees)))

    def _tree(self, lineage: Lineage, version: str) -> Tree:
        if version == lineage.head:
            return dict(lineage.head_tree)
        if version in self._trees:
            return dict(self._trees[version])
        return self.store.materialise(lineage.name, version)

    def _stored_waiting(self, genome: str | None) -> dict[str, tuple[str, frozenset[str]]]:
        if genome is None:
            return {}
        try:
            return waiting_of(self.store.load(genome))
        except TarsError:
            return {}


#: Head trees a node keeps for rebasing (a few genomes' recent versions).
TREE_CACHE = 64


def _when(at: float) -> datetime:
    """The proposer's time, so every node stores the same timestamp (and chain link)."""
    return datetime.fromtimestamp(float(at), tz=UTC)
