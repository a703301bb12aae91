"""Request/reply, the caller's side: each thread's own socket to each peer.

Each thread that calls :meth:`request` gets its own DEALER to that peer (a Curve client
with the node's key, so the peer names it like the node's link); the peer answers through
its ROUTER to that connection, and the caller reads the reply itself, as in a raw
DEALER/ROUTER round trip: no other thread of ours is woken on the way.
"""

from __future__ import annotations

import threading
import time
from threading import get_ident
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from evolution.errors import TransportError

from ._sending import _Sending
from ._wire import (
    _CALLER_TICK_MS,
    _NOBLOCK,
    _OP_ADOPT,
    _RCVHWM,
    _packer,
    _prefix,
    _tls,
    _zsend,
    log,
)

if TYPE_CHECKING:
    from ._links import _Link


class _Waiter:
    """A request in flight, so that stop() and remove_peer() can fail it.

    The caller reads its own socket and looks at ``done`` between reads (every
    ``_CALLER_TICK_MS`` at most), so a flag is enough: no lock to create per request.
    """

    __slots__ = ("channel", "done", "error", "peer", "value")

    def __init__(self, peer: str, channel: str) -> None:
        self.peer = peer
        self.channel = channel
        self.value: Any = None
        self.error: str | None = None
        self.done = False

    def result(self) -> Any:
        if self.error is not None:
            raise TransportError(
                f"request to {self.peer} on channel {self.channel!r} failed: {self.error}",
                hint=f"see the log of {self.peer}",
            )
        return self.value


class _Caller:
    """One thread's request socket to one peer: the caller reads its own replies.

    A DEALER of its own (a Curve client with the node's key, so the peer's ZAP handler
    names it like the node's link) means the reply comes straight back to the thread that
    waits for it, as in a raw DEALER round trip, instead of through our ROUTER, the I/O
    thread and a hand-over.  ``lock`` is held for a whole request; ``stop()`` takes it
    before closing the socket.
    """

    __slots__ = ("link", "lock", "received", "sent", "sock", "thread")

    def __init__(self, sock: zmq.Socket[bytes], link: _Link, thread: threading.Thread) -> None:
        self.sock: zmq.Socket[bytes] | None = sock
        self.link = link  # the link it was opened for: a new link (new key, address) = new socket
        self.thread = thread
        self.lock = threading.Lock()
        # Counted under ``lock`` (held for a whole request), not the transport's counter
        # lock; stats() adds them up, and a caller's counts move there when it is dropped.
        self.sent = 0
        self.received = 0

    def close(self) -> None:
        """Close the socket (the caller holds ``lock``, or the owner thread is gone)."""
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None


