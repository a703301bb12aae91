"""Remote actor messages: ``ask`` and ``tell`` an actor of another node over the transport.

pykka actors take typed messages (``actors/messages.py``); this module carries them
between nodes as msgpack, never as pickle.  A message and its answer are encoded with
msgpack extension types: ``OBJECT`` wraps ``[type name, fields]`` of a NamedTuple, a
dataclass or a pydantic model, ``TUPLE`` keeps a tuple a tuple.  Only types registered
in a :class:`Codec` are ever built on the receiving side (a peer cannot name a class to
import), and fields are checked by the type's own constructor (pydantic validates).

On the wire:

* ``ask`` is a request on channel ``"actor"``: ``{"actor": name, "message": bytes}``;
  the reply is ``{"value": bytes}`` or ``{"error": kind, "message": text, "hint": text}``
  for an answer that is an error (a :class:`TarsError` raised by the actor);
* ``tell`` is a reliable one-way frame on channel ``"actor.tell"`` (acknowledged and
  numbered by the transport, so it arrives once and in order while both nodes run).

A remote ref has the surface of ``pykka.ActorRef`` that the supervisor uses (``ask`` with
``block=False`` returning a future, ``tell``, ``is_alive``, ``stop``), so a pool can mix
local and remote actors.  When the peer cannot be reached the future fails with
:class:`RemoteUnavailable` (a :class:`TransportError` in the ``TarsError`` tree, with a hint
the user can act on), which is *not* an answer from the actor: the supervisor catches it
before ``TarsError`` and treats it like a crashed actor, retrying the message on a fresh
local one.  A peer that will not act on a message (a type its actor does not take from
peers, a reference to something it does not hold) answers :class:`Refused`: not the
actor's answer either, and the supervisor runs the message on a local actor instead.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgpack
import pykka
from pydantic import BaseModel

from evolution import errors
from evolution.errors import RemoteUnavailable, TarsError, TransportError

logger = logging.getLogger(__name__)

ASK = "actor"
TELL = "actor.tell"
OBJECT = 1
TUPLE = 2

__all__ = [
    "ASK",
    "OBJECT",
    "TELL",
    "TUPLE",
    "Codec",
    "MessageTransport",
    "RemoteActorRef",
    "Refused",
    "RemoteUnavailable",
    "serve",
]


class Refused(TransportError):  # noqa: N818 (reads as what happened, like RemoteUnavailable)
    """A peer would not act on a message: its actor does not take that type from peers, or
    the message refers to something the peer does not hold (an offer it never committed).

    An answer of the peer, not of the actor: the supervisor runs the message on a local
    actor instead (and leaves the peer in the pool).  The serving side counts each one.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or "the message runs on a local actor instead; see the peer's node.log",
        )


#: Errors of this module a peer may answer with, by name (besides evolution.errors').
_OWN_ERRORS: dict[str, type[TarsError]] = {"Refused": Refused}


class MessageTransport(Protocol):
    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any: ...

    def send_reliable(self, peer: str, channel: str, body: Any) -> None: ...

    def serve(self, channel: str, handler: Callable[[str, Any], Any]) -> None: ...

    def subscribe(self, channel: str, handler: Callable[[Any], None]) -> None: ...


