"""The state every part of a Transport shares, its configuration checks, and small helpers.

The Transport is assembled from one mixin per concept, each in its own module and each
building on the one before (``_core`` -> ``_counters`` -> ``_links`` -> ``_reliable`` ->
``_sending`` -> ``_requests`` -> ``_serving`` -> ``_receive`` -> ``_loop`` ->
``_transport``).  Mixins rather than separate objects on purpose: the hot paths (send, the
router drain, inline delivery) read the shared state as attributes of ``self``, with no
extra layer of Python calls per frame, which is what keeps them at raw pyzmq's speed.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import secrets
import threading
import types
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import zmq

from evolution.errors import ConfigError, TransportError

from ._auth import Peer, _Authenticator, _check_endpoint, _check_key
from ._wire import _NOBLOCK, _SLACK, Frame, _packer, _zsend, log

if TYPE_CHECKING:
    from ._links import _Link
    from ._requests import _Caller, _Waiter
    from ._stream import RxBudget, RxStream

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
    # Refusals of the per-peer bounds (docs/transport.md, "Bounded peers"), in frames:
    "dropped_reorder",  # early reliable frames past a stream's frame bound
    "dropped_reorder_bytes",  # early reliable frames past the sender's byte budget
    "dropped_backlog_bytes",  # frames a link's backlog refused for its byte bound
    "dropped_unacked_bytes",  # send_reliable calls refused for the unacked byte bound
    "dropped_request_bytes",  # requests refused because the worker queue's bytes were full
    "dropped_replies",  # replies to a connection holding _REPLY_HWM unread ones, or gone
)
_GAUGES = (
    # Bytes held now in the buffers a peer can make grow (docs/transport.md):
    "reorder_bytes",  # early reliable frames held, all senders
    "backlog_bytes",  # frames waiting in the links' backlogs, all peers
    "unacked_bytes",  # reliable frames kept until acknowledged, all peers
    "request_bytes",  # requests waiting for a worker
)
_MIB = 1 << 20


class _Core:
    """Configuration, shared state, the key table, counters and waking the I/O thread."""

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
        max_reorder_bytes: int = 4 * _MIB,
        max_backlog_bytes: int = 16 * _MIB,
        max_unacked_bytes: int = 32 * _MIB,
        max_request_bytes: int = 32 * _MIB,
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
        self._check_bounds(
            max_reorder_bytes=max_reorder_bytes,
            max_backlog_bytes=max_backlog_bytes,
            max_unacked_bytes=max_unacked_bytes,
            max_request_bytes=max_request_bytes,
        )
        # Bytes a peer can make this node hold (see _init_state and docs/transport.md).
        self.max_reorder_bytes = max_reorder_bytes  # early frames held, per sender
        self.max_backlog_bytes = max_backlog_bytes  # a link's backlog; one-way: half
        self.max_unacked_bytes = max_unacked_bytes  # per (peer, channel) reliable stream
        self.max_request_bytes = max_request_bytes  # requests waiting for a worker
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
        self._init_state()

    def _init_state(self) -> None:
        """Handlers, links, streams, counters and the threads' state (nothing runs yet)."""
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
        self._rx: dict[tuple[str, str], RxStream] = {}  # owned by the I/O thread
        self._budgets: dict[str, RxBudget] = {}  # sender -> its streams' byte budget (I/O)
        # Bytes of requests put on the work queue (I/O thread) and taken off it (workers,
        # under _count_lock): their difference is what waits.
        self._work_in = 0
        self._work_out = 0
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
        self._hot_until = 0.0  # until when it does (the I/O thread's)
        self._io_thread: threading.Thread | None = None
        self._io_ident = -1  # its threading.get_ident(), set when it runs
        self._io_pack: Callable[[Any], bytes] = _packer().pack  # replaced by its own
        # Frames received and replies sent by the receive loop: written by the I/O thread
        # alone, so without the counter lock; stats() adds them.
        self._io_received = 0
        self._io_sent = 0
        self._work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []

    def _check_bounds(self, **bounds: int) -> None:
        for name, value in bounds.items():
            if type(value) is not int or value < 1:
                raise ConfigError(
                    f"transport of {self.node_id}: {name} ({value!r}) must be a positive "
                    "number of bytes",
                    hint="use the defaults unless a measurement says otherwise",
                )

    # ------------------------------------------------------------------ keys (any thread)

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

    def _name_of(self, key: bytes) -> str:
        """The node or client that owns a z85 public key, "" if none (ZAP thread)."""
        return self._names.get(key, "")

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

    # ------------------------------------------------------------------ waking the I/O thread

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
