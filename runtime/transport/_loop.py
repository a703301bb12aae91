"""The I/O thread: one loop that receives, flushes backlogs, replies and keeps time.

It blocks in ``recv()`` on the ROUTER alone (RCVTIMEO bounds the wait), as a raw echo
server does; wake-ups from other threads arrive on the ROUTER too, through an inproc
connection (see ``start``).  A zmq_poll over the ROUTER and a separate wake-up socket cost
10-30 µs more per round trip.  Every ``RETRANSMIT_INTERVAL`` it also reads the socket
monitors (a refused key is dialled again) and the sockets of timed-out requests (late
replies are counted), and retransmits unacknowledged reliable frames.
"""

from __future__ import annotations

import contextlib
import time
from threading import get_ident
from time import perf_counter
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from ._links import _Link
from ._receive import _Receiving
from ._wire import (
    _BACKLOG_RETRY_MS,
    _BATCH,
    _HOT_FOR,
    _MAX_ORPHANS,
    _MORE_NOBLOCK,
    _NOBLOCK,
    _OP_ADOPT,
    _OP_FORGET,
    _OP_REPLY,
    _OP_UNWATCH,
    _OP_WATCH,
    _ORPHAN_TTL,
    _REDIAL_AFTER,
    _REFUSED,
    _STOP_LINGER_MS,
    RETRANSMIT_INTERVAL,
    _packer,
    _zsend,
    log,
)


