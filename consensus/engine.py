"""pysyncobj 0.3.17 behind :class:`~consensus.interface.Consensus`, hardened.

pysyncobj is a correct, maintained Raft core, but out of the box it pickles every
message, keeps its log in an mmap flushed only at shutdown, compacts by pickling the
whole object in a forked child and runs networking, Raft and user callbacks on one
thread.  This module keeps its Raft core and replaces everything around it:

* **Journal** — :class:`consensus.journal.CrcJournal` (CRC'd msgpack records, fsync
  before any message leaves the node).  pysyncobj builds its journal with
  ``createJournal(conf.journalFile)`` imported into ``pysyncobj.syncobj``; we replace
  that name with a function that hands back the journal we opened when the "file name"
  is one of our registration tokens and defers to the original otherwise.
* **Wire** — :class:`consensus.wire._RaftWire` implements pysyncobj's ``Transport`` over our
  transport's ``send``/``subscribe`` on channel ``"raft"``.  Each message type is
  converted to a whitelisted msgpack dict and validated on the way in; nothing pickled
  is ever sent.  pysyncobj ships an entry larger than the batch size as chunks of its
  pickle ("transmission"): the wire reassembles them on the sending side and sends the
  entry as a plain append_entries; snapshot messages cannot occur (compaction is off)
  and would be refused.
* **Payloads** — our entries are ``TAG + data`` commands handed to ``_applyCommand``
  directly: pysyncobj stores and replicates them but, seeing an unknown command type,
  never unpickles them.  We read each applied entry back from the journal by its
  index.  Only pysyncobj's membership commands still pickle (``['add', id]``), and
  ``pysyncobj.syncobj.pickle`` is replaced by a shim whose ``loads`` refuses every global
  except ``_codecs.encode`` (protocol-2 bytes), so unpickling cannot run code.
* **Threads** — ``autoTick=False``; one driver thread drains inbound frames, submits
  proposals, ticks the core and then sleeps on a wake-up event; a separate applier
  thread calls ``on_commit`` so a slow store write never delays heartbeats.
* **Compaction** — pysyncobj never compacts on its own (its dump is a pickle of the
  whole object).  When the application registers :meth:`RaftEngine.on_snapshot`, the
  driver drops the log before a point the application has durably applied and writes a
  small msgpack manifest (:mod:`consensus.snapshot`) as pysyncobj's "full dump" file;
  pysyncobj ships that file to a follower whose log no longer overlaps, and the engine
  lets the follower install it only once its application has fetched the state up to
  that point from a peer (``install_snapshot``).  Batching is off, timers come from
  :class:`RaftTimers`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import queue
import threading
import time
import types
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysyncobj.pickle as pso_pickle
import pysyncobj.syncobj as pso_syncobj
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import FAIL_REASON

from consensus import snapshot
from consensus.interface import Committed, Frame, MessageTransport, Snapshot, SnapshotApp
from consensus.journal import CrcJournal
from consensus.wire import (
    _MEMBERSHIP,
    CHANNEL,
    TAG,
    RaftNode,
    _RaftWire,
    command_ok,
    safe_load,
    safe_loads,
)
from evolution.errors import ConfigError, ConsensusError, NotCommittedError

logger = logging.getLogger(__name__)

#: Largest payload :meth:`RaftEngine.propose` accepts (the ledger's own limit); lowered
#: to fit the transport's ``max_frame`` when it has one (see ``_max_entry``).
MAX_ENTRY_BYTES = 32 << 20
#: Soft cap of one append_entries message.  pysyncobj sends a single larger entry as
#: pickled chunks ("transmission"); :class:`_RaftWire` reassembles those locally and
#: sends the entry as one plain message instead, so no pickle reaches the wire.
_BATCH_BYTES = 1 << 20
_FRAME_OVERHEAD = 64 << 10


def _max_entry(transport: Any) -> int:
    """Largest entry whose append_entries always fits one transport frame.

    pysyncobj fills a message until it reaches the batch size, so one message carries up
    to a batch minus a byte plus one more entry; an entry that could push a message over
    the transport's frame limit would be dropped on every retry and stall that follower.
    """
    max_frame = getattr(transport, "max_frame", None)
    if not isinstance(max_frame, int):
        return MAX_ENTRY_BYTES
    return max(0, min(MAX_ENTRY_BYTES, max_frame - _BATCH_BYTES - _FRAME_OVERHEAD))


_ROLES = {0: "follower", 1: "candidate", 2: "leader"}
_REASONS = {
    getattr(FAIL_REASON, name): name.lower()
    for name in dir(FAIL_REASON)
    if not name.startswith("_") and isinstance(getattr(FAIL_REASON, name), int)
}
#: Failures after which the entry is certainly not in any log: safe to resubmit.
_RETRYABLE = {
    FAIL_REASON.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER,
    FAIL_REASON.NOT_LEADER,
    FAIL_REASON.DISCARDED,
}


@dataclass(frozen=True)
class RaftTimers:
    """Raft timing, in seconds.

    Defaults follow ANCHORS.md: election 0.15–0.3 s with a 30 ms heartbeat failed over
    in 0.29 s on these machines.  ``leader_fallback`` is how long a leader keeps leading
    without hearing from a majority (pysyncobj's default of 30 s would let a partitioned
    leader accept doomed proposals for half a minute); ``tick`` is the driver's longest
    sleep when nothing wakes it; ``removed_grace`` is how long a removed node is still
    sent the log, so that it learns its removal committed.
    """

    election_min: float = 0.15
    election_max: float = 0.30
    heartbeat: float = 0.03
    leader_fallback: float = 0.6
    tick: float = 0.005
    removed_grace: float = 3.0

    def __post_init__(self) -> None:
        problems = []
        if self.heartbeat <= 0 or self.tick <= 0 or self.removed_grace < 0:
            problems.append("heartbeat and tick must be positive, removed_grace not negative")
        if self.election_min <= 3 * self.heartbeat:
            problems.append("election_min must exceed 3 × heartbeat")
        if self.election_max <= self.election_min:
            problems.append("election_max must exceed election_min")
        if self.leader_fallback <= self.heartbeat:
            problems.append("leader_fallback must exceed heartbeat")
        if problems:
            raise ConfigError(
                f"invalid Raft timers {self}: " + "; ".join(problems),
                hint="e.g. RaftTimers(election_min=0.15, election_max=0.3, heartbeat=0.03)",
            )


# ---- process-wide patches of pysyncobj ------------------------------------------------

_JOURNAL_PREFIX = "tars-crc-journal:"
_pending_journals: dict[str, CrcJournal] = {}
_patch_lock = threading.Lock()
_original_create_journal = pso_syncobj.createJournal


def _create_journal(journalFile: Any = None) -> Any:  # noqa: N803 (pysyncobj's name)
    if isinstance(journalFile, str) and journalFile.startswith(_JOURNAL_PREFIX):
        with _patch_lock:
            return _pending_journals.pop(journalFile)
    return _original_create_journal(journalFile)


_pickle_shim = types.ModuleType("pysyncobj_restricted_pickle")
_pickle_shim.dumps = pso_pickle.dumps  # type: ignore[attr-defined]
_pickle_shim.dump = pso_pickle.dump  # type: ignore[attr-defined]
_pickle_shim.to_bytes = pso_pickle.to_bytes  # type: ignore[attr-defined]
_pickle_shim.loads = safe_loads  # type: ignore[attr-defined]
_pickle_shim.load = safe_load  # type: ignore[attr-defined]


def install_pysyncobj_patches() -> None:
    """Route pysyncobj's journal creation and in-log unpickling through our code.

    Idempotent and process-wide: the journal hook only acts on our tokens; the restricted
    unpickler applies to every SyncObj in the process (plain pysyncobj users whose
    replicated methods take only plain data keep working).
    """
    with _patch_lock:
        pso_syncobj.createJournal = _create_journal
        pso_syncobj.pickle = _pickle_shim


class _Core(SyncObj):  # type: ignore[misc]
    """The Raft core, without replicated methods: our entries bypass them."""


def _never_serialize(file_name: str, data: Any) -> None:
    """pysyncobj's serializer hook: compaction is the driver's job, never pysyncobj's."""
    raise ConsensusError("pysyncobj tried to compact the log by itself")


