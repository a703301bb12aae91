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
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgpack

from events.domain import Lineage, proposals_of
from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.errors import ConsensusError, TarsError, UnknownGenomeError
from evolution.patch import apply_patch, make_patch
from evolution.swarm import rebase, tally
from evolution.tree import Tree, short, version_id

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
        raise ConsensusError(
            f"ledger entry of {len(data)} bytes is over the {MAX_ENTRY} byte limit"
        )
    try:
        entry = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ConsensusError(f"ledger entry does not decode as msgpack: {exc}") from exc
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConsensusError("ledger entry is not a map with a 'type'")
    return entry


def register_entry(
    genome: str, manifest: str, tree: Mapping[str, str], fitness: float | None, node: str, at: float
) -> bytes:
    return encode(
        "register",
        genome=genome,
        manifest=manifest,
        tree=dict(tree),
        fitness=fitness,
        node=node,
        at=at,
    )


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


def vote_entry(
    genome: str, proposal: str, version: str, node: str, yes: bool, reason: str, at: float
) -> bytes:
    return encode(
        "vote",
        genome=genome,
        proposal=proposal,
        version=version,
        node=node,
        yes=yes,
        reason=reason,
        at=at,
    )


def rollback_entry(genome: str, to: str, reason: str, node: str, at: float) -> bytes:
    return encode("rollback", genome=genome, to=to, reason=reason, node=node, at=at)


def members_entry(members: Sequence[str], node: str, at: float) -> bytes:
    return encode("members", members=sorted(set(members)), node=node, at=at)


