"""The reliable channel: the transport's side of the streams of ``_stream``.

ZeroMQ drops whatever is queued when a connection or a socket goes away, so
:meth:`send_reliable` numbers frames per (peer, channel), the receiver acknowledges
cumulatively and delivers each number once and in order, and the sender retransmits what
is still unacknowledged.  The numbering, ordering and sync rules are the pure state
machine in ``_stream``; this module moves its frames over the links and calls handlers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from evolution.errors import TransportError

from ._links import _Link, _Links
from ._stream import (
    DELIVER,
    DUPLICATE,
    HELD,
    NOTHING,
    RxBudget,
    RxStream,
    TxStream,
    rx_stream,
)
from ._wire import RETRANSMIT_INTERVAL, Frame, _packer, _prefix, _unpack, log


class _Reliable(_Links):
    def send_reliable(self, peer: str, channel: str, body: Any) -> None:
        """Send a frame ``peer`` delivers exactly once and in order (per channel).

        Retransmitted every :data:`RETRANSMIT_INTERVAL` until acknowledged or until the
        peer is removed.  Raises TransportError when the peer is unknown or when
        ``queue_limit`` frames, or ``max_unacked_bytes`` bytes, to it on this channel are
        still unacknowledged, rather than grow without bound.
        """
        link = self._links.get(peer)
        if link is None:
            self._unknown_peer(peer, channel)
        data = self._encode(body, peer, channel)
        blocked = peer in self._blocked
        with link.lock:
            if link.sock is None:
                self._unknown_peer(peer, channel)
            stream = link.streams.get(channel)
            if stream is None:
                stream = link.streams[channel] = TxStream(_prefix("rel", channel))
            entry = stream.push(data, self._queue_limit, len(data), self.max_unacked_bytes)
            if entry is not None and not blocked:
                link.transmit(self._epoch, stream, entry, time.monotonic(), self._hard_limit)
            refusal = stream.refusal(self._queue_limit) if entry is None else ""
        if refusal:
            self._refuse_reliable(peer, channel, refusal, stream.unacked_bytes)
        if blocked:
            self._bump("dropped_blocked")  # kept: retransmitted once the partition heals

    def _refuse_reliable(self, peer: str, channel: str, refusal: str, held: int) -> None:
        if refusal == "frames":
            self._bump("dropped_queue_full")
            raise TransportError(
                f"{self.node_id} has {self._queue_limit} unacknowledged frames for {peer} on "
                f"channel {channel!r}: refusing more",
                hint=f"slow down until {peer} acknowledges, or check that it is up",
            )
        self._bump("dropped_unacked_bytes")
        raise TransportError(
            f"{self.node_id} has {held} bytes unacknowledged for {peer} on channel "
            f"{channel!r} (the bound is {self.max_unacked_bytes}): refusing more",
            hint=f"slow down until {peer} acknowledges, or check that it is up",
        )

    def _on_reliable(
        self,
        sender: str,
        channel: str,
        ident: list[int],
        body: Any,
        handler: Callable[[Frame], None],
    ) -> RxStream:
        """Take a reliable frame (I/O thread): deliver what is now in order; ack later.

        A frame that may be held (it is early, or the stream is not synced yet) is held
        packed: its bytes are then exactly what the sender's :class:`RxBudget` counts, and
        a body that decodes to many small objects does not cost many times its size while
        it waits.  It is decoded again when its turn comes.
        """
        epoch, seq, first_unacked = ident
        key = (sender, channel)
        stream = self._rx.get(key)
        if stream is None or stream.epoch != epoch:
            budget = self._budgets.get(sender)
            if budget is None:
                budget = self._budgets[sender] = RxBudget(self.max_reorder_bytes)
            stream = rx_stream(self._rx, key, epoch, self._queue_limit, budget)
        packed = not stream.synced or seq != stream.expected
        if packed:  # not the next one: it may be held (the in-order path pays nothing)
            body = self._io_pack(body)
            outcome = stream.receive(seq, first_unacked, body, len(body))
        else:
            outcome = stream.receive(seq, first_unacked, body)
        if outcome == DUPLICATE:
            self._bump("duplicates")
            return stream
        if outcome == HELD:
            return stream
        if outcome == DELIVER:
            self._deliver(sender, channel, _unpack(body) if packed else body, handler)
        while stream.buffer and not self._stopping:  # what the gap held, now in order
            ready = stream.next_ready()
            if ready is NOTHING:
                break
            self._deliver(sender, channel, _unpack(ready), handler)
        return stream

    def _deliver(
        self, sender: str, channel: str, body: Any, handler: Callable[[Frame], None]
    ) -> None:
        try:
            handler(Frame(sender, channel, body))
        except Exception:  # delivered all the same: a retry would fail the same way
            self._handler_failed(channel)

    def _handler_failed(self, channel: str) -> None:
        """A subscribe handler raised (called from its except block): counted and logged."""
        self._bump("handler_errors")
        log.exception("%s: handler of channel %r failed", self.node_id, channel)

    def _send_ack(self, sender: str, channel: str, stream: RxStream) -> None:
        link = self._links.get(sender)
        if link is None:
            return
        prefix = self._prefixes.get(("ack", channel))
        if prefix is None:
            prefix = self._prefixes[("ack", channel)] = _prefix("ack", channel)
        payload = prefix + _packer().pack(stream.ack()) + b"\xc0"
        with link.lock:
            link.send(payload, self._hard_limit)  # if lost, the frame is sent and acked again

    def _on_ack(self, sender: str, channel: str, epoch: Any, acked: Any) -> None:
        link = self._links.get(sender)
        if link is None or epoch != self._epoch:
            return
        with link.lock:
            stream = link.streams.get(channel)
            if stream is not None and stream.on_ack(acked):
                # The receiver does not know this stream: say where it stands.
                ident = _packer().pack(stream.sync_ident(self._epoch))
                link.send(stream.prefix + ident + b"\xc0", self._hard_limit)

    def _retransmit(self, now: float) -> None:
        blocked = self._blocked
        for link in list(self._links.values()):
            if link.peer.node_id in blocked or not link.streams or link.backlog:
                continue  # a congested link gets no extra load: the backlog goes first
            with link.lock:
                for stream in link.streams.values():
                    self._resend(link, stream, now)

    def _resend(self, link: _Link, stream: TxStream, now: float) -> None:
        """Send again what ``stream`` says is due (``link.lock`` held)."""
        for entry in stream.due(now, RETRANSMIT_INTERVAL):
            if link.backlog:
                break  # the peer stopped taking frames: try again next tick
            if not link.transmit(self._epoch, stream, entry, now, self._queue_limit):
                break
            link.retransmits += 1
