"""Outbound links: one DEALER per peer, its backlog and the batch frames it leaves as.

Each node reaches each peer through one DEALER (a Curve client that checks the peer's
key); peers answer requests and acknowledge reliable frames through *their* DEALER to us,
so the DEALERs are never read.  That lets the calling thread send on a DEALER itself,
holding the link's lock (a mutex is the full memory barrier ZeroMQ asks for when a socket
changes threads).  When a peer's socket is full, frames wait in a backlog that leaves as
batch frames: the receiver then pays its per-frame costs once per batch.  The backlog is
bounded in frames and in bytes (a peer that stops reading would otherwise make it grow
with every frame this node sends it): one-way frames may fill half of ``max_bytes``, so
that reliable frames, acknowledgements and sync answers always find room.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

import zmq

from ._auth import Peer
from ._counters import _Counters
from ._stream import TxStream
from ._wire import (
    _BATCH_BYTES,
    _FLUSH_EVERY,
    _NOBLOCK,
    _OP_UNWATCH,
    _OP_WATCH,
    _REFUSED,
    _SNDHWM,
    _packer,
    _prefix,
    _send_batches,
    _zsend,
)


class _Link:
    """The outbound connection to one peer; ``lock`` guards the socket and the streams."""

    __slots__ = (
        "backlog",
        "backlog_bytes",
        "flush_at",
        "last",
        "lock",
        "max_bytes",
        "monitor",
        "peer",
        "redial_at",
        "refusals",
        "refused_bytes",
        "retransmits",
        "sent",
        "sock",
        "streams",
        "wake",
    )

    def __init__(
        self,
        peer: Peer,
        sock: zmq.Socket[bytes],
        monitor: zmq.Socket[bytes],
        wake: Callable[[], None],
        max_bytes: int = 1 << 62,
    ) -> None:
        self.peer = peer
        self.wake = wake
        self.sock: zmq.Socket[bytes] | None = sock
        self.monitor = monitor  # handshake failures; read by the I/O thread only
        self.lock = threading.Lock()
        self.streams: dict[str, TxStream] = {}
        self.sent = 0
        self.retransmits = 0
        self.redial_at: float | None = None
        self.refusals = 0
        self.backlog: list[bytes] = []  # frames waiting for the socket, sent as batches
        self.backlog_bytes = 0  # their bytes; written under ``lock``
        self.max_bytes = max_bytes  # the backlog's byte bound (one-way frames: half)
        self.refused_bytes = 0  # frames refused for the byte bound (dropped_backlog_bytes)
        self.flush_at = _FLUSH_EVERY  # backlog length at which the sender tries to flush
        self.last = 0.0  # perf_counter() of the last one-way send to the socket (coalescing)

    def send(self, payload: bytes, limit: int) -> bool:
        """Hand a frame to ZeroMQ without blocking, or queue it behind the backlog.

        The caller holds ``lock``.  False when the link is closed, ``limit`` frames wait,
        or the frame would take the backlog past ``max_bytes`` (counted in
        ``refused_bytes``; an empty backlog takes any frame).  Such a frame is lost: a
        reliable one is sent again, an acknowledgement is repeated with the next one.
        """
        sock = self.sock
        if sock is None:
            return False
        if not self.backlog:
            try:
                _zsend(sock, payload, _NOBLOCK)
                self.sent += 1
                return True
            except zmq.Again:
                pass
        if len(self.backlog) >= limit:
            return False
        size = len(payload)
        if self.backlog and self.backlog_bytes + size > self.max_bytes:
            self.refused_bytes += 1
            return False
        self.backlog.append(payload)
        self.backlog_bytes += size
        if len(self.backlog) == 1:
            self.wake()  # the I/O thread retries until the backlog is gone
        return True

    def transmit(
        self, epoch: int, stream: TxStream, entry: list[Any], now: float, limit: int
    ) -> bool:
        """Send one reliable frame stamped with the stream's first unacked seq (lock held)."""
        ident = _packer().pack(stream.ident(epoch, entry))
        if self.send(stream.prefix + ident + entry[1], limit):
            entry[2] = now
            return True
        return False


