"""The ledger: swarm decisions committed by Raft, applied to each node's event store.

A committed entry is a msgpack map with a ``type``.  :class:`LedgerState` is the state
machine: every node applies the same entries in the same order and, because every
decision here is a function of the entry and of the store (never of a clock or of local
luck), every node's store ends with the same events, timestamps and hash chain.

Exactly once: each entry's writes and its Raft index go into ONE store transaction
(a tracking record), and an index the store already holds is skipped.  The engine
re-delivers committed entries from the start after every restart; those writes are
skipped, but the in-memory part of the state (the member list) is rebuilt from them.

Entry types (fields beyond ``type``; ``at`` is the proposer's clock, epoch seconds):

- ``register``: genome, manifest, tree, fitness, node, at
- ``cycle``: genome, node, cycle, seed, evaluated, held, proposal (or None), at
- ``vote``: genome, proposal, version, node, yes, reason, at
- ``rollback``: genome, to, reason, node, at
- ``members``: members, node, at
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgpack

from events.domain import Lineage, proposals_of
from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.errors import ConsensusError, TarsError
from evolution.patch import apply_patch, make_patch
from evolution.swarm import rebase, tally
from evolution.tree import Tree, short

logger = logging.getLogger(__name__)

#: The tracking name under which applied Raft indexes are recorded in the store.
LEDGER = "ledger"
#: Largest entry a node will decode (a whole genome tree fits many times over).
MAX_ENTRY = 32 << 20


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
    """A ledger entry as bytes for ``Consensus.propose``."""
    return msgpack.packb({"type": kind, **fields}, use_bin_type=True)


def decode(data: bytes) -> dict[str, Any]:
    """Parse an entry; a malformed one is a :class:`ConsensusError` (never a crash of the applier)."""
    if len(data) > MAX_ENTRY:
        raise ConsensusError(f"ledger entry of {len(data)} bytes is over the {MAX_ENTRY} byte limit")
    try:
        entry = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ConsensusError(f"ledger entry does not decode as msgpack: {exc}") from exc
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConsensusError("ledger entry is not a map with a 'type'")
    return entry


def register_entry(genome: str, manifest: str, tree: Mapping[str, str], fitness: float | None, node: str, at: float) -> bytes:
    return encode("register", genome=genome, manifest=manifest, tree=dict(tree), fitness=fitness, node=node, at=at)


def cycle_entry(
    genome: str,
    node: str,
    cycle: int,
    seed: int,
    evaluated: Sequence[CandidateRecord],
    held: Sequence[Held],
    adoption: Adoption | None,
    at: float,
) -> bytes:
    """One cycle's results; a winner becomes a proposal carrying the proposer's own yes vote."""
    proposal = None
    if adoption is not None:
        proposal = asdict(adoption)
        proposal["id"] = proposal_id(genome, node, cycle, adoption.version)
    return encode(
        "cycle",
        genome=genome,
        node=node,
        cycle=cycle,
        seed=seed,
        evaluated=[asdict(r) for r in evaluated],
        held=[asdict(h) for h in held],
        proposal=proposal,
        at=at,
    )


def vote_entry(genome: str, proposal: str, version: str, node: str, yes: bool, reason: str, at: float) -> bytes:
    return encode("vote", genome=genome, proposal=proposal, version=version, node=node, yes=yes, reason=reason, at=at)


def rollback_entry(genome: str, to: str, reason: str, node: str, at: float) -> bytes:
    return encode("rollback", genome=genome, to=to, reason=reason, node=node, at=at)


def members_entry(members: Sequence[str], node: str, at: float) -> bytes:
    return encode("members", members=sorted(set(members)), node=node, at=at)


def proposal_id(genome: str, node: str, cycle: int, version: str) -> str:
    """The same id on every node, and a different one for every proposal a node makes."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tars:proposal:{genome}:{node}:{cycle}:{version}").hex[:16]


# ---- the state machine -----------------------------------------------------------------


