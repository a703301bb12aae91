"""The wire: msgpack frames, their constant heads, batch frames and the tuning constants.

Wire format: one ZeroMQ frame holding a msgpack array ``[kind, channel, ident, body]``,
kind one of ``msg`` (one-way), ``rel`` (reliable; ident ``[epoch, seq, first_unacked]``,
``seq == -1`` answers a sync request), ``ack`` (ident ``[epoch, last_delivered]``, or
``[epoch, None]`` to ask for a sync), ``req`` / ``rep`` / ``err`` (ident: request id),
``bat`` (body: a list of such frames from one sender, in order).

A frame is built by concatenating a constant head (cached per channel) with the packed
ident and body, so the hot paths pack only what changes.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgpack
import zmq
import zmq.backend

# One logger for the whole package, named as when it was one module (log filters use it).
log = logging.getLogger("runtime.transport")

RETRANSMIT_INTERVAL = 0.2
"""Seconds an unacknowledged reliable frame waits before it is sent again."""

_BATCH = 1024  # frames read from the ROUTER, or items from the work deque, per loop turn
_WORKERS = 4  # threads running request handlers
_RCVHWM = 1000  # ZeroMQ's default, stated: bounded memory per inbound connection
_SNDHWM = 16  # frames in a peer's pipe before send() starts batching (see send)
# Replies queued in the ROUTER for one connection.  A requester waits for each reply, so a
# connection that reads has one in flight; one that does not read could otherwise pile up
# queue_limit replies of up to max_frame each.  Beyond it the reply is refused (the ROUTER
# is mandatory) and counted as dropped_replies.
_REPLY_HWM = 64
_STOP_LINGER_MS = 200  # lets the last acks and replies leave when a node stops
_JOIN_TIMEOUT = 5.0
_SLACK = 64  # bytes of framing allowed on top of a body within max_frame
_REDIAL_AFTER = 1.0  # seconds before dialling again a peer that refused our key
_REFUSED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)

_OP_REPLY, _OP_FORGET, _OP_WATCH, _OP_UNWATCH, _OP_ADOPT = range(5)
_MAX_IDENTITIES = 4096  # cached routing id -> sender entries (one per connection)
_ORPHAN_TTL = 30.0  # seconds the I/O thread waits for the late reply of a timed-out request
_MAX_ORPHANS = 64  # timed-out request sockets it keeps waiting on; beyond that, oldest close
# Plain ints: an enum.Flag costs a few µs per `|` and per conversion on the hot paths.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
# pyzmq's Socket.send is a Python wrapper (routing_id/group handling, which we never use)
# around the compiled send: calling the compiled one directly saves about 0.8 µs per frame.
_zsend: Callable[..., Any] = zmq.backend.Socket.send
_tuple_new = tuple.__new__  # Frame(...) without the Python-level __new__ of a NamedTuple
_POLLIN = int(zmq.POLLIN)
_CALLER_TICK_MS = 100  # a waiting caller looks at stop() and remove_peer() this often
_MANY = 256  # frames per batch frame from send_many
# A sending thread tries to flush its link's backlog when it reaches this many frames;
# after a try the socket refused, only when the backlog has doubled (see _flush).
_FLUSH_EVERY = 64
_BATCH_BYTES = 1 << 20  # bytes per batch frame from a backlog (8 MiB ones slowed 10 KiB bodies)
_BACKLOG_RETRY_MS = 2  # how often the I/O thread retries a backlog while one exists
_HOT_FOR = 0.05  # seconds it keeps retrying after the last backlog it saw (see _kick)
# A batch is ["bat", "", None, [frame, ...]]: each frame is itself a packed "msg" array,
# so a batch is the head, an array32 header and the frames concatenated.
_BATCH_HEAD = b"\x94\xa3bat\xa0\xc0"

_tls = threading.local()


class Frame(NamedTuple):
    sender: str  # node id from the authenticated Curve key (ZAP User-Id)
    channel: str
    body: Any


def _packer() -> msgpack.Packer:
    """A per-thread Packer: reusing one is about twice as fast as ``msgpack.packb``."""
    try:
        packer: msgpack.Packer = _tls.packer
    except AttributeError:
        packer = _tls.packer = msgpack.Packer(use_bin_type=True)
    return packer


def _unpack(data: Any) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _prefix(kind: str, channel: str) -> bytes:
    """The constant head of a frame: a 4-array header, the kind and the channel.

    A msgpack array is its header followed by its packed elements, so a frame is built by
    concatenating this head with the packed ident and body, and a retransmission reuses
    the packed body.
    """
    pack = _packer().pack
    return b"\x94" + pack(kind) + pack(channel)


def _send_batches(sock: zmq.Socket[bytes], frames: Sequence[bytes], limit: int, most: int) -> int:
    """Send ``frames`` in order as batch frames, as far as the socket takes them.

    The one batching loop (``send_many`` and a link's backlog both use it): each batch
    frame holds at most ``most`` frames and ``limit`` bytes of them (a single frame goes
    as itself).  Returns how many frames left; the rest stay with the caller.
    """
    start = 0
    total = len(frames)
    while start < total:
        rest = itertools.islice(frames, start, None) if start else frames
        if total - start <= most and sum(map(len, rest)) <= limit:
            count = total - start  # the common case, counted at C speed
        else:
            size = count = 0
            for frame in itertools.islice(frames, start, start + most):
                if count and size + len(frame) > limit:
                    break
                size += len(frame)
                count += 1
        if count == 1:
            payload = frames[start]
        else:
            chunk = frames[start : start + count]
            payload = b"".join([_BATCH_HEAD, b"\xdd", count.to_bytes(4, "big"), *chunk])
        try:
            _zsend(sock, payload, _NOBLOCK)
        except zmq.Again:
            break
        start += count
    return start
