"""The one authenticated transport between the nodes of a swarm (and the admin CLI).

Why it looks the way it does (details and measurements in docs/transport.md):

* **CurveZMQ, identity from the key.**  Every node listens on one ROUTER socket with
  ``curve_server`` on; a ZAP handler (pyzmq's :class:`ThreadAuthenticator`) admits only the
  public keys of known peers and clients and stamps each connection with a *User-Id* equal
  to the node id that owns the key.  The sender of a frame is read from that property,
  never from anything inside the frame, so a peer cannot speak for another.
* **Everything a node receives arrives on its ROUTER, read by one I/O thread.**  Each node
  reaches each peer through one DEALER (a Curve client that checks the peer's key); peers
  answer requests and acknowledge reliable frames through *their* DEALER to us, so the
  DEALERs are never read or polled.  That lets the calling thread send on a DEALER itself,
  holding the link's lock (a mutex is the full memory barrier ZeroMQ asks for when a
  socket changes threads): no hop through a queue and a second thread on the way out,
  which measured 60-100 µs per hop on a busy two-core machine.
* **A request travels on the caller's own socket.**  Each thread that calls
  :meth:`Transport.request` gets its own DEALER to that peer; the peer answers through its
  ROUTER to that connection, and the caller reads the reply itself, as in a raw
  DEALER/ROUTER round trip.  Every reply leaves through the ROUTER, so the I/O thread
  sends it (a worker's reply through the outbox).
* **Request handlers run on worker threads**, so a slow handler never stalls the receive
  loop; ``serve(..., inline=True)`` runs a quick one on the I/O thread instead, two thread
  hops fewer.  One-way handlers run on the I/O thread and must be quick.
* **Batching under pressure.**  When a peer's socket is full (it is not keeping up),
  frames wait in a bounded backlog, and the backlog leaves as batch frames: the receiver
  then pays its per-frame costs (decryption, the identity lookup, a decode) once per
  batch rather than once per frame, which is what lets it catch up.  An idle link sends
  each frame at once, so batching never adds latency (unless the opt-in ``coalesce``
  window asks for it).  The sender's identity is cached per connection.
* **A reliable channel on top.**  ZeroMQ drops whatever is queued when a connection or a
  socket goes away, so :meth:`Transport.send_reliable` numbers frames per (peer, channel),
  the receiver acknowledges cumulatively and delivers each number once and in order, and
  the sender retransmits what is still unacknowledged.  A receiver that meets a stream it
  does not know (it restarted, or the sender did) first asks the sender where the stream
  stands, so frames a previous incarnation already delivered are not delivered again.
* **Nothing a peer sends can crash a node**: frames that do not decode, have the wrong
  shape, are too large or name an unknown channel are dropped and counted.
* **A refused key is dialled again.**  libzmq gives up on a connection whose key the
  peer refused; during a membership change the peer may simply not know us yet, so a
  socket monitor notices the refusal and the link dials again every second.

Wire format: one ZeroMQ frame holding a msgpack array ``[kind, channel, ident, body]``,
kind one of ``msg`` (one-way), ``rel`` (reliable; ident ``[epoch, seq, first_unacked]``,
``seq == -1`` answers a sync request), ``ack`` (ident ``[epoch, last_delivered]``, or
``[epoch, None]`` to ask for a sync), ``req`` / ``rep`` / ``err`` (ident: request id),
``bat`` (body: a list of such frames from one sender, in order).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import re
import secrets
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from threading import get_ident
from time import perf_counter
from typing import Any, NamedTuple, NoReturn

import msgpack
import zmq
import zmq.backend
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from evolution.errors import ConfigError, TransportError

__all__ = ["RETRANSMIT_INTERVAL", "Client", "Frame", "Peer", "Transport"]

log = logging.getLogger(__name__)

RETRANSMIT_INTERVAL = 0.2
"""Seconds an unacknowledged reliable frame waits before it is sent again."""

_BATCH = 1024  # frames read from the ROUTER, or items from the work deque, per loop turn
_WORKERS = 4  # threads running request handlers
_RCVHWM = 1000  # ZeroMQ's default, stated: bounded memory per inbound connection
_SNDHWM = 16  # frames in a peer's pipe before send() starts batching (see send)
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

_ENDPOINT = re.compile(r"^tcp://[^\s:/]+:\d{1,5}$")
_NO_CLIENTS: Mapping[str, str] = types.MappingProxyType({})
_COUNTERS = (
    "sent",
    "received",
    "retransmits",
    "duplicates",
    "dropped_unknown_key",
    "dropped_undecodable",
    "dropped_oversize",
    "dropped_queue_full",
    "dropped_unknown_channel",
    "dropped_unknown_peer",
    "dropped_blocked",
    "dropped_not_allowed",
    "dropped_not_running",
    "late_replies",
    "handler_errors",
)

_tls = threading.local()


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


def _check_key(key: str, what: str) -> str:
    try:
        ok = isinstance(key, str) and len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            f"{what} has an invalid public key {key!r}: expected 40 z85 characters",
            hint="run `tars keys --config cluster.yml` and copy the keys it prints",
        )
    return key


def _check_endpoint(endpoint: str, what: str) -> str:
    if not isinstance(endpoint, str) or not _ENDPOINT.match(endpoint):
        raise ConfigError(
            f"{what} has an invalid endpoint {endpoint!r}",
            hint="use tcp://HOST:PORT, as built from host and port in cluster.yml",
        )
    return endpoint


@dataclass(frozen=True)
class Peer:
    node_id: str
    endpoint: str  # "tcp://127.0.0.1:7102"
    public_key: str  # z85


class Frame(NamedTuple):
    sender: str  # node id from the authenticated Curve key (ZAP User-Id)
    channel: str
    body: Any


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


class _TxStream:
    """Sender side of one reliable (peer, channel) stream: ``[seq, body, last_sent]`` entries."""

    __slots__ = ("next_seq", "prefix", "progress", "unacked")

    def __init__(self, channel: str) -> None:
        self.next_seq = 0
        self.prefix = _prefix("rel", channel)
        self.unacked: deque[list[Any]] = deque()
        self.progress = False  # acks advanced since the last retransmit tick

    def first_unacked(self) -> int:
        return int(self.unacked[0][0]) if self.unacked else self.next_seq


class _Link:
    """The outbound connection to one peer; ``lock`` guards the socket and the streams."""

    __slots__ = (
        "backlog",
        "flush_at",
        "last",
        "lock",
        "monitor",
        "peer",
        "redial_at",
        "refusals",
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
    ) -> None:
        self.peer = peer
        self.wake = wake
        self.sock: zmq.Socket[bytes] | None = sock
        self.monitor = monitor  # handshake failures; read by the I/O thread only
        self.lock = threading.Lock()
        self.streams: dict[str, _TxStream] = {}
        self.sent = 0
        self.retransmits = 0
        self.redial_at: float | None = None
        self.refusals = 0
        self.backlog: list[bytes] = []  # frames waiting for the socket, sent as batches
        self.flush_at = _FLUSH_EVERY  # backlog length at which the sender tries to flush
        self.last = 0.0  # perf_counter() of the last one-way send to the socket (coalescing)

    def send(self, payload: bytes, limit: int) -> bool:
        """Hand a frame to ZeroMQ without blocking, or queue it behind the backlog.

        The caller holds ``lock``.  False when the link is closed or ``limit`` frames wait.
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
        self.backlog.append(payload)
        if len(self.backlog) == 1:
            self.wake()  # the I/O thread retries until the backlog is gone
        return True

    def transmit(
        self, epoch: int, stream: _TxStream, entry: list[Any], now: float, limit: int
    ) -> bool:
        """Send one reliable frame stamped with the stream's first unacked seq (lock held)."""
        ident = _packer().pack([epoch, entry[0], stream.first_unacked()])
        if self.send(stream.prefix + ident + entry[1], limit):
            entry[2] = now
            return True
        return False


