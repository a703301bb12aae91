"""The Transport: a node's endpoint, assembled; its lifecycle and its registrations.

Everything else lives in one module per concept (see ``_core`` for the order they build
on each other); this one starts and stops the threads and sockets, and takes the
handlers and the changes of membership.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import zmq

from evolution.errors import TransportError

from ._auth import Peer, _Authenticator, _Credentials
from ._loop import _IoLoop
from ._wire import (
    _JOIN_TIMEOUT,
    _OP_ADOPT,
    _OP_FORGET,
    _OP_UNWATCH,
    _OP_WATCH,
    _RCVHWM,
    _REPLY_HWM,
    _STOP_LINGER_MS,
    _WORKERS,
    Frame,
    log,
)


class Transport(_IoLoop):
    """A node's endpoint: one-way, reliable and request/reply traffic with its peers."""

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
                auth = _Authenticator(ctx, self._name_of)
                auth.start()
                auth.configure_curve_callback(
                    domain="*", credentials_provider=_Credentials(self._admit)
                )
                router = ctx.socket(zmq.ROUTER)
                router.curve_server = True
                router.curve_publickey = self._public.encode("ascii")
                router.curve_secretkey = self._secret.encode("ascii")
                router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_frame)
                router.sndhwm = _REPLY_HWM  # per connection: see _wire
                router.router_mandatory = True  # a refused reply raises: it is counted
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