def proposal_id(genome: str, node: str, cycle: int, version: str) -> str:
    """The same id on every node, and a different one for every proposal a node makes."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"tars:proposal:{genome}:{node}:{cycle}:{version}").hex[
        :16
    ]


# ---- the state machine -----------------------------------------------------------------


class LedgerState:
    """Applies committed entries to one node's store, the same way on every node."""

    def __init__(self, store: GenomeStore, members: Sequence[str], *, ledger: str = LEDGER) -> None:
        self.store = store
        self.ledger = ledger
        self.members: list[str] = sorted(set(members))
        self.rejected_entries = 0
        self._applied = store.applied(ledger) or 0
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
            run = _Run(self)
            out = [self._apply_one(run, index, data) for index, data in batch]
            run.flush()
        return out

    # -- snapshots: what stands in for a compacted log --

    def members_at(self, index: int) -> list[str]:
        """The member list in force after applying ``index``."""
        for since, members in reversed(self._member_changes):
            if since <= index:
                return members
        return self._member_changes[0][1]

    def snapshot_state(self, index: int) -> bytes:
        """The part of the ledger's state that is not in the store: the member list."""
        return msgpack.packb({"members": self.members_at(index)}, use_bin_type=True)

    def restore(self, index: int, state: bytes) -> None:
        """Take the member list of a snapshot at ``index``; later entries replay over it."""
        try:
            members = msgpack.unpackb(state, raw=False)["members"]
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise TypeError("members is not a list of node ids")
        except Exception as exc:
            raise ConsensusError(
                f"snapshot state at ledger index {index} is malformed: {exc}"
            ) from exc
        with self.lock:
            self.members = sorted(set(members)) or self.members
            self._member_changes = [(index, self.members)]

    def export_begin(self) -> tuple[int, dict[str, int], bytes]:
        """(applied index, lineage positions, state blob) at one point of the log, for a peer."""
        with self.lock:
            index = self._applied
            return index, self.store.positions(), self.snapshot_state(index)

    def import_state(
        self, events: Sequence[tuple[str, int, str, bytes]], index: int, state: bytes
    ) -> int:
        """Store a peer's events up to ``index`` (checked, one transaction), then its members."""
        with self.lock:
            stored = self.store.import_events(events, (self.ledger, index))
            self._applied = max(self._applied, index)
            self._live.clear()
            self._trees.clear()
        self.restore(index, state)
        return stored

    def _apply_one(self, run: _Run, index: int, data: bytes) -> Applied:
        try:
            entry = decode(data)
        except ConsensusError as exc:
            return run.skip(index, "?", None, exc)
        kind = entry["type"]
        if kind == "members":
            self.members = sorted({str(m) for m in entry.get("members", [])}) or self.members
            self._member_changes.append((index, self.members))
        genome = entry.get("genome") if isinstance(entry.get("genome"), str) else None
        if index <= max(self._applied, run.last_index):
            # A re-delivery after a restart: only the last applied entry reports what
            # waits for votes, so replaying a long ledger stays one cheap check per entry.
            waiting = (
                self._stored_waiting(genome) if index == self._applied and not run.dirty else {}
            )
            return Applied(index, kind, genome, False, waiting, {})
        handler = _HANDLERS.get(kind)
        if handler is None:
            return run.skip(index, kind, genome, ConsensusError(f"unknown entry type {kind!r}"))
        if kind in ("rollback", "members"):
            run.flush()
        run.begin()
        try:
            decided = handler(self, run, entry)
        except (TarsError, KeyError, TypeError, ValueError, AttributeError) as exc:
            run.abort()
            return run.skip(index, kind, genome, exc)
        run.last_index = index
        return Applied(index, kind, genome, True, run.waiting(genome), decided)

    # -- handlers: trigger events on the run's lineages; the run stores them --

    def _register(self, run: _Run, entry: dict[str, Any]) -> dict[str, str]:
        name = entry["genome"]
        tree = entry["tree"]
        existing = run.lineage(name, missing_ok=True)
        if existing is None:
            lineage = Lineage.register(
                name,
                entry["manifest"],
                tree,
                entry["fitness"],
                entry["node"],
                timestamp=_when(entry),
            )
            run.add(lineage)
            self._remember(lineage)
        elif version_id(tree) not in (existing.registered_version, existing.head):
            raise ConsensusError(f"genome {name} is already registered with another tree")
        return {}

    def _cycle(self, run: _Run, entry: dict[str, Any]) -> dict[str, str]:
        at = _when(entry)
        node = entry["node"]
        lineage = run.lineage(entry["genome"])
        if lineage.cycles_completed >= int(entry["cycle"]):
            # A retried proposal, or a deposed leader's late cycle: recorded once only.
            logger.info(
                "cycle %s of %s is already recorded; the entry changes nothing",
                entry["cycle"],
                lineage.name,
            )
            return {}
        for raw_record in entry.get("evaluated") or []:
            lineage.evaluate(CandidateRecord(**raw_record), node, timestamp=at)
        for raw_held in entry.get("held") or []:
            lineage.hold(Held(**raw_held), node, timestamp=at)
        raw = entry.get("proposal")
        if raw is not None:
            fields = dict(raw)
            pid = fields.pop("id")
            lineage.submit(pid, Adoption(**fields), node, timestamp=at)
            lineage.vote(pid, fields["version"], True, "proven by its proposer", node, timestamp=at)
        lineage.complete_cycle(
            int(entry["cycle"]),
            None,
            len(entry.get("evaluated") or []),
            int(entry["seed"]),
            node,
            timestamp=at,
        )
        return self._resolve(lineage, at)

    def _vote(self, run: _Run, entry: dict[str, Any]) -> dict[str, str]:
        lineage = run.lineage(entry["genome"])
        found = proposals_of(lineage).get(entry["proposal"])
        if found is None or found["version"] != entry["version"]:
            # A late vote: the proposal was decided (or rebased) before it was counted.
            logger.debug("late vote of %s on %s ignored", entry["node"], entry["proposal"])
            return {}
        if found["votes"].get(entry["node"]) == bool(entry["yes"]):
            return {}  # the same vote again (a retried proposal): nothing new to record
        at = _when(entry)
        lineage.vote(
            entry["proposal"],
            entry["version"],
            bool(entry["yes"]),
            str(entry.get("reason", "")),
            entry["node"],
            timestamp=at,
        )
        return self._resolve(lineage, at)

    def _rollback(self, run: _Run, entry: dict[str, Any]) -> dict[str, str]:
        at = _when(entry)
        name, target = entry["genome"], entry["to"]
        lineage = run.lineage(name)
        tree, fitness = self.store.at_version(name, target)  # the run was stored before this entry
        lineage.rollback(
            target, tree, fitness, str(entry.get("reason", "")), entry["node"], timestamp=at
        )
        self._remember(lineage)
        return self._resolve(lineage, at)

    def _members(self, run: _Run, entry: dict[str, Any]) -> dict[str, str]:
        """A new member list can complete or doom waiting proposals of every genome."""
        at = _when(entry)
        decided: dict[str, str] = {}
        for name in self.store.genomes():
            decided.update(self._resolve(run.lineage(name), at))
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
                    self._remember(lineage)
                    decided[pid] = "adopt"
                    moved = True
                    break
                if verdict == "reject":
                    noes = sorted(n for n, v in data["votes"].items() if not v)
                    lineage.reject_proposal(
                        pid, f"voted down by {', '.join(noes)}", proposer, timestamp=at
                    )
                    decided[pid] = "reject"
                    moved = True
                    break
        return decided

    def _rebase(
        self,
        lineage: Lineage,
        pid: str,
        data: dict[str, Any],
        proposer: str,
        at: datetime,
        decided: dict[str, str],
    ) -> None:
        base = self._tree(lineage, data["parent"])
        candidate = apply_patch(base, data["patch"])
        merged = rebase(base, dict(lineage.head_tree), candidate)
        if merged is None:
            lineage.reject_proposal(
                pid, f"conflicts with head {short(lineage.head)}", proposer, timestamp=at
            )
            decided[pid] = "reject"
            return
        if merged == lineage.head_tree:
            lineage.reject_proposal(
                pid, f"already in head {short(lineage.head)}", proposer, timestamp=at
            )
            decided[pid] = "reject"
            return
        lineage.rebase_proposal(
            pid, merged, make_patch(dict(lineage.head_tree), merged), proposer, timestamp=at
        )

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
            return _waiting_of(self.store.load(genome))
        except TarsError:
            return {}


