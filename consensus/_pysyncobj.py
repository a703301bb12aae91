"""Everything of pysyncobj 0.3.17 below its public API, in one module.

pysyncobj's Raft core is sound, but the engine needs state it does not publish (the
election deadline, the raw term, the log tail), its protected transport callbacks, its
dump-file protocol to install a snapshot, and two process-wide patches (journal
creation, in-log unpickling).  All of that lives here, behind :class:`Core` (the Raft
core as the engine sees it) and :class:`WireBase` (the transport side), so an upgrade of
pysyncobj is checked in one file.  :data:`PRIVATE_NAMES` lists every private name used
below; ``tests/test_pysyncobj_adapter.py`` fails the day the pinned version lacks one.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import pickle
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import pysyncobj.pickle as pso_pickle
import pysyncobj.syncobj as pso_syncobj
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import FAIL_REASON
from pysyncobj.node import Node
from pysyncobj.transport import Transport

from consensus.journal import CrcJournal
from evolution.errors import ConsensusError

if TYPE_CHECKING:
    from runtime.config import Timers

__all__ = [
    "FAIL_REASON",
    "MEMBERSHIP_COMMAND",
    "NO_OP_COMMAND",
    "PRIVATE_NAMES",
    "Core",
    "Node",
    "PrivateName",
    "WireBase",
    "install_patches",
    "safe_load",
    "safe_loads",
]


class PrivateName(NamedTuple):
    """One name pysyncobj does not publish: on a class, on its instances, or a module global."""

    owner: str  # "SyncObj", "Transport", "PipeNotifier" or "pysyncobj.syncobj"
    name: str
    on: Literal["class", "instance", "module"]


#: Every private or protected name of pysyncobj this module reads, calls or replaces.
PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName("pysyncobj.syncobj", "createJournal", "module"),
    PrivateName("pysyncobj.syncobj", "pickle", "module"),
    PrivateName("pysyncobj.syncobj", "monotonicTime", "module"),
    PrivateName("pysyncobj.syncobj", "_RAFT_STATE", "module"),
    PrivateName("pysyncobj.syncobj", "_COMMAND_TYPE", "module"),
    PrivateName("SyncObj", "_applyCommand", "class"),
    PrivateName("SyncObj", "_getLeader", "class"),
    PrivateName("SyncObj", "_SyncObj__generateRaftTimeout", "class"),
    PrivateName("SyncObj", "_SyncObj__getCurrentLogIndex", "class"),
    PrivateName("SyncObj", "_SyncObj__getCurrentLogTerm", "class"),
    PrivateName("SyncObj", "_SyncObj__deleteEntriesTo", "class"),
    PrivateName("SyncObj", "_SyncObj__raftState", "instance"),
    PrivateName("SyncObj", "_SyncObj__selfNode", "instance"),
    PrivateName("SyncObj", "_SyncObj__raftCurrentTerm", "instance"),
    PrivateName("SyncObj", "_SyncObj__raftElectionDeadline", "instance"),
    PrivateName("SyncObj", "_SyncObj__transferInProgress", "instance"),
    PrivateName("SyncObj", "_SyncObj__pipeNotifier", "instance"),
    PrivateName("PipeNotifier", "_PipeNotifier__pipeR", "instance"),
    PrivateName("PipeNotifier", "_PipeNotifier__pipeW", "instance"),
    PrivateName("Transport", "_onMessageReceived", "class"),
    PrivateName("Transport", "_onNodeConnected", "class"),
    PrivateName("Transport", "_onNodeDisconnected", "class"),
    PrivateName("Transport", "_onReadonlyNodeConnected", "class"),
    PrivateName("Transport", "_onReadonlyNodeDisconnected", "class"),
)

_LEADER = pso_syncobj._RAFT_STATE.LEADER
#: Type bytes of pysyncobj's own log commands (its Raft no-op and membership change);
#: pysyncobj skips, never unpickles, a command of any other type when applying.
NO_OP_COMMAND: int = pso_syncobj._COMMAND_TYPE.NO_OP
MEMBERSHIP_COMMAND: int = pso_syncobj._COMMAND_TYPE.MEMBERSHIP


# ---- restricted unpickling (pysyncobj's membership commands are pickles) ---------------


class _SafeUnpickler(pickle.Unpickler):
    """Allows plain data only: lists, tuples, str, int, bytes (protocol 2 needs
    ``_codecs.encode`` to rebuild bytes).  Any other global is refused, so an entry or
    message cannot make us import or call anything."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in {("_codecs", "encode"), ("codecs", "encode")}:
            return codecs.encode
        raise pickle.UnpicklingError(f"pickled global {module}.{name} refused")


