"""One-way sending: ``send`` (the hot path) and ``send_many`` (batch frames at once).

An idle link sends each frame at once, so batching never adds latency (unless the opt-in
``coalesce`` window asks for it); a link whose peer is not keeping up queues frames in
its backlog, which leaves as batch frames (see ``_links``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import zmq

from ._links import _Link
from ._reliable import _Reliable
from ._wire import _MANY, _NOBLOCK, _packer, _send_batches, _tls, _zsend


class _Sending(_Reliable):
    def send(self, peer: str, channel: str, body: Any) -> bool:
        """Send a one-way frame; False (and counted) when it cannot even be queued.

        Never blocks.  It may still be lost afterwards (a peer that is down, a connection
        that breaks): Raft tolerates that, and :meth:`send_reliable` is for the rest.
        """
        # The hot path, measured against raw pyzmq in bench/bench_transport.py: two dict
        # lookups, one pack, the link lock and the compiled send; the rest is out of line.
        link = self._links.get(peer)
        if link is None or peer in self._blocked:
            return self._refuse(peer, link)
        prefix = self._msg_prefixes.get(channel)
        if prefix is None:
            prefix = self._msg_prefix(channel)
        try:
            data = _tls.packer.pack(body)
        except Exception:  # first use in this thread, or a body msgpack refuses
            data = self._encode(body, peer, channel)
        if len(data) > self._max_body:
            self._encode(body, peer, channel)  # raises, saying what and where
        frame = prefix + data
        with link.lock:
            backlog = link.backlog
            if self._coalesce or link.sock is None:
                if self._enqueue(link, frame):
                    return True
            elif not backlog:
                try:
                    _zsend(link.sock, frame, _NOBLOCK)
                    link.sent += 1
                    return True
                except zmq.Again:  # the peer is not keeping up: from now on, batches
                    backlog.append(frame)
                    link.backlog_bytes = len(frame)
                    self._kick()  # the I/O thread retries until the backlog is gone
                    return True
            else:  # _enqueue, inlined
                if len(backlog) >= self._queue_limit:
                    self._flush(link)  # full: one more try before refusing the frame
                size = len(frame)  # full in bytes: refused without a flush (see _enqueue)
                if len(backlog) < self._queue_limit and (
                    2 * (link.backlog_bytes + size) <= link.max_bytes or not backlog
                ):
                    backlog.append(frame)
                    link.backlog_bytes += size
                    if len(backlog) >= link.flush_at:
                        self._flush(link)
                    return True
        self._refused(link, len(frame))
        return False

    def _refused(self, link: _Link, size: int, n: int = 1) -> None:
        """Count ``n`` one-way frames the backlog refused, under the bound that refused them."""
        if link.backlog and 2 * (link.backlog_bytes + size) > link.max_bytes:
            with link.lock:
                link.refused_bytes += n  # dropped_backlog_bytes
        else:
            self._bump("dropped_queue_full", n)

    def send_many(self, peer: str, channel: str, bodies: Iterable[Any]) -> int:
        """Send several one-way frames to ``peer`` on ``channel``, in order; how many were taken.

        The same frames as that many :meth:`send` calls, delivered the same way (one
        handler call each, in order), but packed in one call and sent as batch frames of
        up to 256: the receiver decrypts and decodes once per batch.  The count is short
        only when the backlog is full (the rest are counted as ``dropped_queue_full``), or
        0 when the peer is blocked, unknown or not running.  A body msgpack cannot encode,
        or one over ``max_frame``, raises TransportError before anything is sent.
        """
        link = self._links.get(peer)
        if link is None or peer in self._blocked:
            self._refuse(peer, link)
            return 0
        prefix = self._msg_prefixes.get(channel)
        if prefix is None:
            prefix = self._msg_prefix(channel)
        pack = _packer().pack
        frames: list[bytes] = []
        for body in bodies:
            try:
                data = pack(body)
            except Exception:
                data = self._encode(body, peer, channel)  # raises, saying what and where
            if len(data) > self._max_body:
                self._encode(body, peer, channel)
            frames.append(prefix + data)
        if not frames:
            return 0
        taken = 0
        with link.lock:
            sock = link.sock
            if sock is not None and not link.backlog and not self._coalesce:
                taken = _send_batches(sock, frames, self._max_body, _MANY)
                link.sent += taken
            while taken < len(frames) and self._enqueue(link, frames[taken]):
                taken += 1
        if taken < len(frames):
            self._refused(link, len(frames[taken]), len(frames) - taken)
        return taken