class Codec:
    """msgpack with the registered message types, and nothing else, as objects."""

    def __init__(self, types: Iterable[type]) -> None:
        self._by_name: dict[str, type] = {}
        for kind in types:
            if not (
                _is_namedtuple(kind)
                or dataclasses.is_dataclass(kind)
                or issubclass(kind, BaseModel)
            ):
                raise TypeError(
                    f"{kind.__name__} is not a NamedTuple, a dataclass or a pydantic model"
                )
            self._by_name[kind.__name__] = kind
        self._names = {kind: name for name, kind in self._by_name.items()}

    def encode(self, value: Any) -> bytes:
        try:
            packed: bytes = msgpack.packb(
                value, default=self._default, use_bin_type=True, strict_types=True
            )
        except (TypeError, ValueError) as exc:
            raise TransportError(
                f"cannot send {type(value).__name__} to a remote actor: {exc}"
            ) from exc
        return packed

    def decode(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, ext_hook=self._ext, raw=False, strict_map_key=False)
        except TarsError:
            raise
        except Exception as exc:  # msgpack, the type's constructor or pydantic
            raise TransportError(f"a remote actor message does not decode: {exc}") from exc

    def _default(self, value: Any) -> msgpack.ExtType:
        kind = type(value)
        name = self._names.get(kind)
        if name is None:
            if kind is tuple:
                return msgpack.ExtType(TUPLE, self.encode(list(value)))
            raise TypeError(f"{kind.__name__} is not a registered remote message type")
        if isinstance(value, BaseModel):
            fields: dict[str, Any] = value.model_dump(mode="json")
        elif _is_namedtuple(kind):
            fields = value._asdict()
        else:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return msgpack.ExtType(OBJECT, self.encode([name, fields]))

    def _ext(self, code: int, data: bytes) -> Any:
        if code == TUPLE:
            items = self.decode(data)
            if not isinstance(items, list):
                raise TransportError("a remote tuple is not a list")
            return tuple(items)
        if code != OBJECT:
            raise TransportError(f"unknown msgpack extension {code} in a remote actor message")
        body = self.decode(data)
        if not (
            isinstance(body, list)
            and len(body) == 2
            and isinstance(body[0], str)
            and isinstance(body[1], dict)
        ):
            raise TransportError("a remote object is not [type, fields]")
        kind = self._by_name.get(body[0])
        if kind is None:
            raise TransportError(f"{body[0]!r} is not a message type this node accepts")
        if issubclass(kind, BaseModel):
            return kind.model_validate(body[1])
        return kind(**body[1])


class RemoteActorRef:
    """An actor on another node, used like a ``pykka.ActorRef``."""

    def __init__(
        self,
        transport: MessageTransport,
        peer: str,
        actor: str,
        codec: Codec,
        *,
        timeout: float = 600.0,
    ) -> None:
        self.transport = transport
        self.peer = peer
        self.actor = actor
        self.codec = codec
        self.timeout = timeout
        self.asks = 0

    def __repr__(self) -> str:
        return f"RemoteActorRef({self.actor}@{self.peer})"

    def is_alive(self) -> bool:
        return True  # a dead peer shows as RemoteUnavailable on the next ask

    def stop(self, block: bool = True) -> None:
        """Nothing to stop here: the actor belongs to its node."""

    def tell(self, message: Any) -> None:
        try:
            self.transport.send_reliable(
                self.peer, TELL, {"actor": self.actor, "message": self.codec.encode(message)}
            )
        except TransportError as exc:
            raise RemoteUnavailable(f"{self.actor}@{self.peer}: {exc}") from exc

    def ask(self, message: Any, *, block: bool = True, timeout: float | None = None) -> Any:
        """The answer (``block=True``) or a pykka future of it (``block=False``)."""
        body = {"actor": self.actor, "message": self.codec.encode(message)}
        wait = timeout if timeout is not None else self.timeout
        self.asks += 1
        if block:
            return self._ask(body, wait)
        future: pykka.Future[Any] = pykka.ThreadingFuture()

        def run() -> None:
            try:
                future.set(self._ask(body, wait))
            except BaseException as exc:  # the future carries it to the caller
                future.set_exception((type(exc), exc, exc.__traceback__))

        threading.Thread(
            target=run, name=f"remote-ask-{self.actor}@{self.peer}", daemon=True
        ).start()
        return future

    def _ask(self, body: dict[str, Any], timeout: float) -> Any:
        try:
            reply = self.transport.request(self.peer, ASK, body, timeout=timeout)
        except TransportError as exc:
            raise RemoteUnavailable(f"{self.actor}@{self.peer}: {exc}") from exc
        if not isinstance(reply, dict):
            raise RemoteUnavailable(f"{self.actor}@{self.peer} sent a malformed reply")
        if "error" in reply:
            raise _error(reply, self.peer)
        value = reply.get("value")
        if not isinstance(value, bytes):
            raise RemoteUnavailable(f"{self.actor}@{self.peer} sent a malformed reply")
        return self.codec.decode(value)


