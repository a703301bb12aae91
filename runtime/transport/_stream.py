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
  delivered (a duplicate), and holds what comes early, up to a bound, until the gap is
  filled (what it cannot hold is retransmitted later);
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
    is ``body``: a stream never looks inside what it numbers.
    """

    __slots__ = ("next_seq", "prefix", "progress", "unacked")

    def __init__(self, prefix: bytes = b"") -> None:
        self.next_seq = 0
        self.prefix = prefix
        self.unacked: deque[list[Any]] = deque()
        self.progress = False  # acks advanced since the last retransmit tick

    def first_unacked(self) -> int:
        """The number the receiver may take everything below as delivered."""
        return int(self.unacked[0][0]) if self.unacked else self.next_seq

    def push(self, body: Any, limit: int) -> list[Any] | None:
        """Number ``body`` and keep it until acknowledged; None when ``limit`` wait already."""
        if len(self.unacked) >= limit:
            return None
        entry = [self.next_seq, body, 0.0]
        self.next_seq += 1
        self.unacked.append(entry)
        return entry

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
            unacked = self.unacked
            while unacked and unacked[0][0] <= acked:
                unacked.popleft()
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


class RxStream:
    """Receiver side of one stream: the next number expected and the frames held early."""

    __slots__ = ("buffer", "epoch", "expected", "limit", "synced")

    def __init__(self, epoch: int, limit: int) -> None:
        self.epoch = epoch
        self.limit = limit  # frames held out of order at most; beyond, they are resent
        self.expected = 0
        self.synced = False
        self.buffer: dict[int, Any] = {}

    def receive(self, seq: int, first_unacked: int, body: Any) -> int:
        """Take one frame.

        Returns ``DUPLICATE`` (delivered before: drop it), ``HELD`` (kept, or dropped
        when the buffer is full, for later), ``DELIVER`` (``body`` is next: deliver it,
        then what :meth:`next_ready` gives) or ``SYNCED`` (a sync answer: deliver what
        :meth:`next_ready` gives).
        """
        if seq < 0:  # the answer to our sync request: this is where the stream stands
            if not self.synced or first_unacked > self.expected:
                self._skip_to(first_unacked)
                self.synced = True
            return SYNCED
        if not self.synced:  # keep it until the sender says where the stream starts
            self._hold(seq, body)
            return HELD
        if first_unacked > self.expected:  # all below it was delivered (and acked) before
            self._skip_to(first_unacked)
        if seq < self.expected:
            return DUPLICATE
        if seq > self.expected:
            self._hold(seq, body)
            return HELD
        self.expected += 1
        return DELIVER

    def next_ready(self) -> Any:
        """The next body in order if it was held, counted as delivered; else NOTHING."""
        body = self.buffer.pop(self.expected, NOTHING)
        if body is not NOTHING:
            self.expected += 1
        return body

    def ack(self) -> list[Any]:
        """The ident of the acknowledgement: ``[epoch, last delivered]`` or a sync request."""
        return [self.epoch, self.expected - 1 if self.synced else None]

    def _hold(self, seq: int, body: Any) -> None:
        if len(self.buffer) < self.limit:
            self.buffer[seq] = body

    def _skip_to(self, first_unacked: int) -> None:
        self.expected = first_unacked
        buffer = self.buffer
        for old in [s for s in buffer if s < first_unacked]:
            del buffer[old]


def rx_stream(streams: dict[Any, RxStream], key: Any, epoch: int, limit: int) -> RxStream:
    """The receiving stream for ``key``: a new one if unknown or from another epoch.

    A new epoch means the sender restarted: its numbers start again, and the new stream
    is not synced until the sender says where it stands.
    """
    stream = streams.get(key)
    if stream is None or stream.epoch != epoch:
        stream = streams[key] = RxStream(epoch, limit)
    return stream
