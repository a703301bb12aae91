"""Reliable streams as a pure state machine: numbers, acks, sync, retransmission, order.

No socket, no thread, no clock: the transport feeds frames in (and the time, where it
matters) and does what comes back — deliver these bodies, acknowledge this, (re)send
those frames.  One :class:`TxStream` per (peer, channel) on the sending side, one
:class:`RxStream` per (sender, channel) on the receiving side.

The protocol (the ident of a ``rel`` frame is ``[epoch, seq, first_unacked]``, of an
``ack`` ``[epoch, last_delivered]``):

* the sender numbers its frames from 0 per stream and stamps each with the lowest
  number still unacknowledged, so the receiver knows that everything below it was
  delivered before (by this or an earlier incarnation of the receiver);
* the receiver delivers each number once and in order, drops what it already
  delivered (a duplicate), and holds what comes early, up to bounds in frames (per
  stream) and in bytes (per sender, an :class:`RxBudget` its streams share), until the
  gap is filled; what it cannot hold is counted and dropped, and the sender retransmits
  it, since it was never acknowledged;
* a receiver that meets a stream it does not know (it restarted, or the sender did:
  a new epoch) is not *synced*: it holds what comes and acknowledges ``None``, and the
  sender answers with a ``seq == -1`` frame saying where the stream stands, so frames a
  previous incarnation already delivered are not delivered again;
* acknowledgements are cumulative; the sender retransmits what was last sent more than
  an interval ago, except right after an ack advanced (the receiver is working through
  what it has: resending then would only pile duplicates on a busy node).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

DUPLICATE, HELD, DELIVER, SYNCED = range(4)
"""What :meth:`RxStream.receive` did with a frame (see there)."""

NOTHING: Any = object()
""":meth:`RxStream.next_ready` when the next number has not arrived."""


class TxStream:
    """Sender side of one stream: ``[seq, body, last_sent]`` entries not yet acknowledged.

    ``prefix`` is opaque here (the transport keeps its packed frame head in it), and so
    is ``body``: a stream never looks inside what it numbers.  Its size is handed in with
    it, so the stream can bound the bytes it keeps (``unacked_bytes``) without knowing
    what the body is.
    """

    __slots__ = ("next_seq", "prefix", "progress", "sizes", "unacked", "unacked_bytes")

    def __init__(self, prefix: bytes = b"") -> None:
        self.next_seq = 0
        self.prefix = prefix
        self.unacked: deque[list[Any]] = deque()
        self.sizes: deque[int] = deque()  # the size of each unacked entry, in step
        self.unacked_bytes = 0
        self.progress = False  # acks advanced since the last retransmit tick

    def first_unacked(self) -> int:
        """The number the receiver may take everything below as delivered."""
        return int(self.unacked[0][0]) if self.unacked else self.next_seq

    def push(
        self, body: Any, limit: int, size: int = 0, max_bytes: int | None = None
    ) -> list[Any] | None:
        """Number ``body`` and keep it until acknowledged; None when it would not fit.

        It does not fit when ``limit`` entries wait already, or when its ``size`` would take
        the bytes waiting past ``max_bytes``; an empty stream takes any one body, so a
        bound smaller than a frame slows a stream down but never stops it.
        """
        if len(self.unacked) >= limit:
            return None
        if max_bytes is not None and self.unacked and self.unacked_bytes + size > max_bytes:
            return None
        entry = [self.next_seq, body, 0.0]
        self.next_seq += 1
        self.unacked.append(entry)
        self.sizes.append(size)
        self.unacked_bytes += size
        return entry

    def refusal(self, limit: int) -> str:
        """Why :meth:`push` refused: ``"frames"`` (``limit`` entries wait) or ``"bytes"``."""
        return "frames" if len(self.unacked) >= limit else "bytes"

    def ident(self, epoch: int, entry: list[Any]) -> list[int]:
        """The ident of the ``rel`` frame that carries ``entry`` now."""
        return [epoch, entry[0], self.first_unacked()]

    def sync_ident(self, epoch: int) -> list[int]:
        """The ident of the answer to a sync request: where the stream stands."""
        return [epoch, -1, self.first_unacked()]

    def on_ack(self, acked: Any) -> bool:
        """Take an acknowledgement; True when it asks for a sync (the receiver lost track).

        Everything up to ``acked`` (an int) is done with; anything that is neither an int
        nor None is ignored.
        """
        if acked is None:
            return True
        if type(acked) is int:
            unacked, sizes = self.unacked, self.sizes
            while unacked and unacked[0][0] <= acked:
                unacked.popleft()
                self.unacked_bytes -= sizes.popleft()
                self.progress = True
        return False

    def due(self, now: float, interval: float) -> Iterator[list[Any]]:
        """The entries to send again at ``now``, oldest first (taken lazily: stop any time).

        None on the tick right after acks advanced (that skip is used up here); the
        caller stamps each entry it sends (``entry[2] = now``).
        """
        if self.progress:
            self.progress = False
            return
        latest = now - interval
        for entry in self.unacked:
            if entry[2] <= latest:
                yield entry


class RxBudget:
    """The bytes one sender's early frames may take, shared by all its streams.

    A peer chooses the numbers it sends, so it can send frames far beyond a gap that it
    never fills; without a bound in bytes, ``limit`` frames of up to ``max_frame`` each
    (10,000 x 8 MiB by default) could be held per stream, never freed.  ``held`` is what
    its streams hold now; ``refused_frames`` and ``refused_bytes`` count the early frames
    refused because a stream held ``limit`` frames, or because this budget was spent.
    """

    __slots__ = ("held", "max_bytes", "refused_bytes", "refused_frames")

    def __init__(self, max_bytes: int | None = None) -> None:
        self.max_bytes = max_bytes  # None: no bound in bytes
        self.held = 0
        self.refused_frames = 0
        self.refused_bytes = 0


class RxStream:
    """Receiver side of one stream: the next number expected and the frames held early."""

    __slots__ = ("budget", "buffer", "epoch", "expected", "limit", "sizes", "synced")

    def __init__(self, epoch: int, limit: int, budget: RxBudget | None = None) -> None:
        self.epoch = epoch
        self.limit = limit  # frames held out of order at most; beyond, they are resent
        self.budget = RxBudget() if budget is None else budget  # bytes, shared per sender
        self.expected = 0
        self.synced = False
        self.buffer: dict[int, Any] = {}
        self.sizes: dict[int, int] = {}  # the size of each held body, as handed in

    def receive(self, seq: int, first_unacked: int, body: Any, size: int = 0) -> int:
        """Take one frame (``size``: its bytes, counted against the budget if it is held).

        Returns ``DUPLICATE`` (delivered before: drop it), ``HELD`` (kept, or dropped
        when a bound is reached, for later: the refusal is counted in the budget),
        ``DELIVER`` (``body`` is next: deliver it, then what :meth:`next_ready` gives) or
        ``SYNCED`` (a sync answer: deliver what :meth:`next_ready` gives).
        """
        if seq < 0:  # the answer to our sync request: this is where the stream stands
            if not self.synced or first_unacked > self.expected:
                self._skip_to(first_unacked)
                self.synced = True
            return SYNCED
        if not self.synced:  # keep it until the sender says where the stream starts
            self._hold(seq, body, size)
            return HELD
        if first_unacked > self.expected:  # all below it was delivered (and acked) before
            self._skip_to(first_unacked)
        if seq < self.expected:
            return DUPLICATE
        if seq > self.expected:
            self._hold(seq, body, size)
            return HELD
        self.expected += 1
        return DELIVER

    def next_ready(self) -> Any:
        """The next body in order if it was held, counted as delivered; else NOTHING."""
        body = self.buffer.pop(self.expected, NOTHING)
        if body is not NOTHING:
            self.budget.held -= self.sizes.pop(self.expected)
            self.expected += 1
        return body

    def ack(self) -> list[Any]:
        """The ident of the acknowledgement: ``[epoch, last delivered]`` or a sync request."""
        return [self.epoch, self.expected - 1 if self.synced else None]

    def held_bytes(self) -> int:
        """The bytes this stream holds now (its part of the budget's ``held``)."""
        return sum(self.sizes.values())

    def release(self) -> None:
        """Drop everything held and give its bytes back (the stream is being replaced)."""
        self.budget.held -= sum(self.sizes.values())
        self.buffer.clear()
        self.sizes.clear()

    def _hold(self, seq: int, body: Any, size: int) -> None:
        buffer = self.buffer
        if seq in buffer:
            return  # held already: the first copy stays
        budget = self.budget
        if len(buffer) >= self.limit:
            budget.refused_frames += 1
        elif budget.max_bytes is not None and budget.held + size > budget.max_bytes:
            budget.refused_bytes += 1
        else:
            buffer[seq] = body
            self.sizes[seq] = size
            budget.held += size

    def _skip_to(self, first_unacked: int) -> None:
        self.expected = first_unacked
        buffer, sizes, budget = self.buffer, self.sizes, self.budget
        for old in [s for s in buffer if s < first_unacked]:
            del buffer[old]
            budget.held -= sizes.pop(old)


def rx_stream(
    streams: dict[Any, RxStream],
    key: Any,
    epoch: int,
    limit: int,
    budget: RxBudget | None = None,
) -> RxStream:
    """The receiving stream for ``key``: a new one if unknown or from another epoch.

    A new epoch means the sender restarted: its numbers start again, and the new stream
    is not synced until the sender says where it stands.  What the old stream held is
    released from its budget.
    """
    stream = streams.get(key)
    if stream is None or stream.epoch != epoch:
        if stream is not None:
            stream.release()
        stream = streams[key] = RxStream(epoch, limit, budget)
    return stream