# ---- requests ---------------------------------------------------------------------------


_RAFT_LEADER = pso_syncobj._RAFT_STATE.LEADER


def would_vote(
    *,
    candidate_term: int,
    candidate_log: tuple[int, int],
    term: int,
    log: tuple[int, int],
    leader_alive: bool,
) -> bool:
    """Raft's pre-vote answer: could this candidate win my vote, and do I need a new leader?

    Yes only if its proposed term is ahead of mine, its log (last term, last index) is at
    least as up to date as mine, and I have not heard from a live leader within the
    minimum election timeout.  Pure, so the rule is tested without a cluster.
    """
    return candidate_term > term and candidate_log >= log and not leader_alive


class _PreVote:
    """One node's pre-vote round: the term it would campaign for and who said yes."""

    def __init__(self) -> None:
        self.term = 0
        self.grants: set[str] = set()
        self.cleared_until = 0.0
        self.rounds = 0
        self.granted = 0
        self.refused = 0

    def start(self, term: int, me: str) -> None:
        self.term, self.grants = term, {me}
        self.rounds += 1

    def won(self, voters: int) -> bool:
        return len(self.grants) * 2 > voters

    def answered(self, granted: bool) -> None:
        if granted:
            self.granted += 1
        else:
            self.refused += 1


class _Request:
    """One proposal or membership change, from the caller to the driver and back."""

    QUEUED, SUBMITTED, DONE, FAILED, ABANDONED = range(5)

    def __init__(self, command: bytes, deadline: float, retry_denied: bool) -> None:
        self.command = command
        self.deadline = deadline
        self.retry_denied = retry_denied
        self.not_before = 0.0
        self.state = self.QUEUED
        self.index = 0
        self.error: int | None = None
        self.lock = threading.Lock()
        self.event = threading.Event()