class _RxStream:
    """Receiver side of one reliable (sender, channel) stream."""

    __slots__ = ("buffer", "epoch", "expected", "synced")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.expected = 0
        self.synced = False
        self.buffer: dict[int, Any] = {}


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with the node id (not the key) as the connection's User-Id."""

    def __init__(self, context: zmq.Context[Any], transport: Transport) -> None:
        super().__init__(context=context, log=logging.getLogger(f"{__name__}.zap"))
        self._transport = transport

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._transport._names.get(z85.encode(client_public_key), "")


class _Credentials:
    """The credentials provider :meth:`ThreadAuthenticator.configure_curve_callback` asks."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def callback(self, domain: str, key: bytes) -> bool:
        return self._transport._admit(key)


class Transport:
    """A node's endpoint: one-way, reliable and request/reply traffic with its peers."""

    def __init__(
        self,
        node_id: str,
        endpoint: str,
        public_key: str,
        secret_key: str,
        peers: Iterable[Peer],
        *,
        clients: Mapping[str, str] = _NO_CLIENTS,
        max_frame: int = 8 << 20,
        queue_limit: int = 10_000,
        coalesce: float = 0.0,
    ) -> None:
        self.node_id = node_id
        self.endpoint = _check_endpoint(endpoint, f"node {node_id}")
        self._public = _check_key(public_key, f"node {node_id}")
        self._secret = secret_key
        if max_frame < 2 * _SLACK or queue_limit < 1:
            raise ConfigError(
                f"transport of {node_id}: max_frame ({max_frame}) must be at least "
                f"{2 * _SLACK} bytes and queue_limit ({queue_limit}) at least 1",
                hint="use the defaults unless a measurement says otherwise",
            )
        self.max_frame = max_frame
        self._max_body = max_frame - _SLACK
        if not 0.0 <= coalesce <= 0.01:
            raise ConfigError(
                f"transport of {node_id}: coalesce ({coalesce}) must be between 0 and 0.01 s",
                hint="0 (the default) sends every frame at once; 20e-6 is a good burst window",
            )
        self._coalesce = coalesce
        self._queue_limit = queue_limit
        self._hard_limit = 2 * queue_limit  # backlog room for replies, acks, reliable frames
        self._peers: dict[str, Peer] = {}
        self._clients: dict[str, str] = {}
        for name, key in clients.items():
            self._clients[name] = _check_key(key, f"client {name}")
        for peer in peers:
            if peer.node_id != node_id:  # cluster.yml lists every node, this one included
                self._check_peer(peer)
                self._peers[peer.node_id] = peer
        self._names: dict[bytes, str] = {}  # z85 public key -> peer or client name
        self._rebuild_names()

        self._subs: dict[str, Callable[[Frame], None]] = {}
        self._serves: dict[str, Callable[[str, Any], Any]] = {}
        # channel -> handler served on the I/O thread (serve(inline=True)); replaced whole
        self._inline: dict[str, Callable[[str, Any], Any]] = {}
        self._rep_prefixes: dict[str, bytes] = {}  # channel -> head of a "rep" frame
        self._local = threading.local()  # per thread: {peer: _Caller}
        self._callers: list[_Caller] = []  # every request socket, under _state_lock
        self._blocked: frozenset[str] = frozenset()
        self._links: dict[str, _Link] = {}  # replaced entries only under _state_lock
        self._pending: dict[int, _Waiter] = {}
        self._req_ids = itertools.count(1)
        self._epoch = secrets.randbits(62)
        self._prefixes: dict[tuple[str, str], bytes] = {}
        self._req_prefixes: dict[str, bytes] = {}  # channel -> head of a "req" frame
        self._msg_prefixes: dict[str, bytes] = {}
        self._outbox: deque[tuple[Any, ...]] = deque()  # work for the I/O thread
        self._rx: dict[tuple[str, str], _RxStream] = {}  # owned by the I/O thread
        self._identities: dict[bytes, str] = {}  # routing id -> User-Id; the I/O thread's
        self._watched: dict[zmq.Socket[bytes], _Link] = {}  # monitors; the I/O thread's
        # timed-out request sockets -> (peer, expiry): the I/O thread's
        self._orphans: dict[zmq.Socket[bytes], tuple[str, float]] = {}
        self._poller = zmq.Poller()  # the I/O thread's: monitors and orphans, read each tick

        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._count_lock = threading.Lock()
        self._logged_keys: set[bytes] = set()

        self._state_lock = threading.Lock()
        self._running = False
        self._stopping = False
        self._ctx: zmq.Context[Any] | None = None
        self._auth: _Authenticator | None = None
        self._router: zmq.Socket[bytes] | None = None
        self._wake_push: zmq.Socket[bytes] | None = None  # inproc DEALER to our own ROUTER
        # Its routing id: reserved ids start with a zero byte, so no peer can be given
        # this one, and one that picks it itself would have to guess 15 random bytes.
        self._wake_id = b"\x01" + secrets.token_bytes(15)
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._io_hot = False  # the I/O thread retries backlogs on its own (see _kick)
        self._io_thread: threading.Thread | None = None
        self._io_ident = -1  # its threading.get_ident(), set when it runs
        self._io_pack: Callable[[Any], bytes] = _packer().pack  # replaced by its own
        # Frames received and replies sent by the receive loop: written by the I/O thread
        # alone, so without the counter lock; stats() adds them.
        self._io_received = 0
        self._io_sent = 0
        self._work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind the ROUTER, connect to the peers and start the I/O, ZAP and worker threads."""
        with self._state_lock:
            if self._running or self._stopping:
                raise TransportError(
                    f"the transport of {self.node_id} was already started",
                    hint="create a new Transport to start again",
                )
            ctx: zmq.Context[Any] = zmq.Context()
            auth: _Authenticator | None = None
            router: zmq.Socket[bytes] | None = None
            try:
                auth = _Authenticator(ctx, self)
                auth.start()
                auth.configure_curve_callback(domain="*", credentials_provider=_Credentials(self))
                router = ctx.socket(zmq.ROUTER)
                router.curve_server = True
                router.curve_publickey = self._public.encode("ascii")
                router.curve_secretkey = self._secret.encode("ascii")
                router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_frame)
                router.sndhwm = self._queue_limit
                router.rcvhwm = _RCVHWM
                router.linger = 0
                try:
                    router.bind(self.endpoint)
                except zmq.ZMQError as exc:
                    if exc.errno == zmq.EADDRINUSE:
                        raise TransportError(
                            f"{self.node_id} cannot listen on {self.endpoint}: "
                            "the port is in use by another process",
                            hint="stop the other process or change the node's port in cluster.yml",
                        ) from exc
                    raise TransportError(
                        f"{self.node_id} cannot listen on {self.endpoint}: {exc}",
                        hint="check the node's host and port in cluster.yml",
                    ) from exc
            except BaseException:
                if router is not None:
                    router.close(0)
                if auth is not None:
                    auth.stop()
                ctx.term()
                raise
            # Wake-ups arrive on the ROUTER itself (an inproc connection: no handshake, and
            # only this process can reach it), so the I/O thread can block in recv() on
            # the ROUTER alone; a zmq_poll of two sockets cost 10-30 µs more per round trip.
            wake_address = f"inproc://tars-wake-{id(self)}"
            router.bind(wake_address)
            self._wake_push = ctx.socket(zmq.DEALER)
            self._wake_push.linger = 0
            self._wake_push.sndhwm = 4
            self._wake_push.setsockopt(zmq.ROUTING_ID, self._wake_id)
            self._wake_push.connect(wake_address)
            self._ctx, self._auth, self._router = ctx, auth, router
            for peer in self._peers.values():
                self._links[peer.node_id] = self._open_link(peer)
            self._running = True
            self._io_thread = threading.Thread(
                target=self._run, name=f"transport-io-{self.node_id}", daemon=True
            )
            self._io_thread.start()
            for i in range(_WORKERS):
                worker = threading.Thread(
                    target=self._serve_loop,
                    name=f"transport-worker-{self.node_id}-{i}",
                    daemon=True,
                )
                worker.start()
                self._workers.append(worker)

    def stop(self) -> None:
        """Stop every thread, close every socket and terminate this transport's own context."""
        with self._state_lock:
            if not self._running:
                return
            self._running = False
            self._stopping = True
            self._wake(force=True)
            if self._io_thread is not None:
                self._io_thread.join(_JOIN_TIMEOUT)
                if self._io_thread.is_alive():
                    log.error("the I/O thread of %s did not stop in time", self.node_id)
            for _ in self._workers:
                self._work.put(None)
            for worker in self._workers:
                worker.join(_JOIN_TIMEOUT)
                if worker.is_alive():
                    log.error("a request handler of %s still runs after stop()", self.node_id)
            for link in list(self._links.values()):
                self._close_link(link, _STOP_LINGER_MS)
            self._links = {}
            self._close_callers(None, 1.0)  # waiting callers see _stopping within a tick
            while self._outbox:  # the I/O thread is gone: its monitor sockets are ours now
                item = self._outbox.popleft()
                if item[0] in (_OP_WATCH, _OP_UNWATCH):
                    item[1].monitor.close(0)
                elif item[0] == _OP_ADOPT:
                    item[1].close(0)
            self._fail_pending(None, f"the transport of {self.node_id} stopped")
            if self._auth is not None:
                self._auth.stop()
            with self._wake_lock:
                if self._wake_push is not None:
                    self._wake_push.close(0)
                    self._wake_push = None
            if self._ctx is not None:
                self._ctx.term()
            self._ctx = self._auth = self._router = None

    def __enter__(self) -> Transport:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ registration

    def subscribe(self, channel: str, handler: Callable[[Frame], None]) -> None:
        """Deliver one-way and reliable frames on ``channel`` to ``handler`` (I/O thread)."""
        self._subs[channel] = handler

    def serve(
        self, channel: str, handler: Callable[[str, Any], Any], *, inline: bool = False
    ) -> None:
        """Answer requests on ``channel`` with ``handler(sender, body)``.

        The handler runs on a worker thread, so a slow one never stalls the receive loop.
        With ``inline=True`` it runs on the I/O thread instead, as it arrives, and the
        reply leaves at once: one thread hop fewer per request (the round trip of a raw
        DEALER/ROUTER echo), for handlers that are quick and never block, since nothing
        else is received while one runs.
        """
        self._serves[channel] = handler
        inline_handlers = {k: v for k, v in self._inline.items() if k != channel}
        if inline:
            inline_handlers[channel] = handler
        self._inline = inline_handlers  # replaced whole: the I/O thread reads it unlocked

    def add_peer(self, peer: Peer) -> None:
        """Admit ``peer``'s key and connect to it; a known id gets its new address and key.

        Unacknowledged reliable frames move to the new connection.
        """
        if peer.node_id == self.node_id:
            return
        self._check_peer(peer)
        with self._state_lock:
            self._rebuild_names({**self._peers, peer.node_id: peer})
            if not self._running:
                return
            new = self._open_link(peer)
            old = self._links.get(peer.node_id)
            if old is not None:
                with old.lock:
                    new.streams = old.streams
                    old.streams = {}
                self._close_link(old, 0)
            self._links[peer.node_id] = new
            self._close_callers(peer.node_id, 0)  # the ones in use: their owners reopen

    def remove_peer(self, node_id: str) -> None:
        """Forget ``node_id``: refuse its key, close its link, drop its unacknowledged frames."""
        with self._state_lock:
            if self._peers.pop(node_id, None) is None:
                return
            self._rebuild_names()
            link = self._links.pop(node_id, None)
            if link is not None:
                self._close_link(link, 0)
            self._close_callers(node_id, 0)
            if self._running:
                self._post((_OP_FORGET, node_id))
        self._fail_pending(node_id, f"{node_id} was removed from the peers of {self.node_id}")

    def block(self, peers: Iterable[str]) -> None:
        """Fault injection: drop all traffic to and from ``peers``; ``block([])`` heals."""
        self._blocked = frozenset(peers)

    # ------------------------------------------------------------------ sending

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
        with link.lock:
            backlog = link.backlog
            if self._coalesce or link.sock is None:
                if self._enqueue(link, prefix + data):
                    return True
            elif not backlog:
                try:
                    _zsend(link.sock, prefix + data, _NOBLOCK)
                    link.sent += 1
                    return True
                except zmq.Again:  # the peer is not keeping up: from now on, batches
                    backlog.append(prefix + data)
                    self._kick()  # the I/O thread retries until the backlog is gone
                    return True
            else:  # _enqueue, inlined
                if len(backlog) >= self._queue_limit:
                    self._flush(link)  # full: one more try before refusing the frame
                if len(backlog) < self._queue_limit:
                    backlog.append(prefix + data)
                    if len(backlog) >= link.flush_at:
                        self._flush(link)
                    return True
        self._bump("dropped_queue_full")
        return False

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
                limit = self._max_body
                while taken < len(frames):
                    count = size = 0
                    for frame in itertools.islice(frames, taken, taken + _MANY):
                        if count and size + len(frame) > limit:
                            break
                        size += len(frame)
                        count += 1
                    if count == 1:
                        payload = frames[taken]
                    else:
                        chunk = frames[taken : taken + count]
                        payload = b"".join([_BATCH_HEAD, b"\xdd", count.to_bytes(4, "big"), *chunk])
                    try:
                        _zsend(sock, payload, _NOBLOCK)
                    except zmq.Again:
                        break
                    link.sent += count
                    taken += count
            while taken < len(frames) and self._enqueue(link, frames[taken]):
                taken += 1
        if taken < len(frames):
            self._bump("dropped_queue_full", len(frames) - taken)
        return taken

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
        """Queue a one-way frame in the link's backlog (``link.lock`` held); False when full.

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
        backlog.append(payload)
        if len(backlog) == 1:
            self._kick()  # the I/O thread retries until the backlog is gone
        elif len(backlog) >= link.flush_at:
            self._flush(link)
        return True

    def send_reliable(self, peer: str, channel: str, body: Any) -> None:
        """Send a frame ``peer`` delivers exactly once and in order (per channel).

        Retransmitted every :data:`RETRANSMIT_INTERVAL` until acknowledged or until the
        peer is removed.  Raises TransportError when the peer is unknown or when
        ``queue_limit`` frames to it on this channel are still unacknowledged, rather than
        grow without bound.
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
                stream = link.streams[channel] = _TxStream(channel)
            if len(stream.unacked) >= self._queue_limit:
                full = True
            else:
                full = False
                entry = [stream.next_seq, data, 0.0]
                stream.next_seq += 1
                stream.unacked.append(entry)
                if not blocked:
                    link.transmit(self._epoch, stream, entry, time.monotonic(), self._hard_limit)
        if full:
            self._bump("dropped_queue_full")
            raise TransportError(
                f"{self.node_id} has {self._queue_limit} unacknowledged frames for {peer} on "
                f"channel {channel!r}: refusing more",
                hint=f"slow down until {peer} acknowledges, or check that it is up",
            )
        if blocked:
            self._bump("dropped_blocked")  # kept: retransmitted once the partition heals

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

    def stats(self) -> dict[str, int]:
        """Counters since start: traffic, retransmissions and every kind of dropped frame."""
        with self._count_lock:
            counts = dict(self._counts)
            callers = list(self._callers)
        counts["received"] += self._io_received
        counts["sent"] += self._io_sent
        for link in list(self._links.values()):
            counts["sent"] += link.sent
            counts["retransmits"] += link.retransmits
        for caller in callers:
            counts["sent"] += caller.sent
            counts["received"] += caller.received
        return counts

    # ------------------------------------------------------------------ helpers (any thread)

    def _unknown_peer(self, peer: str, channel: str) -> NoReturn:
        if peer in self._peers:
            self._bump("dropped_not_running")
            raise TransportError(
                f"the transport of {self.node_id} is not running: cannot reach {peer} on "
                f"channel {channel!r}",
                hint="call start() first (or do not use a stopped transport)",
            )
        self._bump("dropped_unknown_peer")
        raise TransportError(
            f"{self.node_id} cannot reach {peer!r} on channel {channel!r}: not a known peer",
            hint="add the node to cluster.yml (or call add_peer) first",
        )

    def _check_peer(self, peer: Peer) -> None:
        if not peer.node_id or not isinstance(peer.node_id, str):
            raise ConfigError(f"a peer of {self.node_id} has no node id", hint="fix cluster.yml")
        _check_endpoint(peer.endpoint, f"peer {peer.node_id}")
        _check_key(peer.public_key, f"peer {peer.node_id}")
        if peer.node_id in self._clients:
            raise ConfigError(
                f"{peer.node_id!r} names both a peer and a client of {self.node_id}",
                hint="give the client another name",
            )

    def _rebuild_names(self, peers: Mapping[str, Peer] | None = None) -> None:
        """Recompute key -> name; with ``peers``, commit them only if their keys are unique."""
        peers = self._peers if peers is None else peers
        names: dict[bytes, str] = {}
        owners = [(p.node_id, p.public_key) for p in peers.values()]
        owners += list(self._clients.items())
        for name, key in owners:
            raw = key.encode("ascii")
            if raw in names and names[raw] != name:
                raise ConfigError(
                    f"{names[raw]!r} and {name!r} share the public key {key}",
                    hint="every node and client needs its own key pair: run `tars keys`",
                )
            names[raw] = name
        if peers is not self._peers:
            self._peers = dict(peers)
        self._names = names  # replaced whole: the ZAP thread reads it without a lock

    def _admit(self, key: bytes) -> bool:
        """ZAP verdict for a connecting key (ZAP thread)."""
        if key in self._names:
            return True
        self._bump("dropped_unknown_key")
        if key not in self._logged_keys and len(self._logged_keys) < 1024:
            self._logged_keys.add(key)
            log.warning(
                "%s refused a connection with the unknown key %s; add the key to cluster.yml "
                "if that node or client should be admitted",
                self.node_id,
                key.decode("ascii", "replace"),
            )
        return False

    def _encode(self, body: Any, peer: str, channel: str) -> bytes:
        try:
            data: bytes = _packer().pack(body)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TransportError(
                f"cannot encode the body for {peer} on channel {channel!r}: {exc}",
                hint="send only msgpack types: None, bool, int, float, str, bytes, list, dict",
            ) from exc
        if len(data) > self._max_body:
            raise TransportError(
                f"the body for {peer} on channel {channel!r} is {len(data)} bytes, over the "
                f"{self.max_frame}-byte frame limit",
                hint="split it into chunks or raise max_frame on every node",
            )
        return data

    def _bump(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[name] += n

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
        link = _Link(peer, sock, monitor, self._kick)
        self._post((_OP_WATCH, link))
        return link

    def _flush(self, link: _Link) -> None:
        """Send the link's backlog as batch frames, as far as the socket takes them (lock held)."""
        backlog = link.backlog
        sock = link.sock
        limit = min(self._max_body, _BATCH_BYTES)
        while backlog and sock is not None:
            if sum(map(len, backlog)) <= limit:  # the common case, counted at C speed
                count = len(backlog)
            else:
                size = count = 0
                for frame in backlog:
                    if count and size + len(frame) > limit:
                        break
                    size += len(frame)
                    count += 1
            if count == 1:
                payload = backlog[0]
            else:
                payload = b"".join(
                    [_BATCH_HEAD, b"\xdd", count.to_bytes(4, "big"), *backlog[:count]]
                )
            try:
                _zsend(sock, payload, _NOBLOCK)
            except zmq.Again:
                # Full: a sender retries when the backlog has doubled, not on every
                # _FLUSH_EVERY frames (each try copies the whole batch).
                link.flush_at = 2 * len(backlog)
                return
            del backlog[:count]
            link.sent += count
        link.flush_at = _FLUSH_EVERY

    def _close_link(self, link: _Link, linger_ms: int) -> None:
        with link.lock:
            if link.sock is not None:
                link.sock.disable_monitor()
                link.sock.close(linger_ms)
                link.sock = None
            sent, retransmits = link.sent, link.retransmits
            link.sent = link.retransmits = 0
        with self._count_lock:
            self._counts["sent"] += sent
            self._counts["retransmits"] += retransmits
        self._post((_OP_UNWATCH, link))

    def _fail_pending(self, peer: str | None, error: str) -> None:
        for req_id, waiter in list(self._pending.items()):
            if peer is None or waiter.peer == peer:
                self._finish(req_id, None, error)

    def _finish(self, req_id: int, value: Any, error: str | None) -> bool:
        waiter = self._pending.pop(req_id, None)
        if waiter is None:
            return False
        waiter.value = value
        waiter.error = error
        waiter.done = True
        return True

    def _post(self, item: tuple[Any, ...]) -> None:
        self._outbox.append(item)
        self._wake()

    def _kick(self) -> None:
        """A backlog appeared: wake the I/O thread unless it already retries backlogs.

        Under sustained load a link's backlog comes and goes hundreds of times a second;
        a wake-up for each cost a context switch and a GIL hand-over from the sending
        thread.  While ``_io_hot`` is set the I/O thread looks every few milliseconds
        anyway.  It clears the flag before it checks the backlogs one last time and goes
        back to its long timeout, so a backlog that appears after that check sees the
        flag cleared and wakes it.
        """
        if not self._io_hot and not self._wake_pending:
            self._wake()

    def _wake(self, force: bool = False) -> None:
        """Wake the I/O thread; one wake-up in flight is enough, it drains everything."""
        if self._wake_pending and not force:
            return
        self._wake_pending = True
        with self._wake_lock:
            if self._wake_push is not None:
                # Again: wake-ups are already queued, the I/O thread will look anyway.
                with contextlib.suppress(zmq.Again):
                    _zsend(self._wake_push, b"", _NOBLOCK)

    # ------------------------------------------------------------------ I/O thread

    def _run(self) -> None:
        self._io_ident = get_ident()
        self._io_pack = _packer().pack  # this thread's Packer, at hand for the hot path
        router = self._router
        assert router is not None
        # The thread blocks in recv() on the ROUTER alone (RCVTIMEO bounds the wait), as a
        # raw echo server does; wake-ups arrive there too (see start).  A zmq_poll over
        # the ROUTER and a separate wake-up socket cost 10-30 µs more per round trip here.
        # The socket monitors and the sockets of timed-out requests wait for the next tick.
        recv = router.recv
        wake_id = self._wake_id
        rcvtimeo = -1  # what RCVTIMEO is set to now; setting it costs about 2 µs
        # A connection that goes away may leave its routing id to a later one: forget
        # every cached identity then (see _drain_router).
        gone: zmq.Socket[bytes] = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._poller.register(gone, zmq.POLLIN)
        try:
            next_tick = time.monotonic() + RETRANSMIT_INTERVAL
            hot_until = 0.0
            retry_ms = 1 if self._coalesce else _BACKLOG_RETRY_MS
            while not self._stopping:
                links = list(self._links.values())
                backlog = False
                for link in links:
                    if link.backlog:
                        backlog = True
                        break
                if self._outbox:
                    timeout = 0
                elif backlog:
                    self._io_hot = True
                    hot_until = time.monotonic() + _HOT_FOR
                    timeout = retry_ms
                elif self._io_hot and time.monotonic() < hot_until:
                    timeout = retry_ms  # backlogs came and went just now: more may follow
                elif self._io_hot:
                    self._io_hot = False  # from here on a new backlog wakes us (_kick)
                    if any(link.backlog for link in links):  # one that came meanwhile
                        self._io_hot = True
                        timeout = retry_ms
                    else:
                        timeout = max(0, int((next_tick - time.monotonic()) * 1000) + 1)
                else:
                    timeout = max(0, int((next_tick - time.monotonic()) * 1000) + 1)
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
                    next_tick = now + RETRANSMIT_INTERVAL
        finally:
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
                for key in [k for k in self._rx if k[0] == item[1]]:
                    del self._rx[key]
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
            self._bump("dropped_queue_full", dropped)

    def _retransmit(self, now: float) -> None:
        due = now - RETRANSMIT_INTERVAL
        blocked = self._blocked
        epoch = self._epoch
        for link in list(self._links.values()):
            if link.peer.node_id in blocked or not link.streams or link.backlog:
                continue  # a congested link gets no extra load: the backlog goes first
            with link.lock:
                for stream in link.streams.values():
                    if stream.progress:
                        # The receiver is working through what it has: resending now would
                        # only pile duplicates on a busy node.  A gap stops the progress,
                        # and the next tick resends from the gap.
                        stream.progress = False
                        continue
                    for entry in stream.unacked:
                        if link.backlog:
                            break  # the peer stopped taking frames: try again next tick
                        if entry[2] > due:
                            continue
                        if not link.transmit(epoch, stream, entry, now, self._queue_limit):
                            break
                        link.retransmits += 1

    def _drain_router(self, router: zmq.Socket[bytes], first: bytes) -> None:
        """Every frame this node receives; the sender is the connection's ZAP User-Id.

        ``first`` is the routing id of the first message, already read by the I/O loop.
        """
        recv = router.recv
        peers = self._peers
        clients = self._clients
        subs = self._subs
        blocked = self._blocked
        max_frame = self.max_frame
        identities = self._identities
        inline = self._inline
        rep_prefixes = self._rep_prefixes
        max_body = self._max_body
        pack = self._io_pack
        zsend = _zsend
        unpackb = msgpack.unpackb
        new = _tuple_new
        acks: dict[tuple[str, str], _RxStream] = {}
        tally: dict[str, int] = {}  # counters of the rarer outcomes
        received = undecodable = unknown_channel = sent = 0
        for i in range(_BATCH):
            if self._stopping:  # deliver nothing more: what is not acked is sent again
                break
            if i == 0:
                rid = first
            else:
                # One frame is the common case when idle (a request, a heartbeat): asking
                # the socket is cheaper than the exception an empty recv() raises.
                if i == 1 and not int(router.getsockopt(_EVENTS)) & _POLLIN:
                    break
                try:
                    rid = recv(_NOBLOCK)
                except zmq.Again:
                    break
            frame = recv(_NOBLOCK, copy=False)  # the parts of a message arrive together
            if frame.more:
                while router.getsockopt(zmq.RCVMORE):
                    recv(zmq.NOBLOCK)
                undecodable += 1
                continue
            sender: Any = identities.get(rid)
            if sender is None:
                if rid == self._wake_id:  # a wake-up (see start), not a frame from a peer
                    self._wake_pending = False
                    continue
                try:
                    sender = frame.get("User-Id")  # about 1.5 µs: once per connection
                except zmq.ZMQError:
                    sender = ""
                # Only ids the ROUTER made itself (a zero byte and a counter that starts at
                # random): a peer can choose its own id, but not one of those while it is
                # in use, and the cache is cleared whenever a connection goes away.
                if sender and len(rid) == 5 and rid[0] == 0 and len(identities) < _MAX_IDENTITIES:
                    identities[rid] = sender
            if sender in blocked:
                tally["dropped_blocked"] = tally.get("dropped_blocked", 0) + 1
                continue
            is_peer = sender in peers
            if not is_peer and sender not in clients:
                tally["dropped_unknown_key"] = tally.get("dropped_unknown_key", 0) + 1
                continue  # admitted once, removed since
            if len(frame) > max_frame:
                tally["dropped_oversize"] = tally.get("dropped_oversize", 0) + 1
                continue
            try:
                msg = unpackb(frame, raw=False, strict_map_key=False)
            except Exception:
                undecodable += 1
                continue
            if type(msg) is not list or len(msg) != 4 or type(msg[1]) is not str:
                undecodable += 1
                continue
            kind = msg[0]
            if kind == "msg" and is_peer:  # the hot path, inlined
                handler = subs.get(msg[1])
                if handler is None:
                    unknown_channel += 1
                    continue
                received += 1
                try:
                    handler(new(Frame, (sender, msg[1], msg[3])))
                except Exception:
                    self._bump("handler_errors")
                    log.exception("%s: handler of channel %r failed", self.node_id, msg[1])
            elif kind == "req":
                answer = inline.get(msg[1])
                if answer is not None and type(msg[2]) is int:  # answered here and now
                    received += 1
                    try:
                        data = pack(answer(sender, msg[3]))
                        if len(data) > max_body:
                            raise self._oversize_reply(data)
                    except Exception as exc:
                        reply = self._error_reply(msg[1], msg[2], exc)
                    else:
                        head = rep_prefixes.get(msg[1]) or self._rep_prefix(msg[1])
                        reply = head + pack(msg[2]) + data
                    try:
                        zsend(router, rid, _MORE_NOBLOCK)
                        zsend(router, reply, _NOBLOCK)
                        sent += 1
                    except zmq.ZMQError:
                        tally["dropped_queue_full"] = tally.get("dropped_queue_full", 0) + 1
                elif type(msg[2]) is int:  # for a worker, or not served: an error reply
                    received += 1
                    self._on_request(rid, sender, is_peer, msg[1], msg[2], msg[3])
                else:
                    undecodable += 1
                # The requester waits for this reply, so nothing more from it is queued:
                # back to the blocking recv, without asking the socket (about 2 µs here).
                if i == 0:
                    break
            elif kind == "bat" and is_peer and type(msg[3]) is list:
                for inner in msg[3]:  # frames a congested peer sent together (see send)
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
                            self._bump("handler_errors")
                            log.exception(
                                "%s: handler of channel %r failed", self.node_id, inner[1]
                            )
                    elif inner[0] == "bat":
                        undecodable += 1
                    else:
                        outcome = self._handle(rid, sender, is_peer, inner, acks)
                        tally[outcome] = tally.get(outcome, 0) + 1
            else:
                outcome = self._handle(rid, sender, is_peer, msg, acks)
                tally[outcome] = tally.get(outcome, 0) + 1
        if acks:
            for (sender, channel), stream in acks.items():
                self._send_ack(sender, channel, stream)
        # Only this thread writes these two, so they need no lock (stats() reads them).
        self._io_received += received
        self._io_sent += sent
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
        acks: dict[tuple[str, str], _RxStream],
    ) -> str:
        """Act on one decoded frame other than a peer's one-way frame; name its counter."""
        kind, channel, ident, body = msg
        if kind == "req":
            if type(ident) is not int:
                return "dropped_undecodable"
            self._on_request(rid, sender, is_peer, channel, ident, body)
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

    def _on_reliable(
        self,
        sender: str,
        channel: str,
        ident: list[int],
        body: Any,
        handler: Callable[[Frame], None],
    ) -> _RxStream:
        epoch, seq, first_unacked = ident
        key = (sender, channel)
        stream = self._rx.get(key)
        if stream is None or stream.epoch != epoch:  # a new stream, or the sender restarted
            stream = self._rx[key] = _RxStream(epoch)
        buffer = stream.buffer
        if seq < 0:  # the answer to our sync request: this is where the stream stands
            if not stream.synced or first_unacked > stream.expected:
                stream.expected = first_unacked
                stream.synced = True
                for old in [s for s in buffer if s < first_unacked]:
                    del buffer[old]
        elif stream.synced:
            if first_unacked > stream.expected:  # all below it was delivered (and acked) before
                stream.expected = first_unacked
                for old in [s for s in buffer if s < first_unacked]:
                    del buffer[old]
            if seq < stream.expected:
                self._bump("duplicates")
                return stream
            if seq > stream.expected:
                if len(buffer) < self._queue_limit:
                    buffer[seq] = body
                return stream
            self._deliver(sender, channel, body, handler)
            stream.expected += 1
        else:  # not synced yet: keep it until the sender says where the stream starts
            if len(buffer) < self._queue_limit:
                buffer[seq] = body
            return stream
        while stream.expected in buffer and not self._stopping:
            self._deliver(sender, channel, buffer.pop(stream.expected), handler)
            stream.expected += 1
        return stream

    def _deliver(
        self, sender: str, channel: str, body: Any, handler: Callable[[Frame], None]
    ) -> None:
        try:
            handler(Frame(sender, channel, body))
        except Exception:  # delivered all the same: a retry would fail the same way
            self._bump("handler_errors")
            log.exception("%s: handler of channel %r failed", self.node_id, channel)

    def _send_ack(self, sender: str, channel: str, stream: _RxStream) -> None:
        link = self._links.get(sender)
        if link is None:
            return
        prefix = self._prefixes.get(("ack", channel))
        if prefix is None:
            prefix = self._prefixes[("ack", channel)] = _prefix("ack", channel)
        last = stream.expected - 1 if stream.synced else None
        payload = prefix + _packer().pack([stream.epoch, last]) + b"\xc0"
        with link.lock:
            link.send(payload, self._hard_limit)  # if lost, the frame is sent and acked again

    def _on_ack(self, sender: str, channel: str, epoch: Any, acked: Any) -> None:
        link = self._links.get(sender)
        if link is None or epoch != self._epoch:
            return
        with link.lock:
            stream = link.streams.get(channel)
            if stream is None:
                return
            if acked is None:  # the receiver does not know this stream: say where it stands
                ident = _packer().pack([self._epoch, -1, stream.first_unacked()])
                link.send(stream.prefix + ident + b"\xc0", self._hard_limit)
            elif type(acked) is int:
                unacked = stream.unacked
                while unacked and unacked[0][0] <= acked:
                    unacked.popleft()
                    stream.progress = True

    def _on_request(
        self, rid: bytes, sender: str, is_peer: bool, channel: str, req_id: int, body: Any
    ) -> None:
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
        self._work.put((rid, sender, is_peer, channel, req_id, body, handler))

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
            except zmq.ZMQError:
                self._bump("dropped_queue_full")
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
            rid, sender, is_peer, channel, req_id, body, handler = item
            kind, data = self._answer(handler, sender, channel, body)
            try:
                self._reply(rid, sender, is_peer, kind, channel, req_id, data)
            except Exception:  # pragma: no cover - a closed socket during stop()
                log.exception("%s: cannot send a reply on channel %r", self.node_id, channel)


