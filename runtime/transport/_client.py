"""The client: a non-peer (the admin CLI) that makes requests to one node."""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Any

import zmq

from evolution.errors import TransportError

from ._auth import _check_endpoint, _check_key
from ._wire import _RCVHWM, _packer, _unpack


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
