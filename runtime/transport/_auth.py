"""Who may talk to a node: key and endpoint checks, and the CurveZMQ (ZAP) login.

The sender of a frame is the node id that owns the connection's Curve key, stamped on the
connection by the ZAP handler as its *User-Id*; nothing inside a frame can change it, so
a peer cannot speak for another.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from evolution.errors import ConfigError

_ENDPOINT = re.compile(r"^tcp://[^\s:/]+:\d{1,5}$")


@dataclass(frozen=True)
class Peer:
    node_id: str
    endpoint: str  # "tcp://127.0.0.1:7102"
    public_key: str  # z85


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


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, with the node id (not the key) as the connection's User-Id.

    ``name_of`` maps a z85 public key to the node or client that owns it ("" if none):
    the transport's key table, which it replaces whole when peers change.
    """

    def __init__(self, context: zmq.Context[Any], name_of: Callable[[bytes], str]) -> None:
        super().__init__(context=context, log=logging.getLogger("runtime.transport.zap"))
        self._name_of = name_of

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._name_of(z85.encode(client_public_key))


class _Credentials:
    """The credentials provider :meth:`ThreadAuthenticator.configure_curve_callback` asks."""

    def __init__(self, admit: Callable[[bytes], bool]) -> None:
        self._admit = admit

    def callback(self, domain: str, key: bytes) -> bool:
        return self._admit(key)