def serve(
    transport: MessageTransport,
    codec: Codec,
    asks: dict[str, Callable[[Any], Any]],
    tells: dict[str, Callable[[Any], None]] | None = None,
    accepts: dict[str, tuple[type, ...]] | None = None,
    *,
    asks_from: dict[str, Callable[[str, Any], Any]] | None = None,
    refused: Callable[[str, Refused], None] | None = None,
) -> None:
    """Let peers ask (``asks``) and tell (``tells``) this node's actors, by name.

    ``accepts`` limits which message types each actor takes (all the codec's if absent):
    a peer cannot send an incubator a message only a validator should see.  ``asks_from``
    are asks whose handler is also told the authenticated sender.  Every refusal (a
    malformed message, an actor not served, a type the codec or the actor does not take,
    a handler's own :class:`Refused`) goes back as :class:`Refused` and is told to
    ``refused`` (sender, error), so the serving side can count it.
    """
    tells = tells or {}
    accepts = accepts or {}
    table: dict[str, Callable[[str, Any], Any]] = {
        name: _ignoring_sender(handler) for name, handler in asks.items()
    }
    table.update(asks_from or {})

    def message_for(sender: str, body: Any, table: dict[str, Any]) -> tuple[Any, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("message"), bytes):
            raise Refused(f"a remote actor message from {sender} is malformed")
        name = str(body.get("actor"))
        target = table.get(name)
        if target is None:
            raise Refused(
                f"no actor {name!r} takes remote messages here (known: {', '.join(sorted(table))})"
            )
        try:
            message = codec.decode(body["message"])
        except TransportError as exc:
            raise Refused(exc.message) from exc
        allowed = accepts.get(name)
        if allowed is not None and not isinstance(message, allowed):
            raise Refused(f"actor {name!r} does not take {type(message).__name__} from peers")
        return target, message

    def on_ask(sender: str, body: Any) -> Any:
        try:
            target, message = message_for(sender, body, table)
            return {"value": codec.encode(target(sender, message))}
        except RemoteUnavailable:
            raise  # a failure of the channel (as before it joined the TarsError tree)
        except TarsError as exc:  # an answer (or a refusal), not a failure of the channel
            if isinstance(exc, Refused):
                logger.warning("refused a remote ask from %s: %s", sender, exc.message)
                if refused is not None:
                    refused(sender, exc)
            return {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint or ""}

    def on_tell(frame: Any) -> None:
        try:
            target, message = message_for(frame.sender, frame.body, tells)
            target(message)
        except RemoteUnavailable:
            raise  # a failure of the channel (as before it joined the TarsError tree)
        except TarsError as exc:
            if isinstance(exc, Refused) and refused is not None:
                refused(frame.sender, exc)
            logger.warning("dropped a remote tell from %s: %s", frame.sender, exc)

    transport.serve(ASK, on_ask)
    if tells:
        transport.subscribe(TELL, on_tell)


def _error(reply: dict[str, Any], peer: str) -> TarsError:
    """The remote actor's TarsError, as the same class where it is one of ours."""
    name = str(reply.get("error"))
    kind = _OWN_ERRORS.get(name) or getattr(errors, name, None)
    cls = kind if isinstance(kind, type) and issubclass(kind, TarsError) else TarsError
    message = f"{peer}: {reply.get('message', '')}"
    return cls(message, hint=str(reply.get("hint") or "")) if reply.get("hint") else cls(message)


def _ignoring_sender(handler: Callable[[Any], Any]) -> Callable[[str, Any], Any]:
    return lambda sender, message: handler(message)


def _is_namedtuple(kind: type) -> bool:
    return issubclass(kind, tuple) and hasattr(kind, "_fields")