class _Requests(_Sending):
    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any:
        """Send a request and wait for ``peer``'s reply body.

        The request leaves on this thread's own socket to ``peer`` and the reply comes back
        on it, read by this thread: no other thread of ours is woken on the way.
        """
        # The hot path of a round trip: about 9 µs of Python here before this was slimmed
        # (no lock per request, no tuple keys, the packer and counters at hand).
        if get_ident() == self._io_ident:
            raise TransportError(
                f"request to {peer} on channel {channel!r} from a subscribe handler would "
                "deadlock the I/O thread",
                hint="make the request from another thread, or use send()",
            )
        link = self._links.get(peer)
        if link is None:
            self._unknown_peer(peer, channel)
        prefix = self._req_prefixes.get(channel)
        if prefix is None:
            prefix = self._req_prefixes[channel] = _prefix("req", channel)
        try:
            pack = _tls.packer.pack
            data = pack(body)
        except Exception:  # first use in this thread, or a body msgpack refuses
            data = self._encode(body, peer, channel)
            pack = _packer().pack
        if len(data) > self._max_body:
            self._encode(body, peer, channel)  # raises, saying what and where
        try:
            caller: _Caller | None = self._local.callers.get(peer)
        except AttributeError:
            self._local.callers = {}
            caller = None
        if caller is None or caller.link is not link or caller.sock is None:
            caller = self._open_caller(peer, channel, link, caller)
        req_id = next(self._req_ids)
        waiter = _Waiter(peer, channel)
        self._pending[req_id] = waiter
        try:
            with caller.lock:
                sock = caller.sock
                if sock is None:  # stop() closed it
                    self._unknown_peer(peer, channel)
                if peer in self._blocked:
                    self._bump("dropped_blocked")  # a partition: lost, the caller times out
                else:
                    try:
                        _zsend(sock, prefix + pack(req_id) + data, _NOBLOCK)
                        caller.sent += 1
                    except zmq.Again:
                        self._bump("dropped_queue_full")
                        raise TransportError(
                            f"{self.node_id} cannot queue a request to {peer} on channel "
                            f"{channel!r}: {_RCVHWM} requests to it are waiting",
                            hint=f"check that {peer} is up, retry later",
                        ) from None
                deadline = time.monotonic() + timeout
                raw = None
                if timeout >= _CALLER_TICK_MS / 1000:
                    # The common case, without the bookkeeping of the loop below: the
                    # reply comes within one tick (RCVTIMEO), and it is ours.
                    try:
                        raw = sock.recv()
                        kind, _channel, ident, reply = msgpack.unpackb(
                            raw, raw=False, strict_map_key=False
                        )
                    except Exception:  # no reply yet (Again), or one that does not decode
                        pass
                    else:
                        if ident == req_id and kind == "rep" and peer not in self._blocked:
                            caller.received += 1
                            return reply
                return self._await_reply(caller, sock, waiter, req_id, deadline, timeout, raw)
        finally:
            self._pending.pop(req_id, None)

    def _await_reply(
        self,
        caller: _Caller,
        sock: zmq.Socket[bytes],
        waiter: _Waiter,
        req_id: int,
        deadline: float,
        timeout: float,
        raw: bytes | None = None,
    ) -> Any:
        """Read this caller's socket until the reply to ``req_id`` (``caller.lock`` held).

        ``raw`` is a message request()'s fast path already read but did not take.
        """
        recv = sock.recv
        tick = _CALLER_TICK_MS / 1000
        while True:
            if raw is None:
                if waiter.done:  # failed by stop() or remove_peer()
                    return waiter.result()
                if self._stopping:
                    waiter.error = f"the transport of {self.node_id} stopped"
                    return waiter.result()
                remaining = deadline - time.monotonic()
                try:
                    if remaining >= tick:
                        raw = recv()  # RCVTIMEO: wakes every tick to look at the above
                    elif remaining > 0 and sock.poll(int(remaining * 1000) + 1):
                        raw = recv(_NOBLOCK)
                except zmq.Again:
                    pass
                if raw is None:
                    if time.monotonic() < deadline:
                        continue
                    # Lost, or the peer refused this socket's key (libzmq will not dial
                    # again): the next request starts on a fresh connection, and the I/O
                    # thread takes this one over to count the late reply, if one comes.
                    self._adopt(caller)
                    raise TransportError(
                        f"no reply from {waiter.peer} on channel {waiter.channel!r} within "
                        f"{timeout:g} s",
                        hint=f"check that {waiter.peer} is running and reachable, "
                        "or raise the timeout",
                    ) from None
            try:
                kind, _channel, ident, reply = msgpack.unpackb(raw, raw=False, strict_map_key=False)
            except Exception:
                self._bump("dropped_undecodable")
                continue
            finally:
                raw = None
            if ident != req_id or (kind != "rep" and kind != "err"):
                self._bump("late_replies")  # the answer to an earlier request that timed out
                continue
            if waiter.peer in self._blocked:
                self._bump("dropped_blocked")
                continue
            caller.received += 1
            if kind == "err":
                waiter.error = str(reply)
            return waiter.result() if kind == "err" else reply

    def _open_caller(self, peer: str, channel: str, link: _Link, old: _Caller | None) -> _Caller:
        """This thread's request socket to ``peer`` (a new one: none yet, or a new link)."""
        me = threading.current_thread()
        with self._state_lock:
            if old is not None:
                old.close()  # ours: this thread is its owner and is not in a request
            # Sockets of threads that have ended (and were not in a request) go now.
            keep = []
            for caller in self._callers:
                if caller.sock is None:
                    continue
                if not caller.thread.is_alive() and caller.lock.acquire(blocking=False):
                    caller.close()
                    caller.lock.release()
                    continue
                keep.append(caller)
            self._keep_callers(keep)
            if not self._running or self._ctx is None:
                self._unknown_peer(peer, channel)
            sock: zmq.Socket[bytes] = self._ctx.socket(zmq.DEALER)
            sock.curve_serverkey = link.peer.public_key.encode("ascii")
            sock.curve_publickey = self._public.encode("ascii")
            sock.curve_secretkey = self._secret.encode("ascii")
            sock.sndhwm = _RCVHWM
            sock.rcvhwm = _RCVHWM
            sock.rcvtimeo = _CALLER_TICK_MS
            sock.linger = 0
            sock.connect(link.peer.endpoint)
            caller = _Caller(sock, link, me)
            self._callers.append(caller)
        self._local.callers[peer] = caller
        return caller

    def _adopt(self, caller: _Caller) -> None:
        """Hand a timed-out caller's socket to the I/O thread (``caller.lock`` held)."""
        sock, caller.sock = caller.sock, None
        if sock is None:
            return
        if self._running:
            self._post((_OP_ADOPT, sock, caller.link.peer.node_id))
        else:
            sock.close(0)

    def _close_callers(self, peer: str | None, wait: float) -> None:
        """Close the request sockets (to ``peer``, or all); ``_state_lock`` held.

        A socket in use is closed once its caller lets go (within ``_CALLER_TICK_MS``), or
        left to its owner when ``wait`` is 0: the owner opens a new one for the new link.
        """
        keep = []
        for caller in self._callers:
            if peer is not None and caller.link.peer.node_id != peer:
                keep.append(caller)
            elif caller.lock.acquire(timeout=wait) if wait > 0 else caller.lock.acquire(False):
                caller.close()
                caller.lock.release()
            elif wait > 0:
                log.error("a request of %s still runs after stop()", self.node_id)
                caller.close()
            else:
                keep.append(caller)
        self._keep_callers(keep)

    def _keep_callers(self, keep: list[_Caller]) -> None:
        """Keep only these request sockets; the counts of the others move to the counters."""
        kept = {id(caller) for caller in keep}
        with self._count_lock:
            for caller in self._callers:
                if id(caller) not in kept:
                    self._counts["sent"] += caller.sent
                    self._counts["received"] += caller.received
                    caller.sent = caller.received = 0
            self._callers = keep