def safe_loads(data: bytes) -> Any:
    """Unpickle pysyncobj's own plain-data pickles; refuses every global."""
    return _SafeUnpickler(io.BytesIO(pso_pickle.to_bytes(data)), encoding="latin1").load()


def safe_load(file: Any) -> Any:
    """:func:`safe_loads` from a file object."""
    return _SafeUnpickler(file, encoding="latin1").load()


# ---- process-wide patches -------------------------------------------------------------

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


def install_patches() -> None:
    """Route pysyncobj's journal creation and in-log unpickling through our code.

    Idempotent and process-wide: the journal hook only acts on our tokens; the restricted
    unpickler applies to every SyncObj in the process (plain pysyncobj users whose
    replicated methods take only plain data keep working).
    """
    with _patch_lock:
        pso_syncobj.createJournal = _create_journal
        pso_syncobj.pickle = _pickle_shim


class _SyncObj(SyncObj):  # type: ignore[misc]
    """The Raft core, without replicated methods: our entries bypass them."""


def _never_serialize(file_name: str, data: Any) -> None:
    """pysyncobj's serializer hook: compaction is the driver's job, never pysyncobj's."""
    raise ConsensusError("pysyncobj tried to compact the log by itself")


# ---- the transport side -----------------------------------------------------------------


class WireBase(Transport):  # type: ignore[misc]
    """pysyncobj's ``Transport`` with its protected callbacks under public names."""

    def received(self, node: Node, message: dict[str, Any]) -> None:
        """Hand one decoded message to the core."""
        self._onMessageReceived(node, message)

    def connected(self, node: Node) -> None:
        self._onNodeConnected(node)

    def disconnected(self, node: Node) -> None:
        self._onNodeDisconnected(node)

    def readonly_connected(self, node: Node) -> None:
        """Replicate to ``node`` without counting it as a voter."""
        self._onReadonlyNodeConnected(node)

    def readonly_disconnected(self, node: Node) -> None:
        self._onReadonlyNodeDisconnected(node)

    def heartbeat(self, node: Node, term: int) -> None:
        """What a leader's empty append_entries does: leader known, election timer reset,
        commit index untouched."""
        self.received(node, {"type": "append_entries", "term": term, "commit_index": 0})

    def install_dump(self, node: Node, blob: bytes, term: int, commit_index: int) -> None:
        """Make the core install ``blob`` as its dump file (pysyncobj's snapshot transfer).

        pysyncobj receives a dump as ``serialized`` chunks ``(data, is_first, is_last)``
        of append_entries and loads it (through the configured deserializer) on the last
        one; the whole blob goes in the first chunk, the commit index with the last.
        """
        head = {"type": "append_entries", "term": term}
        self.received(node, {**head, "commit_index": 0, "serialized": (blob, True, False)})
        self.received(
            node, {**head, "commit_index": commit_index, "serialized": (b"", False, True)}
        )


# ---- the core ---------------------------------------------------------------------------