class _Links(_Counters):
    """Opening, closing and flushing links, and queueing one-way frames behind a backlog."""

    def _open_link(self, peer: Peer) -> _Link:
        assert self._ctx is not None
        sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
        sock.curve_serverkey = peer.public_key.encode("ascii")
        sock.curve_publickey = self._public.encode("ascii")
        sock.curve_secretkey = self._secret.encode("ascii")
        sock.sndhwm = _SNDHWM  # beyond it, frames wait in the link's backlog, batched
        sock.rcvhwm = 1  # never read: peers answer on our ROUTER
        sock.linger = 0
        # libzmq does not dial again after the peer refused our key (it may simply not know
        # us yet, e.g. during a membership change): watch for that and re-dial ourselves.
        monitor: zmq.Socket[bytes] = sock.get_monitor_socket(_REFUSED)
        sock.connect(peer.endpoint)
        link = _Link(peer, sock, monitor, self._kick, self.max_backlog_bytes)
        self._post((_OP_WATCH, link))
        return link

    def _close_link(self, link: _Link, linger_ms: int) -> None:
        with link.lock:
            if link.sock is not None:
                link.sock.disable_monitor()
                link.sock.close(linger_ms)
                link.sock = None
            sent, retransmits, refused = link.sent, link.retransmits, link.refused_bytes
            link.sent = link.retransmits = link.refused_bytes = 0
            link.backlog.clear()  # never sent now: a reliable frame moves with its stream
            link.backlog_bytes = 0
        with self._count_lock:
            self._counts["sent"] += sent
            self._counts["retransmits"] += retransmits
            self._counts["dropped_backlog_bytes"] += refused
        self._post((_OP_UNWATCH, link))

    def _flush(self, link: _Link) -> None:
        """Send the link's backlog as batch frames, as far as the socket takes them (lock held)."""
        backlog = link.backlog
        sock = link.sock
        if backlog and sock is not None:
            sent = _send_batches(sock, backlog, min(self._max_body, _BATCH_BYTES), len(backlog))
            if sent == len(backlog):
                backlog.clear()
                link.backlog_bytes = 0
            elif sent:
                link.backlog_bytes -= sum(map(len, backlog[:sent]))
                del backlog[:sent]
            link.sent += sent
            if backlog:
                # Full: a sender retries when the backlog has doubled, not on every
                # _FLUSH_EVERY frames (each try copies the whole batch).
                link.flush_at = 2 * len(backlog)
                return
        link.flush_at = _FLUSH_EVERY

    def _refuse(self, peer: str, link: _Link | None) -> bool:
        """Count a one-way frame that cannot leave: unknown peer, not running, or blocked."""
        if link is None:
            self._bump("dropped_not_running" if peer in self._peers else "dropped_unknown_peer")
        else:
            self._bump("dropped_blocked")
        return False

    def _msg_prefix(self, channel: str) -> bytes:
        prefix = self._msg_prefixes[channel] = _prefix("msg", channel) + b"\xc0"
        return prefix

    def _enqueue(self, link: _Link, payload: bytes) -> bool:
        """Queue a one-way frame in the link's backlog (``link.lock`` held); False when full,
        in frames (``queue_limit``) or in bytes (half of ``max_backlog_bytes``).

        The peer is not keeping up (or ``coalesce`` holds a burst): what waits leaves as
        batch frames, so that the peer pays its per-frame costs (decryption, identity,
        decoding) once per batch.
        """
        if link.sock is None:
            return False
        backlog = link.backlog
        if self._coalesce:  # opt-in: hold frames that follow each other closely
            now = perf_counter()
            burst = now - link.last < self._coalesce
            link.last = now
            if not burst and not backlog:
                try:
                    _zsend(link.sock, payload, _NOBLOCK)
                    link.sent += 1
                    return True
                except zmq.Again:
                    pass
        if len(backlog) >= self._queue_limit:
            self._flush(link)  # full: one more try before refusing the frame
            if len(backlog) >= self._queue_limit:
                return False
        if backlog and 2 * (link.backlog_bytes + len(payload)) > link.max_bytes:
            # Full in bytes: refused at once.  A flush here would join a whole batch
            # for every refused frame while the peer takes nothing; the I/O thread
            # retries the backlog every few milliseconds anyway.
            return False  # the caller counts it (dropped_backlog_bytes)
        backlog.append(payload)
        link.backlog_bytes += len(payload)
        if len(backlog) == 1:
            self._kick()  # the I/O thread retries until the backlog is gone
        elif len(backlog) >= link.flush_at:
            self._flush(link)
        return True