class RaftEngine:
    """:class:`~consensus.interface.Consensus` on pysyncobj (see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        transport: MessageTransport,
        peers: list[str],
        journal_path: Path,
        timers: RaftTimers | None = None,
    ) -> None:
        if node_id not in peers:
            raise ConfigError(
                f"node {node_id!r} is not in its own peer list {sorted(peers)}",
                hint="peers lists every member of the swarm, this node included",
            )
        if len(set(peers)) != len(peers):
            raise ConfigError(
                f"duplicate node ids in peers {sorted(peers)}",
                hint="give every node a unique id in cluster.yml",
            )
        self.node_id = node_id
        self._transport = transport
        self._peers = list(peers)
        self._journal_path = Path(journal_path)
        self._timers = timers or RaftTimers()
        self._callback: Callable[[Committed], None] | None = None
        self._core: _Core | None = None
        self._journal: CrcJournal | None = None
        self._wire: _RaftWire | None = None
        self._inbound: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._requests: deque[_Request] = deque()
        self._calls: deque[Callable[[], None]] = deque()
        self._waiting: list[_Request] = []
        self._completed: list[_Request] = []
        self._live: set[_Request] = set()
        self._live_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._started = False
        self._stopped = False
        self._driver: threading.Thread | None = None
        self._applier: threading.Thread | None = None
        self._apply_queue: queue.SimpleQueue[Committed | Snapshot | None] = queue.SimpleQueue()
        self._delivered = 0
        self._role = 0
        self._removed = False
        self._tick_errors = 0
        self._pre_vote = _PreVote()
        self._apply_error: str | None = None
        self._applied_by_callback = 0
        self._snapshot: dict[str, Any] = {}
        self._app: SnapshotApp | None = None
        self._compact_after = 0
        self._keep = 0
        self._snapshot_path = self._journal_path.with_name(self._journal_path.name + ".snap")
        self._snapshot_index = 0
        self._offer: bytearray | None = None
        self._install_wanted = 0
        self._offer_wanted = 0  # a leader's snapshot this node is fetching the state of
        self._compactions = 0
        self._installs = 0
        self._offers_deferred = 0

    # ---- lifecycle ------------------------------------------------------------------

    def on_commit(self, callback: Callable[[Committed], None]) -> None:
        if self._started:
            raise ConsensusError(
                f"on_commit called after start on node {self.node_id}",
                hint="set the commit callback before start(); entries are delivered from "
                "the first index after every start",
            )
        self._callback = callback

    def on_snapshot(
        self, app: SnapshotApp, *, compact_after: int = 10_000, keep: int = 1_000
    ) -> None:
        if self._started:
            raise ConsensusError(
                f"on_snapshot called after start on node {self.node_id}",
                hint="register the snapshot application before start()",
            )
        if keep < 2 or compact_after <= keep:
            raise ConfigError(
                f"compaction of node {self.node_id}: compact_after ({compact_after}) must "
                f"exceed keep ({keep}), and keep must be at least 2",
                hint="e.g. compact_after=10000, keep=1000",
            )
        self._app, self._compact_after, self._keep = app, compact_after, keep

    def _load_snapshot(self, journal: CrcJournal) -> None:
        """At start: stand on this node's own snapshot file, if the log was compacted."""
        first = journal[0][1] if len(journal) else 1
        if not self._snapshot_path.exists():
            if first > 1:
                raise ConsensusError(
                    f"Raft journal {self._journal_path} starts at index {first}, but its "
                    f"snapshot file {self._snapshot_path} is missing",
                    hint="the log before that index is gone; move the journal away and let "
                    "this node rejoin as a new member (it then fetches a snapshot)",
                )
            return
        manifest = snapshot.read(self._snapshot_path, command_ok)
        self._finish_compaction(journal, manifest)
        if self._app is None:
            raise ConsensusError(
                f"{self._snapshot_path}: this node's log was compacted, but nothing was "
                "registered with on_snapshot to restore the state before it",
                hint="call engine.on_snapshot(app) before start()",
            )
        self._snapshot_index = manifest.index
        self._delivered = manifest.index
        self._install_wanted = manifest.index
        self._apply_queue.put(Snapshot(manifest.index, manifest.term, manifest.state, None))

    def _finish_compaction(self, journal: CrcJournal, manifest: snapshot.Manifest) -> None:
        """Drop the log's head a crash left behind the snapshot, as the compaction meant to.

        The snapshot file is written before the journal is cut; a crash in between leaves
        a log that still starts before the snapshot's two entries, and pysyncobj, seeing
        its first entries differ from them, would clear the whole log, entries after the
        snapshot included (acknowledged ones, which Raft must never lose).
        """
        if not len(journal):
            return
        position = manifest.index - 1 - journal[0][1]
        if position <= 0 or position + 1 >= len(journal):
            return
        if (
            journal[position] == manifest.entries[0]
            and journal[position + 1] == manifest.entries[1]
        ):
            logger.warning(
                "raft %s: finishing a compaction a crash interrupted (log cut before index %d)",
                self.node_id,
                manifest.index - 1,
            )
            journal.deleteEntriesTo(position)

    def _deserialize(self, file_name: str) -> tuple[Any, Any, list[RaftNode]]:
        """pysyncobj's custom deserializer: the last two entries and the membership."""
        manifest = snapshot.read(Path(file_name), command_ok)
        return (
            manifest.entries[1],
            manifest.entries[0],
            [RaftNode(m) for m in manifest.members],
        )

    def start(self) -> None:
        if self._started:
            raise ConsensusError(
                f"Raft engine {self.node_id} was already started",
                hint="an engine starts once; build a new RaftEngine on the same journal to restart",
            )
        install_pysyncobj_patches()
        journal = CrcJournal(self._journal_path)
        try:
            self._load_snapshot(journal)
        except BaseException:
            journal.close()
            raise
        token = f"{_JOURNAL_PREFIX}{id(journal)}:{self._journal_path}"
        with _patch_lock:
            _pending_journals[token] = journal
        members = {p: RaftNode(p) for p in self._peers if p != self.node_id}
        wire = _RaftWire(
            self._transport, members, journal.sync, self._timers.removed_grace, journal
        )
        t = self._timers
        conf = SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=_BATCH_BYTES,
            dynamicMembershipChange=True,
            raftMinTimeout=t.election_min,
            raftMaxTimeout=t.election_max,
            appendEntriesPeriod=t.heartbeat,
            leaderFallbackTimeout=t.leader_fallback,
            connectionTimeout=max(3.5, t.election_max),
            journalFile=token,
            # pysyncobj never compacts by itself (the driver does, see _maybe_compact);
            # the dump file is our manifest, shipped to followers that are too far behind
            fullDumpFile=str(self._snapshot_path),
            serializer=_never_serialize,
            deserializer=self._deserialize,
            logCompactionMinEntries=2**62,
            logCompactionMinTime=1e12,
            logCompactionBatchSize=_BATCH_BYTES,
            useFork=False,
            commandsWaitLeader=True,
            onStateChanged=self._on_state_changed,
        )
        try:
            core = _Core(
                RaftNode(self.node_id),
                list(members.values()),
                conf=conf,
                nodeClass=RaftNode,
                transport=wire,
            )
        except BaseException:
            with _patch_lock:
                _pending_journals.pop(token, None)
            journal.close()
            raise
        self._journal, self._wire, self._core = journal, wire, core
        wire.on_pre_vote = self._on_pre_vote
        wire.on_snapshot_offer = self._on_snapshot_offer
        wire.holding = self._holding
        wire.connect_all()
        self._publish()
        self._transport.subscribe(CHANNEL, self._on_frame)
        self._started = True
        self._applier = threading.Thread(
            target=self._apply_loop, name=f"raft-apply-{self.node_id}", daemon=True
        )
        self._driver = threading.Thread(
            target=self._drive, name=f"raft-driver-{self.node_id}", daemon=True
        )
        self._applier.start()
        self._driver.start()

    def stop(self) -> None:
        """Stop ticking, make the journal durable, deliver what is already queued."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._wake.set()
        unsubscribe = getattr(self._transport, "unsubscribe", None)
        if callable(unsubscribe):
            with contextlib.suppress(Exception):
                unsubscribe(CHANNEL)
        if self._driver is not None:
            self._driver.join()
        self._apply_queue.put(None)
        if self._applier is not None:
            self._applier.join()
        with self._live_lock:
            live = list(self._live)
        for request in live:
            self._finish(request, FAIL_REASON.REQUEST_DENIED, stopping=True)

    def _shutdown_core(self) -> None:
        core = self._core
        if core is None:
            return
        try:
            core.destroy()
        finally:
            notifier = getattr(core, "_SyncObj__pipeNotifier", None)
            for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
                fd = getattr(notifier, name, None)
                if isinstance(fd, int):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    # ---- driver thread ----------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        if self._stopping.is_set():
            return
        self._inbound.put((frame.sender, frame.body))
        self._wake.set()

    def _on_state_changed(self, old: int, new: int) -> None:
        self._role = new

    def _drive(self) -> None:
        core, wire = self._core, self._wire
        assert core is not None and wire is not None
        try:
            while not self._stopping.is_set():
                self._wake.wait(self._timers.tick)
                self._wake.clear()
                while True:
                    try:
                        sender, body = self._inbound.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        wire.deliver(sender, body)
                    except Exception:
                        self._tick_errors += 1
                        logger.exception(
                            "raft %s: handling a message from %s failed", self.node_id, sender
                        )
                while self._calls:
                    self._calls.popleft()()
                wire.expire()
                self._submit_requests()
                try:
                    self._pre_vote_gate(core, wire)
                    core.doTick(0.0)
                except Exception:
                    self._tick_errors += 1
                    logger.exception("raft %s: tick failed", self.node_id)
                self._collect_applied()
                self._maybe_compact(core)
                self._publish()
                while self._completed:
                    self._finish(self._completed.pop(), None)
        finally:
            with contextlib.suppress(Exception):
                self._collect_applied()
            while self._completed:
                self._finish(self._completed.pop(), None)
            self._shutdown_core()
            self._publish()

    # ---- pre-vote (Raft thesis §9.6; etcd's PreVote) ----------------------------------

    def _pre_vote_gate(self, core: Any, wire: _RaftWire) -> None:
        """Hold an election pysyncobj is about to start until a majority says it could win.

        pysyncobj campaigns as soon as its election timer runs out, bumping its term; a
        node cut off from the others (or just added, or restarted behind) would then come
        back with a higher term and depose a healthy leader.  So when the timer runs out
        the engine first asks every voter, without touching any term, whether it *would*
        vote; only on a majority of yes does the election go ahead.  A leadership
        transfer (``timeout_now`` from the leader) campaigns at once, as Raft intends.
        """
        state = core._SyncObj__raftState
        if state == _RAFT_LEADER or core._SyncObj__selfNode is None:
            return
        # pysyncobj's deadlines are on CLOCK_MONOTONIC_RAW, not time.monotonic's clock.
        raw_now = pso_syncobj.monotonicTime()
        if core._SyncObj__raftElectionDeadline >= raw_now or core._SyncObj__transferInProgress:
            return
        now = time.monotonic()
        pv = self._pre_vote
        if now < pv.cleared_until:  # a majority said yes: let this tick campaign
            pv.cleared_until = 0.0
            return
        core._SyncObj__raftElectionDeadline = raw_now + core._SyncObj__generateRaftTimeout()
        pv.start(core._SyncObj__raftCurrentTerm + 1, self.node_id)
        voters = wire.voters()
        if pv.won(len(voters) + 1):
            pv.cleared_until = now + self._timers.election_min
            core._SyncObj__raftElectionDeadline = 0.0
            return
        ask = {
            "type": "pre_vote",
            "term": pv.term,
            "last_log_index": core._SyncObj__getCurrentLogIndex(),
            "last_log_term": core._SyncObj__getCurrentLogTerm(),
        }
        for node in voters:
            wire.send(node, dict(ask))

    def _on_pre_vote(self, node: RaftNode, message: dict[str, Any]) -> None:
        core, wire = self._core, self._wire
        assert core is not None and wire is not None
        pv = self._pre_vote
        state = core._SyncObj__raftState
        if message["type"] == "pre_vote":
            heard = time.monotonic() - wire.leader_heard_at
            granted = would_vote(
                candidate_term=message["term"],
                candidate_log=(message["last_log_term"], message["last_log_index"]),
                term=core._SyncObj__raftCurrentTerm,
                log=(core._SyncObj__getCurrentLogTerm(), core._SyncObj__getCurrentLogIndex()),
                leader_alive=state == _RAFT_LEADER or heard < self._timers.election_min,
            )
            pv.answered(granted)
            wire.send(
                node, {"type": "pre_vote_response", "term": message["term"], "granted": granted}
            )
            return
        if state == _RAFT_LEADER or not message["granted"] or message["term"] != pv.term:
            return
        pv.grants.add(node.id)
        if pv.won(len(wire.voters()) + 1) and not pv.cleared_until:
            pv.cleared_until = time.monotonic() + self._timers.election_min
            core._SyncObj__raftElectionDeadline = 0.0

    def _submit_requests(self) -> None:
        core = self._core
        assert core is not None
        while self._requests:
            self._waiting.append(self._requests.popleft())
        if not self._waiting:
            return
        now = time.monotonic()
        has_leader = core._getLeader() is not None
        keep: list[_Request] = []
        for request in self._waiting:
            with request.lock:
                if request.state != _Request.QUEUED:
                    continue
                if not has_leader or now < request.not_before:
                    keep.append(request)
                    continue
                request.state = _Request.SUBMITTED
            core._applyCommand(request.command, self._result_callback(request))
        self._waiting = keep

    def _result_callback(self, request: _Request) -> Callable[[Any, int], None]:
        def on_result(_result: Any, error: int) -> None:
            if error == FAIL_REASON.SUCCESS:
                # pysyncobj calls this while applying the entry, before it advances
                # raftLastApplied: the entry's index is the next one.
                request.index = self._locate(request.command)
                # Answered after this tick's delivery and status snapshot, so a caller
                # that returns from propose() sees its own entry in status()/members().
                self._completed.append(request)
            elif error in _RETRYABLE or (
                error == FAIL_REASON.REQUEST_DENIED and request.retry_denied
            ):
                with request.lock:
                    if request.state == _Request.SUBMITTED and time.monotonic() < request.deadline:
                        request.state = _Request.QUEUED
                        request.not_before = time.monotonic() + self._timers.heartbeat
                        self._requests.append(request)
                        return
                self._finish(request, error)
            else:
                self._finish(request, error)

        return on_result

    def _locate(self, command: bytes) -> int:
        core, journal = self._core, self._journal
        assert core is not None and journal is not None
        index = int(core.raftLastApplied) + 1
        entry = journal[index - journal[0][1]]
        if entry[1] != index or entry[0] != command:  # pragma: no cover - pysyncobj changed
            # Raising here would wedge pysyncobj's apply loop; report and carry on.
            logger.error(
                "raft %s: applied entry %d is not the proposed one; pysyncobj's apply "
                "order changed (pin pysyncobj==0.3.17)",
                self.node_id,
                index,
            )
        return index

    def _finish(self, request: _Request, error: int | None, stopping: bool = False) -> None:
        with request.lock:
            if request.state in (_Request.DONE, _Request.FAILED):
                return
            request.state = _Request.DONE if error is None else _Request.FAILED
            request.error = -1 if stopping else error
        with self._live_lock:
            self._live.discard(request)
        request.event.set()

    def _collect_applied(self) -> None:
        core, journal = self._core, self._journal
        assert core is not None and journal is not None
        applied = int(core.raftLastApplied)
        if applied <= self._delivered:
            return
        journal.sync()
        first = journal[0][1]
        for index in range(self._delivered + 1, applied + 1):
            command, entry_index, term = journal[index - first]
            if entry_index != index:  # pragma: no cover - journal invariant
                raise ConsensusError(
                    f"raft {self.node_id}: journal position holds index {entry_index}, "
                    f"expected {index}",
                    hint="the journal is inconsistent; move it away and rejoin",
                )
            if command[:1] == TAG:
                self._apply_queue.put(Committed(index, term, command[1:]))
            elif command[0] == _MEMBERSHIP:
                self._note_membership(command)
        self._delivered = applied

    def _note_membership(self, command: bytes) -> None:
        try:
            kind, node_id = safe_loads(command[1:])
        except Exception:  # pragma: no cover - validated on entry
            return
        if node_id == self.node_id:
            self._removed = kind == "rem"
            if self._removed:
                logger.warning(
                    "raft %s: this node was removed from the swarm; stop it", self.node_id
                )

    def _publish(self) -> None:
        core, journal, wire = self._core, self._journal, self._wire
        if core is None or journal is None or wire is None:
            return
        leader = core._getLeader()
        members = sorted(n.id for n in core.otherNodes)
        if not self._removed:
            members = sorted([*members, self.node_id])
        self._snapshot = {
            "node": self.node_id,
            "role": _ROLES.get(self._role, str(self._role)),
            "term": int(core.raftCurrentTerm),
            "leader": leader.id if leader is not None else None,
            "commit_index": int(core.raftCommitIndex),
            "last_applied": int(core.raftLastApplied),
            "log_len": len(journal),
            "members": members,
            "removed": self._removed,
            "running": not self._stopping.is_set(),
            "delivered": self._applied_by_callback,
            "journal_syncs": journal.syncs,
            "dropped_frames": wire.dropped_unknown + wire.dropped_invalid,
            "refused_messages": wire.refused,
            "skipped_resent_entries": wire.skipped_entries,
            "tick_errors": self._tick_errors,
            "apply_error": self._apply_error,
            "pre_vote_rounds": self._pre_vote.rounds,
            "pre_votes_granted": self._pre_vote.granted,
            "pre_votes_refused": self._pre_vote.refused,
            "log_start": journal[0][1] if len(journal) else 0,
            "snapshot_index": self._snapshot_index,
            "compactions": self._compactions,
            "snapshots_installed": self._installs,
            "snapshot_offers_deferred": self._offers_deferred,
            "held_append_entries": wire.held,
        }

    # ---- compaction and snapshots (driver thread) ----------------------------------

    def _maybe_compact(self, core: Any) -> None:
        """Drop the log before ``keep`` entries behind what the application made durable.

        The manifest is written (and fsynced) before the journal loses anything, so a
        crash in between leaves a snapshot whose entries are still in the log, and the
        restart finishes the cut (:meth:`_finish_compaction`).
        """
        app, journal = self._app, self._journal
        if app is None or journal is None or len(journal) <= self._compact_after:
            return
        first = journal[0][1]
        upto = min(app.applied_index(), int(core.raftLastApplied)) - self._keep
        if upto <= first + 1:
            return
        prev, last = journal[upto - 1 - first], journal[upto - first]
        members = sorted([self.node_id, *(n.id for n in core.otherNodes)])
        try:
            data = snapshot.encode([prev, last], members, app.snapshot_state(upto))
            snapshot.write(self._snapshot_path, data)
        except Exception:
            self._tick_errors += 1
            logger.exception(
                "raft %s: writing the snapshot at index %d failed; the log is kept",
                self.node_id,
                upto,
            )
            return
        core._SyncObj__deleteEntriesTo(upto - 1)
        self._snapshot_index = upto
        self._compactions += 1
        logger.info(
            "raft %s: log compacted up to index %d (%d entries left, snapshot %d bytes)",
            self.node_id,
            upto,
            len(journal),
            len(data),
        )

    def _holding(self) -> bool:
        """Whether the application is still fetching the state of a leader's snapshot."""
        app = self._app
        return app is not None and self._offer_wanted > app.applied_index()

    def _on_snapshot_offer(self, node: RaftNode, message: dict[str, Any]) -> None:
        """A leader whose log no longer reaches ours offers its snapshot, chunk by chunk.

        pysyncobj would install it at once, but the application's state must reach the
        snapshot's index first, or the entries after it would be applied on top of a
        hole.  So the engine collects the chunks, checks the manifest, and either hands
        it to pysyncobj (the application already has that state) or asks the
        application to fetch the state and meanwhile treats the offer as a heartbeat
        (leader known, election timer reset, commit index untouched).  The leader
        offers again at its next heartbeat.
        """
        wire = self._wire
        assert wire is not None
        heartbeat = {"type": "append_entries", "term": message["term"], "commit_index": 0}
        chunk = message["serialized"]
        if chunk is None:
            wire._onMessageReceived(node, heartbeat)
            return
        data, first, last = chunk
        if first:
            self._offer = bytearray()
        if self._offer is None:  # a chunk without its start: wait for the next offer
            wire._onMessageReceived(node, heartbeat)
            return
        self._offer += data
        if len(self._offer) > snapshot.MAX_BYTES:
            self._offer = None
            wire.dropped_invalid += 1
            return
        if not last:
            wire._onMessageReceived(node, heartbeat)
            return
        blob, self._offer = bytes(self._offer), None
        try:
            manifest = snapshot.decode(blob, f"leader {node.id}", command_ok)
        except ConsensusError as exc:
            wire.dropped_invalid += 1
            logger.warning("raft %s: dropped a snapshot offer: %s", self.node_id, exc)
            return
        app = self._app
        if app is None:
            logger.error(
                "raft %s: %s offers a snapshot at index %d but compaction is not enabled here",
                self.node_id,
                node.id,
                manifest.index,
            )
            return
        if app.applied_index() < manifest.index:
            self._offers_deferred += 1
            wire._onMessageReceived(node, heartbeat)
            self._offer_wanted = max(self._offer_wanted, manifest.index)
            if manifest.index > self._install_wanted:
                self._install_wanted = manifest.index
                self._apply_queue.put(
                    Snapshot(manifest.index, manifest.term, manifest.state, node.id)
                )
            return
        # The application has the state: install the snapshot as the log's new start.
        head = {"type": "append_entries", "term": message["term"]}
        wire._onMessageReceived(
            node, {**head, "commit_index": 0, "serialized": (blob, True, False)}
        )
        wire._onMessageReceived(
            node,
            {**head, "commit_index": message["commit_index"], "serialized": (b"", False, True)},
        )
        self._delivered = max(self._delivered, manifest.index)
        self._snapshot_index = manifest.index
        self._installs += 1
        logger.info(
            "raft %s: installed %s's snapshot at index %d", self.node_id, node.id, manifest.index
        )

    # ---- applier thread ---------------------------------------------------------------

    def _install(self, item: Snapshot) -> None:
        app = self._app
        assert app is not None
        try:
            app.install_snapshot(item)
        except Exception as exc:
            if self._stopping.is_set():
                return
            self._apply_error = f"snapshot at index {item.index}: {exc!r}"
            logger.exception(
                "raft %s: installing the snapshot at index %d failed; delivery halted until restart",
                self.node_id,
                item.index,
            )

    def _apply_loop(self) -> None:
        while True:
            item = self._apply_queue.get()
            if item is None:
                return
            if self._apply_error is not None or self._callback is None:
                continue
            if isinstance(item, Snapshot):
                self._install(item)
                continue
            try:
                self._callback(item)
                self._applied_by_callback = item.index
            except Exception as exc:
                # Skipping an entry would fork this node's store from its peers: halt
                # delivery and say so; a restart re-delivers from the start.
                self._apply_error = f"index {item.index}: {exc!r}"
                logger.exception(
                    "raft %s: on_commit failed at index %d; delivery halted until restart",
                    self.node_id,
                    item.index,
                )

    # ---- public API -------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._started or self._stopped:
            raise ConsensusError(
                f"Raft engine {self.node_id} is not running",
                hint="call start() first (an engine cannot be restarted: build a new one)",
            )

    def _submit(self, command: bytes, timeout: float, retry_denied: bool) -> _Request:
        request = _Request(command, time.monotonic() + timeout, retry_denied)
        with self._live_lock:
            self._live.add(request)
        self._requests.append(request)
        self._wake.set()
        request.event.wait(timeout)
        with request.lock:
            if request.state == _Request.QUEUED:
                request.state = _Request.ABANDONED
        with self._live_lock:
            self._live.discard(request)
        return request

    def _no_commit(self, what: str, request: _Request, timeout: float) -> NotCommittedError:
        snap = self._snapshot
        members = snap.get("members", [])
        leader = snap.get("leader")
        where = f"leader is {leader}" if leader else f"no leader known on {self.node_id}"
        quorum = (
            f"a majority ({len(members) // 2 + 1} of {', '.join(members)}) must be running "
            "and reach each other"
        )
        if request.state == _Request.ABANDONED:
            return NotCommittedError(
                f"{what} on {self.node_id} was not committed within {timeout:g} s: it was "
                f"never handed to a leader ({where})",
                hint=f"it will not commit; retry once status() shows a leader — {quorum}",
            )
        if request.error == -1:
            return NotCommittedError(
                f"{what} on {self.node_id} was interrupted: the engine stopped",
                hint="it may still commit if a leader already had it; the commit callback "
                "of a running node will show it",
            )
        if request.error is None:
            return NotCommittedError(
                f"{what} on {self.node_id} was not committed within {timeout:g} s ({where})",
                hint=f"a leader had it, so it may still commit (make retries idempotent) — "
                f"{quorum}",
            )
        reason = _REASONS.get(request.error, str(request.error))
        maybe = request.error in (FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME)
        outcome = (
            "the leader changed while it was in flight, so it may still commit (make "
            "retries idempotent)"
            if maybe
            else "it did not commit; retry"
        )
        return NotCommittedError(
            f"{what} on {self.node_id} failed: {reason} ({where})",
            hint=f"{outcome} — {quorum}",
        )

    def propose(self, data: bytes, timeout: float = 5.0) -> int:
        self._require_running()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ConsensusError(
                f"propose expects bytes, got {type(data).__name__}",
                hint="encode the ledger entry (msgpack) before proposing it",
            )
        data = bytes(data)
        limit = _max_entry(self._transport)
        if len(data) > limit:
            raise ConsensusError(
                f"entry of {len(data)} bytes on {self.node_id} exceeds the ledger limit of "
                f"{limit} bytes (set by the transport's frame size)",
                hint="put bulk data (versions, snapshots) on the bulk-transfer channel and "
                "propose its hash",
            )
        request = self._submit(TAG + data, timeout, retry_denied=False)
        if request.state == _Request.DONE:
            return request.index
        raise self._no_commit(f"proposal of {len(data)} bytes", request, timeout)

    def _change_membership(self, kind: str, node_id: str, timeout: float) -> None:
        command = bytes([_MEMBERSHIP]) + pickle.dumps([kind, node_id], protocol=2)
        request = self._submit(command, timeout, retry_denied=True)
        if request.state != _Request.DONE:
            verb = "adding" if kind == "add" else "removing"
            raise self._no_commit(f"{verb} member {node_id!r}", request, timeout)

    def add_member(self, node_id: str, timeout: float = 10.0) -> None:
        """Add through the log; start the new node (peers = the new membership) first,
        and make sure the transport can reach it."""
        self._require_running()
        if not isinstance(node_id, str) or not node_id:
            raise ConfigError(f"invalid node id {node_id!r}", hint="node ids are non-empty strings")
        if node_id in self.members():
            return
        self._change_membership("add", node_id, timeout)

    def remove_member(self, node_id: str, timeout: float = 10.0) -> None:
        """Remove through the log.  pysyncobj cannot remove the current leader, so a
        leader removing itself first hands leadership to an up-to-date follower."""
        self._require_running()
        if node_id not in self.members():
            return
        deadline = time.monotonic() + timeout
        if node_id == self.leader():
            if node_id != self.node_id:
                raise ConsensusError(
                    f"cannot remove {node_id!r} from {self.node_id}: it is the leader",
                    hint=f"call remove_member({node_id!r}) on {node_id} itself (it hands "
                    "leadership over first), or stop it and retry once another leader is "
                    "elected",
                )
            self._hand_over_leadership(deadline)
        self._change_membership("rem", node_id, max(0.0, deadline - time.monotonic()))

    def _hand_over_leadership(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            done = threading.Event()
            self._calls.append(functools.partial(self._transfer, done))
            self._wake.set()
            done.wait(max(0.0, deadline - time.monotonic()))
            settle = time.monotonic() + self._timers.election_max
            while time.monotonic() < min(settle, deadline):
                leader = self.leader()
                if leader is not None and leader != self.node_id:
                    return
                time.sleep(self._timers.tick)
        raise NotCommittedError(
            f"leader {self.node_id} could not hand leadership over before removing itself",
            hint="no follower is up to date and reachable; retry when the others catch up",
        )

    def _transfer(self, done: threading.Event) -> None:
        core = self._core
        assert core is not None
        core.transferLeadership(callback=lambda _res, _err: done.set())

    def leader(self) -> str | None:
        leader = self._snapshot.get("leader")
        return leader if isinstance(leader, str) else None

    def members(self) -> list[str]:
        members = self._snapshot.get("members")
        return list(members) if isinstance(members, list) else sorted(self._peers)

    def status(self) -> dict[str, Any]:
        if not self._snapshot:
            return {
                "node": self.node_id,
                "role": "stopped",
                "term": 0,
                "leader": None,
                "commit_index": 0,
                "last_applied": 0,
                "log_len": 0,
                "members": sorted(self._peers),
                "running": False,
            }
        return dict(self._snapshot)
