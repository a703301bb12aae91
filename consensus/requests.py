"""The request queue: proposals and membership changes, from a caller to the driver and back.

A caller's thread enqueues a :class:`Request` and waits on it; the engine's driver thread
hands queued requests to the Raft core once a leader is known, resubmits those that
certainly reached no log (no leader yet, a non-leader, an overwritten entry) until their
deadline, and answers each exactly once.  A caller that gave up marks its request
abandoned before the driver took it, so it is never submitted late.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from consensus._pysyncobj import FAIL_REASON
from evolution.errors import ConsensusError, NotCommittedError

#: Largest payload ``RaftEngine.propose`` accepts (the ledger's own limit); lowered to
#: fit the transport's ``max_frame`` when it has one (see :func:`max_entry`).
MAX_ENTRY_BYTES = 32 << 20
#: Soft cap of one append_entries message.  pysyncobj sends a single larger entry as
#: pickled chunks ("transmission"); the wire reassembles those locally and sends the
#: entry as one plain message instead, so no pickle reaches the wire.
BATCH_BYTES = 1 << 20
_FRAME_OVERHEAD = 64 << 10

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
#: :attr:`Request.error` of a request the engine's stop interrupted.
STOPPED = -1


def max_entry(transport: Any) -> int:
    """Largest entry whose append_entries always fits one transport frame.

    pysyncobj fills a message until it reaches the batch size, so one message carries up
    to a batch minus a byte plus one more entry; an entry that could push a message over
    the transport's frame limit would be dropped on every retry and stall that follower.
    """
    max_frame = getattr(transport, "max_frame", None)
    if not isinstance(max_frame, int):
        return MAX_ENTRY_BYTES
    return max(0, min(MAX_ENTRY_BYTES, max_frame - BATCH_BYTES - _FRAME_OVERHEAD))


def check_size(data: bytes, transport: Any, node_id: str) -> None:
    """Refuse an entry too large for the ledger on this transport, saying where bulk goes."""
    limit = max_entry(transport)
    if len(data) > limit:
        raise ConsensusError(
            f"entry of {len(data)} bytes on {node_id} exceeds the ledger limit of "
            f"{limit} bytes (set by the transport's frame size)",
            hint="put bulk data (versions, snapshots) on the bulk-transfer channel and "
            "propose its hash",
        )


class Request:
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


class RequestQueue:
    """Requests between callers (:meth:`submit`) and the driver thread (the rest).

    ``locate(command)`` gives the index of the entry being applied (called by pysyncobj's
    success callback); ``wake()`` wakes the driver; a retried request waits
    ``retry_after`` seconds (a heartbeat) before it is submitted again.
    """

    def __init__(
        self, locate: Callable[[bytes], int], wake: Callable[[], None], retry_after: float
    ) -> None:
        self._locate = locate
        self._wake = wake
        self._retry_after = retry_after
        self._incoming: deque[Request] = deque()
        self._waiting: list[Request] = []
        self._completed: list[Request] = []
        self._live: set[Request] = set()
        self._live_lock = threading.Lock()

    # ---- caller side --------------------------------------------------------------------

    def submit(self, command: bytes, timeout: float, retry_denied: bool) -> Request:
        """Queue ``command`` and wait until it is answered or ``timeout`` passes."""
        request = Request(command, time.monotonic() + timeout, retry_denied)
        with self._live_lock:
            self._live.add(request)
        self._incoming.append(request)
        self._wake()
        request.event.wait(timeout)
        with request.lock:
            if request.state == Request.QUEUED:
                request.state = Request.ABANDONED
        with self._live_lock:
            self._live.discard(request)
        return request

    # ---- driver side --------------------------------------------------------------------

    def hand_over(
        self, apply: Callable[[bytes, Callable[[Any, int], None]], None], *, has_leader: bool
    ) -> None:
        """Give every request that is due to ``apply`` (the core's submit), once a leader
        is known; the others wait for a later tick."""
        while self._incoming:
            self._waiting.append(self._incoming.popleft())
        if not self._waiting:
            return
        now = time.monotonic()
        keep: list[Request] = []
        for request in self._waiting:
            with request.lock:
                if request.state != Request.QUEUED:
                    continue
                if not has_leader or now < request.not_before:
                    keep.append(request)
                    continue
                request.state = Request.SUBMITTED
            apply(request.command, self._result_callback(request))
        self._waiting = keep

    def _result_callback(self, request: Request) -> Callable[[Any, int], None]:
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
                    if request.state == Request.SUBMITTED and time.monotonic() < request.deadline:
                        request.state = Request.QUEUED
                        request.not_before = time.monotonic() + self._retry_after
                        self._incoming.append(request)
                        return
                self.finish(request, error)
            else:
                self.finish(request, error)

        return on_result

    def answer_completed(self) -> None:
        """Answer the requests that committed in this tick (after its status snapshot)."""
        while self._completed:
            self.finish(self._completed.pop(), None)

    def finish(self, request: Request, error: int | None, stopping: bool = False) -> None:
        with request.lock:
            if request.state in (Request.DONE, Request.FAILED):
                return
            request.state = Request.DONE if error is None else Request.FAILED
            request.error = STOPPED if stopping else error
        with self._live_lock:
            self._live.discard(request)
        request.event.set()

    def interrupt_all(self) -> None:
        """The engine stopped: answer every caller still waiting."""
        with self._live_lock:
            live = list(self._live)
        for request in live:
            self.finish(request, FAIL_REASON.REQUEST_DENIED, stopping=True)


def not_committed(
    what: str, request: Request, timeout: float, node_id: str, leader: Any, members: list[str]
) -> NotCommittedError:
    """The error for a request that did not commit, saying whether it still may."""
    where = f"leader is {leader}" if leader else f"no leader known on {node_id}"
    quorum = (
        f"a majority ({len(members) // 2 + 1} of {', '.join(members)}) must be running "
        "and reach each other"
    )
    if request.state == Request.ABANDONED:
        return NotCommittedError(
            f"{what} on {node_id} was not committed within {timeout:g} s: it was "
            f"never handed to a leader ({where})",
            hint=f"it will not commit; retry once status() shows a leader — {quorum}",
        )
    if request.error == STOPPED:
        return NotCommittedError(
            f"{what} on {node_id} was interrupted: the engine stopped",
            hint="it may still commit if a leader already had it; the commit callback "
            "of a running node will show it",
        )
    if request.error is None:
        return NotCommittedError(
            f"{what} on {node_id} was not committed within {timeout:g} s ({where})",
            hint=f"a leader had it, so it may still commit (make retries idempotent) — {quorum}",
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
        f"{what} on {node_id} failed: {reason} ({where})",
        hint=f"{outcome} — {quorum}",
    )
