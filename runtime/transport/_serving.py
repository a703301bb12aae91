"""Request/reply, the serving side: handlers on worker threads, or inline on the I/O thread.

Request handlers run on worker threads, so a slow handler never stalls the receive loop;
``serve(..., inline=True)`` runs a quick one on the I/O thread instead, two thread hops
fewer.  Every reply leaves through the ROUTER, on the connection the request came on, so
the I/O thread sends it (a worker's reply through the outbox).
"""

from __future__ import annotations

from collections.abc import Callable
from threading import get_ident
from typing import Any

import zmq

from evolution.errors import TransportError

from ._requests import _Requests
from ._wire import _MORE_NOBLOCK, _NOBLOCK, _OP_REPLY, _packer, _prefix, _zsend, log


class _Serving(_Requests):
    def _on_req_frame(
        self,
        router: zmq.Socket[bytes],
        rid: bytes,
        sender: str,
        is_peer: bool,
        msg: list[Any],
        size: int,
    ) -> None:
        """A request read straight off the ROUTER (I/O thread), counted here.

        An inline handler answers it here and now, the reply leaving at once: the round
        trip of a raw DEALER/ROUTER echo.  Any other goes to :meth:`_on_request`.  The
        common counts go to the I/O thread's own counters, without the lock.
        """
        channel, req_id = msg[1], msg[2]
        if type(req_id) is not int:
            self._bump("dropped_undecodable")
            return
        self._io_received += 1
        answer = self._inline.get(channel)
        if answer is None:  # for a worker, or not served: an error reply
            self._on_request(rid, sender, is_peer, channel, req_id, msg[3], size)
            return
        pack = self._io_pack
        try:
            data = pack(answer(sender, msg[3]))
            if len(data) > self._max_body:
                raise self._oversize_reply(data)
        except Exception as exc:
            reply = self._error_reply(channel, req_id, exc)
        else:
            head = self._rep_prefixes.get(channel) or self._rep_prefix(channel)
            reply = head + pack(req_id) + data
        try:
            _zsend(router, rid, _MORE_NOBLOCK)
            _zsend(router, reply, _NOBLOCK)
            self._io_sent += 1  # this thread's own counter (see _drain_router)
        except zmq.ZMQError:  # the requester's connection is full of unread replies, or gone
            self._bump("dropped_replies")

    def _on_request(
        self,
        rid: bytes,
        sender: str,
        is_peer: bool,
        channel: str,
        req_id: int,
        body: Any,
        size: int,
    ) -> None:
        """A request for a worker (or a channel nothing serves): queue it, or refuse it.

        The work queue is bounded in requests (``queue_limit``) and in bytes
        (``max_request_bytes``, the frames' sizes), so peers that send large requests to a
        slow handler cannot make it grow without end; a refused request gets an
        "overloaded" error reply at once.
        """
        handler = self._serves.get(channel)
        if handler is None:
            self._bump("dropped_unknown_channel")
            error = f"{self.node_id} serves no channel {channel!r}"
            self._reply(rid, sender, is_peer, "err", channel, req_id, _packer().pack(error))
            return
        if self._work.qsize() >= self._queue_limit:
            self._bump("dropped_queue_full")
            error = f"{self.node_id} is overloaded: {self._queue_limit} requests are waiting"
            self._reply(rid, sender, is_peer, "err", channel, req_id, _packer().pack(error))
            return
        if channel in self._inline:  # quick handlers: answered here, on the I/O thread
            kind, data = self._answer(handler, sender, channel, body)
            self._reply(rid, sender, is_peer, kind, channel, req_id, data)
            return
        waiting = self._work_in - self._work_out
        if waiting and waiting + size > self.max_request_bytes:
            self._bump("dropped_request_bytes")
            error = (
                f"{self.node_id} is overloaded: {waiting} bytes of requests are waiting "
                f"(the bound is {self.max_request_bytes})"
            )
            self._reply(rid, sender, is_peer, "err", channel, req_id, _packer().pack(error))
            return
        self._work_in += size  # only this (the I/O) thread adds
        self._work.put((rid, sender, is_peer, channel, req_id, body, handler, size))

    def _reply(
        self,
        rid: bytes,
        sender: str,
        is_peer: bool,
        kind: str,
        channel: str,
        req_id: int,
        data: bytes,
        on_io_thread: bool = False,
    ) -> None:
        """Answer through the connection the request came on, as ZeroMQ's ROUTER does.

        For a peer that is the requesting thread's own socket (see :class:`_Caller`), for
        a client its DEALER.  Only the I/O thread touches the ROUTER: a worker's reply goes
        through the outbox.
        """
        prefix = self._prefixes.get((kind, channel))
        if prefix is None:
            prefix = self._prefixes[(kind, channel)] = _prefix(kind, channel)
        payload = prefix + _packer().pack(req_id) + data
        if sender in self._blocked:
            self._bump("dropped_blocked")
            return
        if self._router is not None and (on_io_thread or get_ident() == self._io_ident):
            try:
                _zsend(self._router, rid, _MORE_NOBLOCK)
                _zsend(self._router, payload, _NOBLOCK)
                self._bump("sent")
            except zmq.ZMQError:  # the requester's connection is full of unread replies, or gone
                self._bump("dropped_replies")
            return
        self._outbox.append((_OP_REPLY, rid, payload))
        if not self._wake_pending:
            self._wake()

    # ------------------------------------------------------------------ worker threads

    def _answer(
        self, handler: Callable[[str, Any], Any], sender: str, channel: str, body: Any
    ) -> tuple[str, bytes]:
        """Run a request handler: ``("rep", packed reply)`` or ``("err", packed text)``."""
        pack = _packer().pack
        try:
            data: bytes = pack(handler(sender, body))
            if len(data) > self._max_body:
                raise self._oversize_reply(data)
            return "rep", data
        except Exception as exc:
            self._bump("handler_errors")
            log.exception("%s: request handler of channel %r failed", self.node_id, channel)
            return "err", pack(f"{type(exc).__name__}: {exc}")

    def _rep_prefix(self, channel: str) -> bytes:
        prefix = self._rep_prefixes[channel] = _prefix("rep", channel)
        return prefix

    def _oversize_reply(self, data: bytes) -> TransportError:
        return TransportError(
            f"the reply is {len(data)} bytes, over the {self.max_frame}-byte frame limit",
            hint="return less, or send it in chunks",
        )

    def _error_reply(self, channel: str, req_id: int, exc: Exception) -> bytes:
        """The "err" frame for a request whose inline handler failed (counted and logged)."""
        self._bump("handler_errors")
        log.error("%s: request handler of channel %r failed", self.node_id, channel, exc_info=exc)
        pack = _packer().pack
        return _prefix("err", channel) + pack(req_id) + pack(f"{type(exc).__name__}: {exc}")

    def _serve_loop(self) -> None:
        work = self._work
        while True:
            item = work.get()
            if item is None:
                return
            rid, sender, is_peer, channel, req_id, body, handler, size = item
            with self._count_lock:
                self._work_out += size
            kind, data = self._answer(handler, sender, channel, body)
            try:
                self._reply(rid, sender, is_peer, kind, channel, req_id, data)
            except Exception:  # pragma: no cover - a closed socket during stop()
                log.exception("%s: cannot send a reply on channel %r", self.node_id, channel)
