"""The one seam between TARS and whatever Raft engine orders its ledger.

The design card named an engine that cannot be installed, so the rest of TARS talks to
this protocol only and the engine behind it can be swapped (see docs/consensus.md).
The module also holds the small message-transport protocol the engine needs from the
peer layer; :mod:`consensus.testing` has an in-process implementation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable


class Committed(NamedTuple):
    """One committed ledger entry, as every node sees it.

    ``index`` is the Raft log index: strictly increasing on a node and the same for the
    same entry on every node, so an applier can record it and skip what it already
    applied after a restart.  Indexes are not contiguous: Raft's own entries (leader
    no-ops, membership changes) take indexes too and are not delivered.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    term: int
    data: bytes


class Snapshot(NamedTuple):
    """The point up to which a node's state stands in for the log (Raft's snapshot).

    The log before ``index`` may be gone (compacted), so an application whose own state
    is behind ``index`` cannot catch up by replay: it must fetch that state from a peer
    (``source``, the leader that offered the snapshot, or ``None`` when a node restarts
    from its own snapshot file) before later entries are applied.  ``state`` is the
    small blob the application gave when the snapshot was taken (for the ledger: the
    member list); the bulk of the state travels over the application's own channel.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose
    term: int
    state: bytes
    source: str | None


class SnapshotApp(Protocol):
    """The application's side of log compaction.

    ``install_snapshot`` is called in log order, from the thread that calls the
    ``on_commit`` callback, when this node must stand on a snapshot: at start from its
    own snapshot file, or when a leader offers one because its log no longer reaches
    back to this node's.  The application fetches whatever it lacks (the ledger: the
    stored events, from a peer) and returns; the engine accepts the leader's snapshot
    once :meth:`applied_index` reports an index at or past it, and delivers the entries
    after it as usual.
    """

    def applied_index(self) -> int:
        """The highest index whose effects are durable (what a crash cannot lose)."""
        ...

    def snapshot_state(self, index: int) -> bytes:
        """The application's small state blob as of ``index`` (<= ``applied_index()``)."""
        ...

    def install_snapshot(self, snapshot: Snapshot) -> None: ...


@runtime_checkable
class Consensus(Protocol):
    """A replicated, ordered log of opaque entries."""

    def start(self) -> None:
        """Open the log, join the peers, begin delivering committed entries."""
        ...

    def propose(self, data: bytes, timeout: float = 5.0) -> int:
        """Block until ``data`` is committed (durable on a majority); return its index.

        Raises NotCommittedError on timeout or when no leader can be reached; its hint
        says whether the entry may still commit later.
        """
        ...

    def on_commit(self, callback: Callable[[Committed], None]) -> None:
        """Set (before start) the callback that receives every committed entry.

        It is called from one thread, in log order, from the first entry after every
        start: the applier skips indexes it has already applied.
        """
        ...

    def on_snapshot(
        self, app: SnapshotApp, *, compact_after: int = 10_000, keep: int = 1_000
    ) -> None:
        """Enable log compaction (before start); see :class:`SnapshotApp`.

        Once the log holds more than ``compact_after`` entries, the engine drops those
        before ``keep`` entries behind what ``app`` has durably applied (followers a
        little behind still catch up from the log, not from a snapshot).
        """
        ...

    def leader(self) -> str | None: ...

    def members(self) -> list[str]: ...

    def add_member(self, node_id: str, timeout: float = 10.0) -> None: ...

    def remove_member(self, node_id: str, timeout: float = 10.0) -> None: ...

    def status(self) -> dict[str, Any]:
        """node, role (leader/follower/candidate), term, leader, commit_index,
        last_applied, log_len, members, plus engine counters."""
        ...

    def stop(self) -> None: ...


class Frame(Protocol):
    """A received message: ``sender`` is the authenticated node id."""

    @property
    def sender(self) -> str: ...

    @property
    def channel(self) -> str: ...

    @property
    def body(self) -> Any: ...


class MessageTransport(Protocol):
    """What a consensus engine needs from the peer layer (runtime.transport offers it)."""

    def send(self, peer_id: str, channel: str, body: Any) -> bool: ...

    def subscribe(self, channel: str, handler: Callable[[Frame], None]) -> None: ...


def __getattr__(name: str) -> Any:
    # The in-memory hub moved to consensus.testing; old imports keep working.
    if name in ("LocalHub", "LocalTransport", "LocalFrame"):
        from consensus import testing

        return getattr(testing, name)
    raise AttributeError(f"module 'consensus.interface' has no attribute {name!r}")
