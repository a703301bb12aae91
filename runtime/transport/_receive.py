"""Everything a node receives arrives on its ROUTER, read here by the I/O thread.

The sender of a frame is the connection's ZAP User-Id (cached per routing id); nothing a
peer sends can crash a node: frames that do not decode, have the wrong shape, are too
large or name an unknown channel are dropped and counted.  One-way frames, alone or in a
batch frame, are delivered in one loop written once (the hot path, inline); everything
else goes through :meth:`_handle`.
"""

from __future__ import annotations

from typing import Any

import msgpack
import zmq

from ._serving import _Serving
from ._stream import RxStream
from ._wire import _BATCH, _EVENTS, _MAX_IDENTITIES, _NOBLOCK, _POLLIN, Frame, _tuple_new


class _Receiving(_Serving):
    def _drain_router(self, router: zmq.Socket[bytes], first: bytes) -> None:
        """Every frame this node receives (``first``: the routing id the I/O loop read).

        Per message: read it, name the sender (the connection's ZAP User-Id), admit, decode,
        dispatch.  Only this thread writes ``_io_received``: it needs no lock.
        """
        recv = router.recv
        peers, clients, blocked, subs = self._peers, self._clients, self._blocked, self._subs
        identities, max_frame = self._identities, self.max_frame
        unpackb, new = msgpack.unpackb, _tuple_new
        acks: dict[tuple[str, str], RxStream] = {}
        tally: dict[str, int] = {}  # counters of the rarer outcomes
        received = undecodable = unknown_channel = 0
        for i in range(_BATCH):
            if self._stopping:  # deliver nothing more: what is not acked is sent again
                break
            if i == 1 and not int(router.getsockopt(_EVENTS)) & _POLLIN:
                break  # idle, one frame is common: asking the socket beats an empty recv()
            try:
                rid = recv(_NOBLOCK) if i else first
            except zmq.Again:
                break
            frame = recv(_NOBLOCK, copy=False)  # read: the parts of a message arrive together
            if frame.more:
                self._skip_parts(router)
                undecodable += 1
                continue
            sender: Any = identities.get(rid) or self._identify(rid, frame)  # name the sender
            if sender is None:
                continue  # a wake-up (see start), not a frame from a peer
            is_peer = sender in peers  # admit
            if sender in blocked or not (is_peer or sender in clients) or len(frame) > max_frame:
                refused = self._refusal(sender, is_peer, blocked)
                tally[refused] = tally.get(refused, 0) + 1
                continue
            try:  # decode
                msg = unpackb(frame, raw=False, strict_map_key=False)
                ok = type(msg) is list and len(msg) == 4 and type(msg[1]) is str
            except Exception:
                ok = False
            if not ok:
                undecodable += 1
                continue
            kind = msg[0]  # dispatch: one-way frames (alone or batched) here, the rest apart
            if kind == "msg" and is_peer:  # the hot path
                batch: Any = (msg,)
            elif kind == "bat" and is_peer and type(msg[3]) is list:
                batch = msg[3]  # frames a congested peer sent together (see send)
            elif kind == "req":  # counted there; the requester waits for the reply, so
                self._on_req_frame(router, rid, sender, is_peer, msg, len(frame))  # nothing
                if i == 0:  # more is queued: back to the blocking recv without asking
                    break  # the socket (about 2 µs)
                continue
            else:
                outcome = self._handle(rid, sender, is_peer, msg, acks, len(frame))
                tally[outcome] = tally.get(outcome, 0) + 1
                continue
            for inner in batch:  # the one inline delivery
                if type(inner) is not list or len(inner) != 4 or type(inner[1]) is not str:
                    undecodable += 1
                elif inner[0] == "msg":
                    handler = subs.get(inner[1])
                    if handler is None:
                        unknown_channel += 1
                        continue
                    received += 1
                    try:
                        handler(new(Frame, (sender, inner[1], inner[3])))
                    except Exception:
                        self._handler_failed(inner[1])
                elif inner[0] == "bat":
                    undecodable += 1
                else:  # its own size is not known: charged the whole batch's
                    outcome = self._handle(rid, sender, is_peer, inner, acks, len(frame))
                    tally[outcome] = tally.get(outcome, 0) + 1
        self._io_received += received
        if acks or tally or undecodable or unknown_channel:
            self._end_drain(acks, tally, undecodable, unknown_channel)

    def _skip_parts(self, router: zmq.Socket[bytes]) -> None:
        """Read and drop the rest of a multi-part message: ours are always one part."""
        while router.getsockopt(zmq.RCVMORE):
            router.recv(zmq.NOBLOCK)

    def _identify(self, rid: bytes, frame: zmq.Frame) -> str | None:
        """The sender of a connection seen for the first time; None for our own wake-up."""
        if rid == self._wake_id:
            self._wake_pending = False
            return None
        try:
            sender = str(frame.get("User-Id"))  # about 1.5 µs: once per connection
        except zmq.ZMQError:
            sender = ""
        # Only ids the ROUTER made itself (a zero byte and a counter that starts at
        # random): a peer can choose its own id, but not one of those while it is
        # in use, and the cache is cleared whenever a connection goes away.
        identities = self._identities
        if sender and len(rid) == 5 and rid[0] == 0 and len(identities) < _MAX_IDENTITIES:
            identities[rid] = sender
        return sender

    def _refusal(self, sender: str, is_peer: bool, blocked: frozenset[str]) -> str:
        """The counter of a frame that is not taken at all (blocked, unknown or too large)."""
        if sender in blocked:
            return "dropped_blocked"
        if not is_peer and sender not in self._clients:
            return "dropped_unknown_key"  # admitted once, removed since
        return "dropped_oversize"

    def _end_drain(
        self,
        acks: dict[tuple[str, str], RxStream],
        tally: dict[str, int],
        undecodable: int,
        unknown_channel: int,
    ) -> None:
        """Acknowledge the reliable streams that moved and add up the drain's counters."""
        for (sender, channel), stream in acks.items():
            self._send_ack(sender, channel, stream)
        if undecodable:
            tally["dropped_undecodable"] = tally.get("dropped_undecodable", 0) + undecodable
        if unknown_channel:
            tally["dropped_unknown_channel"] = (
                tally.get("dropped_unknown_channel", 0) + unknown_channel
            )
        if tally:
            with self._count_lock:
                counts = self._counts
                for name, n in tally.items():
                    counts[name] += n

    def _handle(
        self,
        rid: bytes,
        sender: str,
        is_peer: bool,
        msg: list[Any],
        acks: dict[tuple[str, str], RxStream],
        size: int,
    ) -> str:
        """Act on one decoded frame other than a peer's one-way frame; name its counter.

        ``size`` is the bytes of the frame it came in (what a waiting request counts).
        """
        kind, channel, ident, body = msg
        if kind == "req":
            if type(ident) is not int:
                return "dropped_undecodable"
            self._on_request(rid, sender, is_peer, channel, ident, body, size)
            return "received"
        if kind in ("msg", "rel", "ack", "rep", "err", "bat") and not is_peer:
            return "dropped_not_allowed"  # a client may only make requests
        if kind == "rep" or kind == "err":
            waiter = self._pending.get(ident) if type(ident) is int else None
            if waiter is None or waiter.peer != sender:
                return "late_replies"
            if kind == "rep":
                self._finish(ident, body, None)
            else:
                self._finish(ident, None, str(body))
            return "received"
        if kind == "rel":
            if type(ident) is not list or len(ident) != 3 or not all(type(x) is int for x in ident):
                return "dropped_undecodable"
            handler = self._subs.get(channel)
            if handler is None:
                return "dropped_unknown_channel"  # not acked: sent again until someone listens
            acks[(sender, channel)] = self._on_reliable(sender, channel, ident, body, handler)
            return "received"
        if kind == "ack":
            if type(ident) is not list or len(ident) != 2:
                return "dropped_undecodable"
            self._on_ack(sender, channel, ident[0], ident[1])
            return "received"
        return "dropped_undecodable"