class _Run:
    """The lineages a run of entries changes, kept in memory until one transaction stores them."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.lineages: dict[str, Lineage] = {}
        self.last_index = state.applied_index
        self._marks: dict[str, int] = {}

    @property
    def dirty(self) -> bool:
        return self.last_index > self.state.applied_index

    def lineage(self, name: str, *, missing_ok: bool = False) -> Any:
        found = self.lineages.get(name) or self.state._live.get(name)
        if found is not None:
            self.lineages[name] = found
        else:
            try:
                found = self.state.store.load(name)
            except UnknownGenomeError:
                if missing_ok:
                    return None
                raise
            self.lineages[name] = found
        return found

    def add(self, lineage: Lineage) -> None:
        self.lineages[lineage.name] = lineage

    def begin(self) -> None:
        """Remember how many events each lineage had before the next entry."""
        self._marks = {name: len(lin._pending_events) for name, lin in self.lineages.items()}

    def abort(self) -> None:
        """Drop the failed entry's events; keep the run's earlier ones and store them now.

        A lineage's in-memory state already moved with the dropped events, so after
        storing the earlier ones every lineage is loaded afresh from the store.
        """
        for name, lineage in list(self.lineages.items()):
            self.state._live.pop(name, None)
            mark = self._marks.get(name)
            if mark is None:
                del self.lineages[name]  # first touched (or registered) by the failed entry
            else:
                del lineage._pending_events[mark:]
        self.flush(keep=False)

    def skip(self, index: int, kind: str, genome: str | None, exc: BaseException) -> Applied:
        self.state.rejected_entries += 1
        logger.warning("ledger entry %d (%s) skipped on every node: %s", index, kind, exc)
        self.last_index = index
        return Applied(index, kind, genome, False, {}, {})

    def waiting(self, genome: str | None) -> dict[str, tuple[str, frozenset[str]]]:
        lineage = self.lineages.get(genome) if genome is not None else None
        return _waiting_of(lineage) if lineage is not None else {}

    def flush(self, *, keep: bool = True) -> None:
        """One transaction: every pending event of the run and the last index applied."""
        pending = [lineage for lineage in self.lineages.values() if lineage._pending_events]
        if pending or self.dirty:
            try:
                self.state.store.commit(
                    pending, (self.state.ledger, self.last_index) if self.dirty else None
                )
            except BaseException:
                self.state._live.clear()  # nothing was stored: in-memory lineages are ahead of the store
                raise
            self.state._applied = max(self.state._applied, self.last_index)
        if keep:
            self.state._live.update(self.lineages)
        self.lineages = {}
        self._marks = {}


def _waiting_of(lineage: Lineage) -> dict[str, tuple[str, frozenset[str]]]:
    return {pid: (p["version"], frozenset(p["votes"])) for pid, p in proposals_of(lineage).items()}


#: Head trees a node keeps for rebasing (a few genomes' recent versions).
TREE_CACHE = 64


_HANDLERS: dict[str, Callable[[LedgerState, _Run, dict[str, Any]], dict[str, str]]] = {
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