class LedgerState:
    """Applies committed entries to one node's store, the same way on every node."""

    def __init__(self, store: GenomeStore, members: Sequence[str], *, ledger: str = LEDGER) -> None:
        self.store = store
        self.ledger = ledger
        self.members: list[str] = sorted(set(members))
        self.rejected_entries = 0

    @property
    def applied_index(self) -> int:
        return self.store.applied(self.ledger) or 0

    def apply(self, index: int, data: bytes) -> Applied:
        """Apply entry ``index``; a bad or impossible entry is recorded as applied and skipped.

        Skipping is deterministic too (every node decodes the same bytes and fails the
        same way), so a poisoned entry cannot stop the swarm or split its history.
        """
        try:
            entry = decode(data)
        except ConsensusError as exc:
            return self._skip(index, "?", None, exc)
        kind = entry["type"]
        if kind == "members":
            self.members = sorted({str(m) for m in entry.get("members", [])}) or self.members
        written = index > self.applied_index
        genome = entry.get("genome") if isinstance(entry.get("genome"), str) else None
        handler = _HANDLERS.get(kind)
        if handler is None:
            return self._skip(index, kind, genome, ConsensusError(f"unknown entry type {kind!r}"))
        if not written:
            # A re-delivery after a restart: only the last applied entry reports what
            # waits for votes, so replaying a long ledger stays one cheap check per entry.
            waiting = self._waiting(genome) if index == self.applied_index else {}
            return Applied(index, kind, genome, False, waiting, {})
        try:
            decided = handler(self, index, entry)
        except (TarsError, KeyError, TypeError, ValueError) as exc:
            return self._skip(index, kind, genome, exc)
        return Applied(index, kind, genome, True, self._waiting(genome), decided)

    # -- handlers: each writes its events and the index in one transaction --

    def _register(self, index: int, entry: dict[str, Any]) -> dict[str, str]:
        self.store.register(
            entry["genome"], entry["manifest"], entry["tree"], entry["fitness"], entry["node"],
            at=_when(entry), tracking=(self.ledger, index),
        )
        return {}

    def _cycle(self, index: int, entry: dict[str, Any]) -> dict[str, str]:
        at = _when(entry)
        node = entry["node"]
        evaluated = [CandidateRecord(**r) for r in entry.get("evaluated") or []]
        held = [Held(**h) for h in entry.get("held") or []]
        raw = entry.get("proposal")
        decided: dict[str, str] = {}

        def decide(lineage: Lineage) -> None:
            if lineage.cycles_completed >= int(entry["cycle"]):
                # A retried proposal, or a deposed leader's late cycle: recorded once only.
                logger.info("cycle %s of %s is already recorded; entry %d changes nothing", entry["cycle"], lineage.name, index)
                return
            for record in evaluated:
                lineage.evaluate(record, node, timestamp=at)
            for request in held:
                lineage.hold(request, node, timestamp=at)
            if raw is not None:
                fields = dict(raw)
                pid = fields.pop("id")
                lineage.submit(pid, Adoption(**fields), node, timestamp=at)
                lineage.vote(pid, fields["version"], True, "proven by its proposer", node, timestamp=at)
            lineage.complete_cycle(int(entry["cycle"]), None, len(evaluated), int(entry["seed"]), node, timestamp=at)
            decided.update(self._resolve(lineage, at))

        self.store.transact(entry["genome"], decide, (self.ledger, index))
        return decided

    def _vote(self, index: int, entry: dict[str, Any]) -> dict[str, str]:
        at = _when(entry)
        decided: dict[str, str] = {}

        def decide(lineage: Lineage) -> None:
            found = proposals_of(lineage).get(entry["proposal"])
            if found is not None and found["version"] == entry["version"] and found["votes"].get(entry["node"]) == bool(entry["yes"]):
                return  # the same vote again (a retried proposal): nothing new to record
            lineage.vote(entry["proposal"], entry["version"], bool(entry["yes"]), str(entry.get("reason", "")), entry["node"], timestamp=at)
            decided.update(self._resolve(lineage, at))

        self.store.transact(entry["genome"], decide, (self.ledger, index))
        return decided

    def _rollback(self, index: int, entry: dict[str, Any]) -> dict[str, str]:
        at = _when(entry)
        name = entry["genome"]
        target = entry["to"]
        tree, fitness = self.store.at_version(name, target)
        decided: dict[str, str] = {}

        def decide(lineage: Lineage) -> None:
            lineage.rollback(target, tree, fitness, str(entry.get("reason", "")), entry["node"], timestamp=at)
            decided.update(self._resolve(lineage, at))

        self.store.transact(name, decide, (self.ledger, index))
        return decided

    def _members(self, index: int, entry: dict[str, Any]) -> dict[str, str]:
        """A new member list can complete or doom waiting proposals of every genome."""
        at = _when(entry)
        decided: dict[str, str] = {}
        names = self.store.genomes()
        for number, name in enumerate(names):
            last = number == len(names) - 1

            def decide(lineage: Lineage) -> None:
                decided.update(self._resolve(lineage, at))

            # Only the last write carries the index: a crash before it re-applies the
            # entry, and resolving an already-resolved lineage is a no-op.
            if last:
                self.store.transact(name, decide, (self.ledger, index))
            else:
                self.store.transact(name, decide)
        if not names:
            self.store.mark_applied(self.ledger, index)
        return decided

    # -- deciding proposals --

    def _resolve(self, lineage: Lineage, at: datetime) -> dict[str, str]:
        """Rebase, adopt or reject waiting proposals until none can move; same on every node."""
        decided: dict[str, str] = {}
        moved = True
        while moved:
            moved = False
            for pid in list(proposals_of(lineage)):
                data = proposals_of(lineage)[pid]
                proposer = data["proposer"]
                if data["parent"] != lineage.head:
                    self._rebase(lineage, pid, data, proposer, at, decided)
                    moved = True
                    break
                verdict = tally(data["votes"], self.members)
                if verdict == "adopt":
                    lineage.adopt(lineage.proposal(pid), proposer, timestamp=at)
                    decided[pid] = "adopt"
                    moved = True
                    break
                if verdict == "reject":
                    noes = sorted(n for n, v in data["votes"].items() if not v)
                    lineage.reject_proposal(pid, f"voted down by {', '.join(noes)}", proposer, timestamp=at)
                    decided[pid] = "reject"
                    moved = True
                    break
        return decided

    def _rebase(self, lineage: Lineage, pid: str, data: dict[str, Any], proposer: str, at: datetime, decided: dict[str, str]) -> None:
        base = self._tree(lineage, data["parent"])
        candidate = apply_patch(base, data["patch"])
        merged = rebase(base, dict(lineage.head_tree), candidate)
        if merged is None:
            lineage.reject_proposal(pid, f"conflicts with head {short(lineage.head)}", proposer, timestamp=at)
            decided[pid] = "reject"
            return
        if merged == lineage.head_tree:
            lineage.reject_proposal(pid, f"already in head {short(lineage.head)}", proposer, timestamp=at)
            decided[pid] = "reject"
            return
        lineage.rebase_proposal(pid, merged, make_patch(dict(lineage.head_tree), merged), proposer, timestamp=at)

    def _tree(self, lineage: Lineage, version: str) -> Tree:
        if version == lineage.head:
            return dict(lineage.head_tree)
        return self.store.materialise(lineage.name, version)

    def _waiting(self, genome: str | None) -> dict[str, tuple[str, frozenset[str]]]:
        if genome is None:
            return {}
        try:
            head = self.store.head(genome)
        except TarsError:
            return {}
        return {pid: (p["version"], frozenset(p["votes"])) for pid, p in head.proposals.items()}

    def _skip(self, index: int, kind: str, genome: str | None, exc: BaseException) -> Applied:
        if index > self.applied_index:
            self.rejected_entries += 1
            logger.warning("ledger entry %d (%s) skipped on every node: %s", index, kind, exc)
            self.store.mark_applied(self.ledger, index)
        return Applied(index, kind, genome, False, self._waiting(genome), {})


_HANDLERS: dict[str, Callable[[LedgerState, int, dict[str, Any]], dict[str, str]]] = {
    "register": LedgerState._register,
    "cycle": LedgerState._cycle,
    "vote": LedgerState._vote,
    "rollback": LedgerState._rollback,
    "members": LedgerState._members,
}


def _when(entry: Mapping[str, Any]) -> datetime:
    """The proposer's time, so every node stores the same timestamp (and chain link)."""
    at = entry.get("at")
    if not isinstance(at, int | float):
        raise ConsensusError("ledger entry has no numeric 'at'")
    return datetime.fromtimestamp(float(at), tz=UTC)
