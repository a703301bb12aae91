"""A node's side of the ledger: committed entries applied to its store, in order, in runs.

The engine hands committed entries over one by one on its own thread; this applier
queues them and applies as many as are waiting in one store transaction on a thread of
its own, so a backlog (a node catching up) costs one commit per run and the engine's
thread never waits on the disk.  It is also the engine's ``SnapshotApp``: a snapshot
to stand on arrives through the same queue, so it is handled in log order with the
entries, and a store behind it fetches the state from a peer before going on.

Whoever proposes an entry waits here until this node's store has applied it
(:meth:`Applier.propose`), so the caller reads its own write; an unsigned entry this
node wrote is signed with the node's key first (the evolver and voter need no key).

Local damage halts, it is never skipped.  :class:`LedgerState` skips an entry that fails
(recording it as applied, the same way on every node), which is right only when the
failure is the entry's: the same bytes fail the same way on every healthy store.  A node
applies through :class:`GuardedLedgerState`, which asks first whether the failure could
be this node's own (its store, its disk): a store or integrity error always is, and any
other failure inside a handler (a domain refusal, a missing version, a ``KeyError``) is
checked against the store (:meth:`GenomeStore.check`) — if the store is damaged the
failure is local, and the node halts with the reason and the repair (``tars node
repair``) while the other nodes apply the entry.  A malformed entry (``ConsensusError``:
it does not decode or fails its checks) is the entry's on every node and stays skipped.
``docs/consensus.md`` ("Local damage: skipped or halted") has the whole table.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from consensus import transfer
from consensus._run import Run
from consensus.approvals import Approvers
from consensus.authors import signed_by
from consensus.entries import authored_by
from consensus.interface import Committed, Snapshot
from consensus.journal import REPAIR
from consensus.ledger import LEDGER, Applied, LedgerState, heads_of
from consensus.signing import Signer
from events.store import GenomeStore
from evolution.errors import ConsensusError, StoreError

# The node's log lines keep the one logger name they had when all of this was node.py.
log = logging.getLogger("tars.node")

#: What stamps ledger entries: returns the time as seconds since the epoch.  A node is
#: handed one (``time.time`` by default); tests hand in a fixed one.
Clock = Callable[[], float]

#: Committed entries a node applies in one store transaction when it has a backlog.
APPLY_BATCH = 256


class LocalDamage(StoreError):
    """An entry failed on this node for a reason of its own: halt, do not skip.

    Raised out of :meth:`GuardedLedgerState.apply_batch` before anything of the entry is
    recorded, so the entry is applied (not skipped) once the node is repaired.
    """

    def __init__(self, index: int, kind: str, reason: str) -> None:
        super().__init__(f"ledger entry {index} ({kind}) failed on this node alone: {reason}")
        self.index, self.kind, self.reason = index, kind, reason


class GuardedLedgerState(LedgerState):
    """The node's state machine: a failure that may be this node's own halts it.

    ``check`` is the store's check (``GenomeStore.check`` with the node's mark); it raises
    when the store is damaged.
    """

    def __init__(
        self,
        store: GenomeStore,
        members: Sequence[str],
        *,
        check: Callable[[], object],
        ledger: str = LEDGER,
        keys: Mapping[str, bytes] | None = None,
        approval: Approvers | None = None,
    ) -> None:
        super().__init__(store, members, ledger=ledger, keys=keys, approval=approval)
        self.check = check

    def _skip(
        self, run: Run, index: int, kind: str, genome: str | None, exc: BaseException
    ) -> Applied:
        reason = local_reason(exc, self.check)
        if reason is not None:
            raise LocalDamage(index, kind, reason) from exc
        return super()._skip(run, index, kind, genome, exc)


def local_reason(exc: BaseException, check: Callable[[], object]) -> str | None:
    """Why a failed entry is this node's own fault, or None when it fails alike everywhere.

    A store error (integrity, I/O, a read the database refused) is local by nature.  A
    ``ConsensusError`` is the entry's: it does not decode, fails its checks, or contradicts
    history every node shares.  Anything else (a domain refusal, a missing version or
    genome, a decoding error inside a handler) is what a healthy store answers the same
    everywhere and what a damaged one answers alone: the store is checked to tell.
    """
    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, ConsensusError):
        return None
    try:
        check()
    except Exception as damage:
        return f"{type(exc).__name__}: {exc}, and the store check found: {damage}"
    return None


class Ledger(Protocol):
    """What the applier needs from the consensus engine (``RaftEngine`` offers it)."""

    def propose(self, data: bytes, timeout: float = 5.0) -> int: ...

    def leader(self) -> str | None: ...

    def members(self) -> list[str]: ...

    #: the leader's check of entries peers forward to it (``RaftEngine.command_check``)
    command_check: Callable[[str, bytes], bool] | None


class Applier:
    """Applies the ledger to this node's store; the engine's commit callback and SnapshotApp.

    ``on_applied`` hears what every run applied (after waiters are woken), for the
    node's reactions such as queueing votes; ``stage`` hears what the applier is doing
    when it is worth showing in ``status`` (fetching state, halted).
    """

    def __init__(
        self,
        node_id: str,
        state: LedgerState,
        store: GenomeStore,
        engine: Ledger,
        requester: transfer.Requester,
        stopping: threading.Event,
        *,
        on_applied: Callable[[list[Applied]], None],
        stage: Callable[[str], None],
        repair: str = REPAIR,
        signer: Signer | None = None,
    ) -> None:
        self.id = node_id
        self.state = state
        self.store = store
        self.engine = engine
        engine.command_check = authored_by  # a member forwards entries in its own name only
        self.requester = requester
        self.stopping = stopping
        self.on_applied = on_applied
        self.stage = stage
        #: the command that repairs this node, named when it halts
        self.repair = repair
        #: signs the entries this node authors (None: proposed as they come, in tests)
        self.signer = signer
        self._counts: dict[str, int] = {"adopted": 0, "rejected": 0, "refused_transfers": 0}
        #: why this node stopped applying the ledger (None while healthy)
        self.halted: str | None = None
        #: the last state transfer this node received (shown by `status`)
        self.last_transfer: transfer.Fetched | None = None
        self._changed = threading.Condition()
        self._applied = state.applied_index
        self._decided: dict[str, str] = {}
        self._commits: queue.Queue[Committed | Snapshot | None] = queue.Queue()
        self._held: Committed | Snapshot | None = None  # taken off the queue, due after the run
        self._thread: threading.Thread | None = None

    # -- the engine's side --

    def on_commit(self, committed: Committed) -> None:
        """The engine's applier hands entries over in order; ours applies them in runs."""
        self._commits.put(committed)

    def applied_index(self) -> int:
        return self.state.applied_index

    def snapshot_state(self, index: int) -> bytes:
        return self.state.snapshot_state(index)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """In log order with the entries: the apply loop stands on it before going on."""
        self._commits.put(snapshot)

    # -- lifecycle --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.id}-apply", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end once the entries already queued are handled; wake waiters.

        Call it after the engine has stopped, so no commit can follow the end marker.
        """
        self._commits.put(None)
        with self._changed:
            self._changed.notify_all()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    # -- waiting for the ledger --

    @property
    def applied(self) -> int:
        """The highest index this node's store has applied (or fetched)."""
        return self._applied

    @property
    def counters(self) -> dict[str, int]:
        """Decisions, refused transfers and refused signatures, as `status` shows them."""
        return {**self._counts, "refused_signatures": self.state.refused_signatures}

    def propose(self, data: bytes, timeout: float = 10.0) -> int:
        """Sign an entry of this node's, commit it and wait until this node's store has
        applied it."""
        index = self.engine.propose(signed_by(data, self.signer), timeout=timeout)
        self.wait_applied(index, timeout)
        return index

    def wait_applied(self, index: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._applied < index:
                left = deadline - time.monotonic()
                if left <= 0 or self.stopping.is_set():
                    raise ConsensusError(
                        f"{self.id}: ledger entry {index} committed but not applied within {timeout:.0f} s"
                    )
                self._changed.wait(left)

    def wait_decided(self, proposal: str, timeout: float) -> str | None:
        """``"adopt"`` or ``"reject"`` once the proposal is decided; None on timeout or stop."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while proposal not in self._decided:
                left = deadline - time.monotonic()
                if left <= 0 or self.stopping.is_set():
                    return None
                self._changed.wait(left)
            return self._decided[proposal]

    def known(self, genome: str, proposal: str) -> bool:
        """Whether the ledger holds this proposal, decided or still waiting for votes."""
        with self._changed:
            return proposal in self._decided or proposal in self.store.head(genome).proposals

    # -- the apply loop --

    def _next(self) -> Committed | Snapshot | None:
        if self._held is not None:
            first, self._held = self._held, None
            return first
        return self._commits.get()

    def _run(self, first: Committed) -> list[Committed]:
        """``first`` and the entries queued behind it, up to a snapshot or the end marker."""
        batch = [first]
        while len(batch) < APPLY_BATCH:
            try:
                more = self._commits.get_nowait()
            except queue.Empty:
                break
            if more is None or isinstance(more, Snapshot):
                self._held = more  # handled next, in order
                break
            batch.append(more)
        return batch

    def _loop(self) -> None:
        """Apply committed entries, as many as are waiting, in one store transaction.

        A store that cannot be written stops this node's applying (fail-stop): carrying
        on would record later indexes over a missing one.  A restart re-delivers from
        the journal and applies what is missing.
        """
        while True:
            first = self._next()
            if first is None:
                return
            if isinstance(first, Snapshot):
                if not self.halted:
                    self._stand_on(first)
                continue
            batch = self._run(first)
            if self.halted:
                continue
            try:
                results = self.state.apply_batch([(c.index, c.data) for c in batch])
            except Exception as exc:
                self._halt(batch, exc)
                continue
            self._after_apply(results, batch[-1].index)

    def _halt(self, batch: list[Committed], exc: Exception) -> None:
        """Fail-stop: nothing after the failed entry is applied until the node is restarted."""
        where = f"applying ledger entries {batch[0].index}–{batch[-1].index} failed"
        if isinstance(exc, LocalDamage):
            self.halted = (
                f"{where}: {exc}. It is not skipped: the other nodes apply it, so this node "
                f"stops applying until it is repaired: stop it and run `{self.repair}`"
            )
        else:
            hint = getattr(exc, "hint", None)
            self.halted = (
                f"{where}: {exc}" + (f" ({hint})" if hint else "") + "; fix the cause and restart "
                f"the node — if its store or journal is damaged, stop it and run `{self.repair}`"
            )
        log.critical("%s: %s", self.id, self.halted)
        self.stage("halted")

    def _after_apply(self, results: list[Applied], upto: int) -> None:
        with self._changed:
            self._applied = max(self._applied, upto)
            for applied in results:
                self._decided.update(applied.decided)
                for verdict in applied.decided.values():
                    self._counts["adopted" if verdict == "adopt" else "rejected"] += 1
            self._changed.notify_all()
        self.on_applied(results)

    # -- standing on a snapshot --

    def _stand_on(self, snapshot: Snapshot) -> None:
        """Reach the snapshot's index: from this store if it has it, else from a peer."""
        if self.state.applied_index >= snapshot.index:
            if snapshot.source is None:  # our own snapshot at start: its member list
                self.state.restore(snapshot.index, snapshot.state)
            return
        behind = self.state.applied_index
        log.warning(
            "%s: the ledger before index %d was compacted and this store is at %d: fetching the state from a peer",
            self.id,
            snapshot.index,
            behind,
        )
        self.stage(f"fetching state (index {snapshot.index})")
        why = None
        if heads_of(snapshot.state) is None:  # no peer's events could be checked against it
            why = "which names no committed chain heads (it predates checked state transfers)"
        elif not self._peers(snapshot):
            why = "and no peer can send the state"
        if why is not None:
            self.halted = (
                f"the store is at ledger index {behind}, behind this node's snapshot at "
                f"{snapshot.index}, {why}: restore the store from a backup, or move the journal "
                "and its .snap away to start a new ledger"
            )
            log.critical("%s: %s", self.id, self.halted)
            self.stage("halted")
            return
        self._fetch(snapshot)

    def _peers(self, snapshot: Snapshot) -> list[str]:
        """The peers to ask, likeliest first: the snapshot's sender, then the leader."""
        others = [m for m in self.engine.members() if m != self.id]
        leader = self.engine.leader()
        first = [p for p in (snapshot.source, leader) if p and p in others]
        return list(dict.fromkeys([*first, *others]))

    def _fetch(self, snapshot: Snapshot) -> None:
        progress = transfer.progress_reporter(self.id, self.stage)
        got = transfer.fetch_from_any(
            self.requester,
            self.state,
            lambda: self._peers(snapshot),
            snapshot.index,
            self.stopping,
            progress=progress,
            committed=snapshot.state,
            refused=lambda: self._counts.update(
                refused_transfers=self._counts["refused_transfers"] + 1
            ),
        )
        self.stage("idle")
        if self.state.applied_index < snapshot.index:
            # Stopping mid-fetch: the entries queued after the snapshot must not be applied
            # over the hole; the next start fetches again.
            self.halted = f"stopped before the state up to ledger index {snapshot.index} arrived"
            return
        if got is None:
            return
        self.last_transfer = got
        log.info("%s: %s", self.id, transfer.describe(got))
        with self._changed:
            self._applied = max(self._applied, got.index)
            self._changed.notify_all()
