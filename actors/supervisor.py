"""One-for-one supervision: a crashed actor is replaced and the message retried.

Erlang/OTP's idea in a small form.  A ``TarsError`` is an answer (a candidate that
cannot be generated, a store that refuses a write) and goes back to the caller; any
other exception is a bug in the actor or a dead actor thread, so the actor is stopped,
a fresh one started from its factory and the same message sent again.  A remote actor
whose node does not answer (:class:`RemoteUnavailable`, itself a ``TarsError`` so the
CLI prints it well) is not an answer: it is caught first and handled like a crash.  A
peer that refuses a message (:class:`~runtime.remote.Refused`: it does not hold what the
message refers to) is not the actor's answer either: the message runs on one of the
role's local actors instead, and the peer stays in the pool for the next message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from evolution.errors import RemoteUnavailable, TarsError
from runtime.remote import Refused

log = logging.getLogger(__name__)


class SupervisionError(TarsError):
    """An actor kept crashing on the same message."""


@dataclass
class _Role:
    factory: Callable[[], pykka.ActorRef[Any]]
    refs: list[pykka.ActorRef[Any]] = field(default_factory=list)
    restarts: int = 0


class Supervisor:
    """Starts actors by role, restarts them when they crash, stops them all at the end."""

    def __init__(self, max_retries: int = 2) -> None:
        self.max_retries = max_retries
        #: messages a peer refused, which then ran on a local actor
        self.refused = 0
        self._roles: dict[str, _Role] = {}
        self._lock = threading.Lock()
        self._next = 0

    def start(self, role: str, factory: Callable[[], pykka.ActorRef[Any]], size: int = 1) -> None:
        """Start ``size`` actors for ``role`` (a pool when size > 1).

        Starting a role again replaces its actors: the old local ones are stopped, never leaked.
        """
        old = self._roles.get(role)
        if old is not None:
            for ref in old.refs:
                if isinstance(ref, pykka.ActorRef):
                    ref.stop()
        entry = _Role(factory)
        entry.refs = [factory() for _ in range(size)]
        self._roles[role] = entry

    def add(self, role: str, ref: Any) -> None:
        """Add an actor to a role's pool: a remote one (``runtime.remote.RemoteActorRef``)
        included.  If it fails, it is replaced by a fresh local actor from the role's factory."""
        self._roles[role].refs.append(ref)

    def restarts(self, role: str) -> int:
        return self._roles[role].restarts

    def refs(self, role: str) -> list[pykka.ActorRef[Any]]:
        return list(self._roles[role].refs)

    def ask(
        self, role: str, message: Any, timeout: float | None = None, *, local: bool = False
    ) -> Any:
        """Ask one actor of ``role``; restart and retry on a crash."""
        return self.ask_all(role, [message], timeout, local=local)[0]

    def ask_all(
        self,
        role: str,
        messages: Sequence[Any],
        timeout: float | None = None,
        *,
        local: bool = False,
    ) -> list[Any]:
        """Spread messages over the role's pool, wait for every answer, in order.

        ``local`` keeps them on this node's own actors (a peer's request is served here,
        never passed on to a third node).
        """
        results: list[Any] = [None] * len(messages)
        pending = list(range(len(messages)))
        attempts = [0] * len(messages)
        here = [local] * len(messages)  # messages that must run on a local actor
        while pending:
            in_flight: list[tuple[int, pykka.ActorRef[Any], pykka.Future[Any] | BaseException]] = []
            for n, index in enumerate(pending):
                ref = self._pick(role, n, here[index])
                try:
                    in_flight.append((index, ref, ref.ask(messages[index], block=False)))
                except pykka.ActorDeadError as exc:
                    in_flight.append((index, ref, exc))
            pending = []
            for index, ref, future in in_flight:
                try:
                    if isinstance(future, BaseException):
                        raise future
                    results[index] = future.get(timeout=timeout)
                except Refused as exc:  # the peer would not run it: a local actor does
                    if here[index]:
                        raise
                    log.warning("%s refused a message, which runs here: %s", ref, exc.message)
                    self.refused += 1
                    here[index] = True
                    pending.append(index)
                except RemoteUnavailable as exc:  # a peer that is gone: as if it crashed
                    self._retry(role, ref, messages[index], exc, attempts, index)
                    pending.append(index)
                except TarsError:
                    raise
                except Exception as exc:
                    self._retry(role, ref, messages[index], exc, attempts, index)
                    pending.append(index)
        return results

    def _pick(self, role: str, n: int, local: bool) -> Any:
        """The ``n``-th actor of the role's pool, or of its local actors only."""
        refs = self._roles[role].refs
        if local:
            refs = [ref for ref in refs if isinstance(ref, pykka.ActorRef)]
            if not refs:  # every slot holds a peer's actor: start a local one beside them
                with self._lock:
                    entry = self._roles[role]
                    entry.refs.append(entry.factory())
                    refs = [entry.refs[-1]]
        return refs[n % len(refs)]

    def _retry(
        self,
        role: str,
        ref: Any,
        message: Any,
        exc: Exception,
        attempts: list[int],
        index: int,
    ) -> None:
        """Replace the actor that failed on ``message``; SupervisionError past the retries."""
        attempts[index] += 1
        self._restart(role, ref, exc)
        if attempts[index] > self.max_retries:
            raise SupervisionError(
                f"{role} crashed {attempts[index]} times on {type(message).__name__}: {exc}",
                hint="see the node log for the traceback",
            ) from exc

    def _restart(self, role: str, old: pykka.ActorRef[Any], reason: BaseException) -> None:
        entry = self._roles[role]
        with self._lock:
            if old not in entry.refs:
                return  # already replaced because of an earlier message of the same batch
            slot = entry.refs.index(old)
            log.warning("%s crashed (%s); restarting it", role, reason)
            if old.is_alive():
                old.stop(block=True)
            entry.refs[slot] = entry.factory()
            entry.restarts += 1

    def stop_all(self) -> None:
        """Stop every supervised actor and wait for their threads."""
        for entry in self._roles.values():
            for ref in entry.refs:
                if ref.is_alive():
                    ref.stop(block=True)
        self._roles.clear()