class Core:
    """The Raft core as the engine drives it: one tick at a time, from one thread."""

    def __init__(
        self,
        node: Node,
        others: list[Node],
        journal: CrcJournal,
        wire: WireBase,
        timers: Timers,
        *,
        dump_file: Path,
        deserialize: Callable[[str], tuple[Any, Any, list[Node]]],
        on_state_changed: Callable[[int, int], None],
        batch_bytes: int,
    ) -> None:
        install_patches()
        token = f"{_JOURNAL_PREFIX}{id(journal)}:{journal.path}"
        with _patch_lock:
            _pending_journals[token] = journal
        conf = SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=batch_bytes,
            dynamicMembershipChange=True,
            raftMinTimeout=timers.election_min,
            raftMaxTimeout=timers.election_max,
            appendEntriesPeriod=timers.heartbeat,
            leaderFallbackTimeout=timers.fallback,
            connectionTimeout=max(3.5, timers.election_max),
            journalFile=token,
            # pysyncobj never compacts by itself (the engine does); the dump file is our
            # manifest, shipped to followers that are too far behind
            fullDumpFile=str(dump_file),
            serializer=_never_serialize,
            deserializer=deserialize,
            logCompactionMinEntries=2**62,
            logCompactionMinTime=1e12,
            logCompactionBatchSize=batch_bytes,
            useFork=False,
            commandsWaitLeader=True,
            onStateChanged=on_state_changed,
        )
        try:
            self._core = _SyncObj(node, others, conf=conf, nodeClass=type(node), transport=wire)
        except BaseException:
            with _patch_lock:
                _pending_journals.pop(token, None)
            raise

    # -- what the engine reads --

    @property
    def term(self) -> int:
        return int(self._core.raftCurrentTerm)

    @property
    def commit_index(self) -> int:
        return int(self._core.raftCommitIndex)

    @property
    def last_applied(self) -> int:
        return int(self._core.raftLastApplied)

    @property
    def is_leader(self) -> bool:
        return bool(self._core._SyncObj__raftState == _LEADER)

    @property
    def leader(self) -> Node | None:
        return self._core._getLeader()

    @property
    def others(self) -> list[Node]:
        """The other voting members."""
        return list(self._core.otherNodes)

    def last_log(self) -> tuple[int, int]:
        """(term, index) of the last log entry, Raft's "up to date" order."""
        core = self._core
        return (int(core._SyncObj__getCurrentLogTerm()), int(core._SyncObj__getCurrentLogIndex()))

    def election_due(self) -> bool:
        """Whether the core would campaign at its next tick (a follower or candidate whose
        election timer ran out, not in a leadership transfer)."""
        core = self._core
        if core._SyncObj__raftState == _LEADER or core._SyncObj__selfNode is None:
            return False
        # pysyncobj's deadlines are on its own clock (CLOCK_MONOTONIC_RAW on Linux).
        if core._SyncObj__raftElectionDeadline >= pso_syncobj.monotonicTime():
            return False
        return not core._SyncObj__transferInProgress

    # -- what the engine does --

    def restart_election_timer(self) -> None:
        """A fresh random election timeout from now, as after hearing a leader."""
        core = self._core
        core._SyncObj__raftElectionDeadline = (
            pso_syncobj.monotonicTime() + core._SyncObj__generateRaftTimeout()
        )

    def campaign_now(self) -> None:
        """Let the next tick start an election."""
        self._core._SyncObj__raftElectionDeadline = 0.0

    def apply(self, command: bytes, callback: Callable[[Any, int], None]) -> None:
        """Submit a command (forwarded to the leader); ``callback(result, FAIL_REASON)``."""
        self._core._applyCommand(command, callback)

    def delete_entries_to(self, index: int) -> None:
        """Drop the log before Raft index ``index`` (it becomes the log's first entry)."""
        self._core._SyncObj__deleteEntriesTo(index)

    def tick(self) -> None:
        self._core.doTick(0.0)

    def transfer_leadership(self, done: Callable[[Any, Any], None]) -> None:
        self._core.transferLeadership(callback=done)

    def destroy(self) -> None:
        """Destroy the core and close the notification pipe pysyncobj leaks."""
        core = self._core
        try:
            core.destroy()
        finally:
            notifier = getattr(core, "_SyncObj__pipeNotifier", None)
            for name in ("_PipeNotifier__pipeR", "_PipeNotifier__pipeW"):
                fd = getattr(notifier, name, None)
                if isinstance(fd, int):
                    with contextlib.suppress(OSError):
                        os.close(fd)