class _IoLoop(_Receiving):
    def _run(self) -> None:
        self._io_ident = get_ident()
        self._io_pack = _packer().pack  # this thread's Packer, at hand for the hot path
        router = self._router
        assert router is not None
        # A connection that goes away may leave its routing id to a later one: forget
        # every cached identity then (see _drain_router).
        gone: zmq.Socket[bytes] = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._poller.register(gone, zmq.POLLIN)
        try:
            self._loop(router, gone)
        finally:
            self._close_io(router, gone)

    def _loop(self, router: zmq.Socket[bytes], gone: zmq.Socket[bytes]) -> None:
        recv = router.recv
        wake_id = self._wake_id
        rcvtimeo = -1  # what RCVTIMEO is set to now; setting it costs about 2 µs
        next_tick = time.monotonic() + RETRANSMIT_INTERVAL
        retry_ms = 1 if self._coalesce else _BACKLOG_RETRY_MS
        while not self._stopping:
            links = list(self._links.values())
            timeout = self._wait_for(links, next_tick, retry_ms)
            # Setting RCVTIMEO costs about 2 µs: keep a wait that ends at most 10 ms early.
            if rcvtimeo != timeout and not 0 < rcvtimeo <= timeout <= rcvtimeo + 10:
                router.rcvtimeo = rcvtimeo = timeout
            try:
                rid = recv()
            except zmq.Again:
                rid = None
            except zmq.ZMQError as exc:  # pragma: no cover - only on a broken context
                log.error("transport of %s: receive failed: %s", self.node_id, exc)
                break
            if rid == wake_id:
                with contextlib.suppress(zmq.Again):
                    recv(_NOBLOCK)  # its empty part
                self._wake_pending = False
            elif rid is not None:
                try:
                    self._drain_router(router, rid)
                except Exception:
                    log.exception("transport of %s: error while receiving", self.node_id)
            coalesce = self._coalesce
            for link in links:
                # A coalesced burst leaves once it is over: no frame for `coalesce` s.
                if link.backlog and (not coalesce or perf_counter() - link.last >= coalesce):
                    with link.lock:
                        self._flush(link)
            if self._outbox:
                try:
                    self._drain_outbox(router)
                except Exception:
                    log.exception("transport of %s: error while replying", self.node_id)
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now, gone)
                next_tick = now + RETRANSMIT_INTERVAL

    def _wait_for(self, links: list[_Link], next_tick: float, retry_ms: int) -> int:
        """How long the next recv() may wait (ms): at once, a backlog retry, or the tick."""
        backlog = False
        for link in links:
            if link.backlog:
                backlog = True
                break
        if self._outbox:
            return 0
        if backlog:
            self._io_hot = True
            self._hot_until = time.monotonic() + _HOT_FOR
            return retry_ms
        if self._io_hot and time.monotonic() < self._hot_until:
            return retry_ms  # backlogs came and went just now: more may follow
        if self._io_hot:
            self._io_hot = False  # from here on a new backlog wakes us (_kick)
            if any(link.backlog for link in links):  # one that came meanwhile
                self._io_hot = True
                return retry_ms
        return max(0, int((next_tick - time.monotonic()) * 1000) + 1)

    def _tick(self, now: float, gone: zmq.Socket[bytes]) -> None:
        """The periodic work: monitors, late replies, retransmission, redialling."""
        try:
            side = dict(self._poller.poll(0))
            if gone in side:
                while True:
                    try:
                        gone.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                self._identities.clear()
            if side:
                self._read_monitors(side)
                if self._orphans:
                    self._read_orphans(side)
            self._retransmit(now)
            self._redial(now)
            if self._orphans:
                self._expire_orphans(now)
        except Exception:
            log.exception("transport of %s: error while retransmitting", self.node_id)

    def _close_io(self, router: zmq.Socket[bytes], gone: zmq.Socket[bytes]) -> None:
        """Close what the I/O thread owns, as it ends."""
        for item in self._outbox:  # links opened or closed since the last turn
            if item[0] in (_OP_WATCH, _OP_UNWATCH):
                self._watched[item[1].monitor] = item[1]
        for monitor in self._watched:
            monitor.close(0)
        self._watched.clear()
        for sock in self._orphans:
            sock.close(0)
        self._orphans.clear()
        router.disable_monitor()
        gone.close(0)
        router.close(_STOP_LINGER_MS)

    def _read_monitors(self, events: dict[Any, int]) -> None:
        for monitor, link in list(self._watched.items()):
            if monitor not in events:
                continue
            while True:
                try:
                    event = recv_monitor_message(monitor, zmq.NOBLOCK)
                except zmq.Again:
                    break
                if event["event"] & _REFUSED and link.redial_at is None:
                    link.redial_at = time.monotonic() + _REDIAL_AFTER
                    link.refusals += 1
                    if link.refusals == 1:
                        log.warning(
                            "%s: %s at %s refused our key (its ZAP status: %s); dialling again "
                            "every %g s — check that %s lists %s's public key",
                            self.node_id,
                            link.peer.node_id,
                            link.peer.endpoint,
                            event["value"],
                            _REDIAL_AFTER,
                            link.peer.node_id,
                            self.node_id,
                        )

    def _read_orphans(self, events: dict[Any, int]) -> None:
        """Count the late replies that reach timed-out request sockets, then close them."""
        for sock in [s for s in self._orphans if s in events]:
            late = 0
            while True:
                try:
                    sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                late += 1
            self._bump("late_replies", late)
            self._drop_orphan(sock)

    def _expire_orphans(self, now: float) -> None:
        for sock, (peer, expires) in list(self._orphans.items()):
            if expires <= now or peer not in self._links:
                self._drop_orphan(sock)

    def _drop_orphan(self, sock: zmq.Socket[bytes]) -> None:
        if self._orphans.pop(sock, None) is not None:
            self._poller.unregister(sock)
            sock.close(0)

    def _forget_streams(self, sender: str) -> None:
        """Drop a removed peer's receiving streams and budget; keep what its budget counted."""
        for key in [k for k in self._rx if k[0] == sender]:
            self._rx.pop(key).release()
        budget = self._budgets.pop(sender, None)
        if budget is not None and (budget.refused_frames or budget.refused_bytes):
            with self._count_lock:
                self._counts["dropped_reorder"] += budget.refused_frames
                self._counts["dropped_reorder_bytes"] += budget.refused_bytes

    def _redial(self, now: float) -> None:
        for link in list(self._links.values()):
            if link.redial_at is not None and link.redial_at <= now:
                link.redial_at = None
                with link.lock:
                    if link.sock is not None:
                        with contextlib.suppress(zmq.ZMQError):
                            link.sock.disconnect(link.peer.endpoint)
                        link.sock.connect(link.peer.endpoint)

    def _drain_outbox(self, router: zmq.Socket[bytes]) -> None:
        out = self._outbox
        sent = dropped = 0
        for _ in range(_BATCH):
            if not out:
                break
            item = out.popleft()
            if item[0] == _OP_REPLY:  # a reply to a client, through its connection to us
                try:
                    _zsend(router, item[1], _MORE_NOBLOCK)
                    _zsend(router, item[2], _NOBLOCK)
                    sent += 1
                except zmq.ZMQError:
                    dropped += 1
            elif item[0] == _OP_FORGET:
                self._forget_streams(item[1])
            elif item[0] == _OP_WATCH:
                self._watched[item[1].monitor] = item[1]
                self._poller.register(item[1].monitor, zmq.POLLIN)
            elif item[0] == _OP_UNWATCH:
                if self._watched.pop(item[1].monitor, None) is not None:
                    self._poller.unregister(item[1].monitor)
                item[1].monitor.close(0)
            elif item[0] == _OP_ADOPT:
                self._orphans[item[1]] = (item[2], time.monotonic() + _ORPHAN_TTL)
                self._poller.register(item[1], zmq.POLLIN)
                if len(self._orphans) > _MAX_ORPHANS:
                    self._drop_orphan(next(iter(self._orphans)))
        self._io_sent += sent  # this thread's own counter (see _drain_router)
        if dropped:
            self._bump("dropped_replies", dropped)