class Client:
    """A non-peer (the CLI) that makes requests to one node with its own key pair.

    Single-threaded on purpose: it owns one DEALER socket and no I/O thread, so it is cheap
    to create for one command; use one Client per thread.
    """

    def __init__(
        self, endpoint: str, server_public_key: str, public_key: str, secret_key: str
    ) -> None:
        self.endpoint = _check_endpoint(endpoint, "the client's server")
        _check_key(server_public_key, f"the node at {endpoint}")
        _check_key(public_key, "the client")
        self._ctx: zmq.Context[Any] | None = zmq.Context()
        self._sock: zmq.Socket[bytes] | None = self._ctx.socket(zmq.DEALER)
        sock = self._sock
        sock.linger = 0
        sock.curve_serverkey = server_public_key.encode("ascii")
        sock.curve_publickey = public_key.encode("ascii")
        sock.curve_secretkey = secret_key.encode("ascii")
        sock.sndhwm = _RCVHWM
        sock.rcvhwm = _RCVHWM
        sock.connect(endpoint)
        self._ids = itertools.count(1)

    def request(self, channel: str, body: Any, timeout: float = 5.0) -> Any:
        """Send a request and return the reply body; TransportError on an error reply or timeout."""
        sock = self._sock
        if sock is None:
            raise TransportError(
                f"the client of {self.endpoint} is closed", hint="create a new Client"
            )
        req_id = next(self._ids)
        try:
            data = _packer().pack(["req", channel, req_id, body])
        except (TypeError, ValueError, OverflowError) as exc:
            raise TransportError(
                f"cannot encode the request body for channel {channel!r}: {exc}",
                hint="send only msgpack types: None, bool, int, float, str, bytes, list, dict",
            ) from exc
        deadline = time.monotonic() + timeout
        # Again (not connected and already full): the wait below times out.
        with contextlib.suppress(zmq.Again):
            sock.send(data, zmq.NOBLOCK)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1):
                if time.monotonic() < deadline:
                    continue
                raise TransportError(
                    f"no reply from {self.endpoint} on channel {channel!r} within {timeout:g} s",
                    hint="check that the node is running at that address and that this "
                    "client's public key is among its allowed clients in cluster.yml",
                )
            try:
                kind, _channel, ident, reply = _unpack(sock.recv())
            except Exception:
                continue
            if ident != req_id:
                continue  # the late answer to an earlier request that timed out
            if kind == "rep":
                return reply
            raise TransportError(
                f"request to {self.endpoint} on channel {channel!r} failed: {reply}",
                hint="see the node's log",
            )

    def close(self) -> None:
        """Close the socket and terminate the client's own context; idempotent."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
