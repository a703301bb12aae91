"""pysyncobj 0.3.17 behind :class:`~consensus.interface.Consensus`, hardened.

pysyncobj is a correct, maintained Raft core, but out of the box it pickles every
message, keeps its log in an mmap flushed only at shutdown, compacts by pickling the
whole object in a forked child and runs networking, Raft and user callbacks on one
thread.  The engine keeps its Raft core and replaces everything around it, one room
each (docs/consensus.md):

* :mod:`consensus._pysyncobj` — the only module that touches pysyncobj's private state
  and patches it (journal creation, restricted unpickling of its membership commands);
* :mod:`consensus.journal` — CRC'd msgpack records, fsync before any message leaves;
* :mod:`consensus.wire` — pysyncobj's messages as whitelisted msgpack on channel
  ``"raft"``; our entries are ``TAG + data`` commands pysyncobj stores but never reads;
* :mod:`consensus.prevote` — pre-vote, pure, and :mod:`consensus.campaign` — its I/O;
  :mod:`consensus.requests` — the request queue; :mod:`consensus.compaction` —
  compaction and snapshot offers; :mod:`consensus.delivery` — the thread that calls
  ``on_commit``; :mod:`consensus.status` — what ``status()`` answers;
* here — the driver thread (drain inbound frames, submit requests, pre-vote, tick the
  core, collect what it applied, compact, publish the status) and the public API.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensus import membership, status
from consensus._pysyncobj import Core
from consensus.campaign import Campaign
from consensus.compaction import Compaction
from consensus.delivery import Delivery
from consensus.interface import Committed, Frame, MessageTransport, SnapshotApp
from consensus.journal import CrcJournal
from consensus.prevote import would_vote
from consensus.requests import (
    BATCH_BYTES,
    MAX_ENTRY_BYTES,
    Request,
    RequestQueue,
    check_size,
    not_committed,
)
from consensus.timers import RaftTimers, Timers
from consensus.wire import CHANNEL, TAG, RaftNode, _RaftWire
from evolution.errors import ConfigError, ConsensusError, NotCommittedError

__all__ = ["MAX_ENTRY_BYTES", "RaftEngine", "RaftTimers", "Timers", "would_vote"]

logger = logging.getLogger(__name__)


class RaftEngine:
    """:class:`~consensus.interface.Consensus` on pysyncobj (see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        transport: MessageTransport,
        peers: list[str],
        journal_path: Path,
        timers: Timers | None = None,
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
        self._core: Core | None = None
        self._journal: CrcJournal | None = None
        self._wire: _RaftWire | None = None
        #: ``check(sender, data)`` of entries peers forward to this node as leader (set
        #: before start): the ledger refuses one whose author is not its sender
        self.command_check: Callable[[str, bytes], bool] | None = None
        self._inbound: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._calls: deque[Callable[[], None]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._requests = RequestQueue(self._locate, self._wake.set, self._timers.heartbeat)
        self._applier = Delivery(node_id, self._stopping)
        self._compaction = Compaction(node_id, self._journal_path, self._applier.put)
        self._started = False
        self._stopped = False
        self._driver: threading.Thread | None = None
        self._delivered = 0
        self._role = 0
        self._removed = False
        self._tick_errors = 0
        self._campaign = Campaign(node_id, self._timers.election_min)
        self._snapshot: dict[str, Any] = {}

    # ---- lifecycle ------------------------------------------------------------------

    def on_commit(self, callback: Callable[[Committed], None]) -> None:
        if self._started:
            raise ConsensusError(
                f"on_commit called after start on node {self.node_id}",
                hint="set the commit callback before start(); entries are delivered from "
                "the first index after every start",
            )
        self._applier.callback = callback

    def on_snapshot(
        self, app: SnapshotApp, *, compact_after: int = 10_000, keep: int = 1_000
    ) -> None:
        if self._started:
            raise ConsensusError(
                f"on_snapshot called after start on node {self.node_id}",
                hint="register the snapshot application before start()",
            )
        self._compaction.enable(app, compact_after, keep)
        self._applier.app = app

    def start(self) -> None:
        if self._started:
            raise ConsensusError(
                f"Raft engine {self.node_id} was already started",
                hint="an engine starts once; build a new RaftEngine on the same journal to restart",
            )
        journal = CrcJournal(self._journal_path)
        try:
            self._delivered = self._compaction.load(journal)
            members = {p: RaftNode(p) for p in self._peers if p != self.node_id}
            wire = _RaftWire(
                self._transport, members, journal.sync, self._timers.removed_grace, journal
            )
            core = Core(
                RaftNode(self.node_id),
                list(members.values()),
                journal,
                wire,
                self._timers,
                dump_file=self._compaction.path,
                deserialize=self._compaction.deserialize,
                on_state_changed=self._on_state_changed,
                batch_bytes=BATCH_BYTES,
            )
        except BaseException:
            journal.close()
            raise
        self._journal, self._wire, self._core = journal, wire, core
        wire.on_pre_vote = functools.partial(self._campaign.on_message, core, wire)
        wire.on_snapshot_offer = self._on_snapshot_offer
        wire.holding = self._compaction.holding
        wire.command_check = self.command_check
        wire.connect_all()
        self._publish()
        self._transport.subscribe(CHANNEL, self._on_frame)
        self._started = True
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
        self._applier.stop()
        self._requests.interrupt_all()

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
                self._drain_inbound(wire)
                while self._calls:
                    self._calls.popleft()()
                wire.expire()
                self._requests.hand_over(core.apply, has_leader=core.leader is not None)
                try:
                    self._campaign.gate(core, wire)
                    core.tick()
                except Exception:
                    self._tick_errors += 1
                    logger.exception("raft %s: tick failed", self.node_id)
                self._collect_applied()
                self._maybe_compact(core)
                self._publish()
                self._requests.answer_completed()
        finally:
            with contextlib.suppress(Exception):
                self._collect_applied()
            self._requests.answer_completed()
            core.destroy()
            self._publish()

    def _drain_inbound(self, wire: _RaftWire) -> None:
        while True:
            try:
                sender, body = self._inbound.get_nowait()
            except queue.Empty:
                return
            try:
                wire.deliver(sender, body)
            except Exception:
                self._tick_errors += 1
                logger.exception("raft %s: handling a message from %s failed", self.node_id, sender)

    def _locate(self, command: bytes) -> int:
        """The index of ``command``, which pysyncobj is applying right now."""
        core, journal = self._core, self._journal
        assert core is not None and journal is not None
        index = core.last_applied + 1
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

    def _collect_applied(self) -> None:
        core, journal = self._core, self._journal
        assert core is not None and journal is not None
        applied = core.last_applied
        if applied <= self._delivered:
            return
        for command in self._applier.collect(journal, self._delivered, applied):
            self._note_membership(command)
        self._delivered = applied

    def _note_membership(self, command: bytes) -> None:
        change = membership.parse(command)
        if change is not None and change[1] == self.node_id:
            self._removed = change[0] == "rem"
            if self._removed:
                logger.warning(
                    "raft %s: this node was removed from the swarm; stop it", self.node_id
                )

    def _maybe_compact(self, core: Core) -> None:
        journal = self._journal
        assert journal is not None
        self._compaction.maybe_compact(core, journal)

    @property
    def _compactions(self) -> int:
        return self._compaction.compactions

    def _on_snapshot_offer(self, node: RaftNode, message: dict[str, Any]) -> None:
        wire = self._wire
        assert wire is not None
        installed = self._compaction.on_offer(wire, node, message)
        self._delivered = max(self._delivered, installed)

    def _publish(self) -> None:
        core, journal, wire = self._core, self._journal, self._wire
        if core is None or journal is None or wire is None:
            return
        self._snapshot = status.running(
            self.node_id,
            role=self._role,
            core=core,
            journal=journal,
            wire=wire,
            applier=self._applier,
            compaction=self._compaction,
            pre_vote=self._campaign.state,
            removed=self._removed,
            live=not self._stopping.is_set(),
            tick_errors=self._tick_errors,
        )

    # ---- public API -------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._started or self._stopped:
            raise ConsensusError(
                f"Raft engine {self.node_id} is not running",
                hint="call start() first (an engine cannot be restarted: build a new one)",
            )

    def _no_commit(self, what: str, request: Request, timeout: float) -> NotCommittedError:
        snap = self._snapshot
        members = snap.get("members", [])
        return not_committed(what, request, timeout, self.node_id, snap.get("leader"), members)

    def propose(self, data: bytes, timeout: float = 5.0) -> int:
        self._require_running()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ConsensusError(
                f"propose expects bytes, got {type(data).__name__}",
                hint="encode the ledger entry (msgpack) before proposing it",
            )
        data = bytes(data)
        check_size(data, self._transport, self.node_id)
        request = self._requests.submit(TAG + data, timeout, retry_denied=False)
        if request.state == Request.DONE:
            return request.index
        raise self._no_commit(f"proposal of {len(data)} bytes", request, timeout)

    def _change_membership(self, kind: str, node_id: str, timeout: float) -> None:
        request = self._requests.submit(
            membership.command(kind, node_id), timeout, retry_denied=True
        )
        if request.state != Request.DONE:
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
        if node_id == self.leader() and node_id != self.node_id:
            raise ConsensusError(
                f"cannot remove {node_id!r} from {self.node_id}: it is the leader",
                hint=f"call remove_member({node_id!r}) on {node_id} itself (it hands "
                "leadership over first), or stop it and retry once another leader is "
                "elected",
            )
        while True:
            if node_id == self.node_id and node_id == self.leader():
                membership.hand_over(
                    self.node_id,
                    self._request_transfer,
                    self.leader,
                    deadline=deadline,
                    settle=self._timers.election_max,
                    poll=self._timers.tick,
                )
            try:
                self._change_membership("rem", node_id, max(0.0, deadline - time.monotonic()))
                return
            except NotCommittedError:
                # a loaded machine can elect the old leader again between the hand-over and
                # the request (the new one's heartbeats came late): hand over once more
                if node_id != self.leader() or time.monotonic() >= deadline:
                    raise

    def _request_transfer(self, done: threading.Event) -> None:
        self._calls.append(functools.partial(self._transfer, done))
        self._wake.set()

    def _transfer(self, done: threading.Event) -> None:
        core = self._core
        assert core is not None
        core.transfer_leadership(lambda _res, _err: done.set())

    def leader(self) -> str | None:
        leader = self._snapshot.get("leader")
        return leader if isinstance(leader, str) else None

    def members(self) -> list[str]:
        members = self._snapshot.get("members")
        return list(members) if isinstance(members, list) else sorted(self._peers)

    def status(self) -> dict[str, Any]:
        if not self._snapshot:
            return status.stopped(self.node_id, self._peers)
        return dict(self._snapshot)
