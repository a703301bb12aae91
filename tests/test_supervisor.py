"""The supervisor restarts a crashed actor and the work still completes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pykka
import pytest

from actors.base import RoleActor
from actors.messages import Crash
from actors.supervisor import SupervisionError, Supervisor
from evolution.errors import RemoteUnavailable, TarsError, TransportError


class Double(RoleActor):
    role: ClassVar[str] = "double"
    handlers: ClassVar[dict[type, str]] = {int: "on_int", str: "on_str"}
    crashes_left: ClassVar[list[int]] = [0]

    def on_int(self, value: int) -> int:
        if Double.crashes_left[0] > 0:
            Double.crashes_left[0] -= 1
            raise RuntimeError("bug")
        return value * 2

    def on_str(self, value: str) -> str:
        raise TarsError(f"bad input {value}")


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    sup = Supervisor(max_retries=2)
    sup.start("double", Double.start, size=2)
    yield sup
    sup.stop_all()
    assert pykka.ActorRegistry.get_all() == []


def test_pool_answers_in_order(supervisor: Supervisor) -> None:
    assert supervisor.ask_all("double", list(range(7))) == [0, 2, 4, 6, 8, 10, 12]


def test_crashing_actor_is_restarted_and_message_retried(supervisor: Supervisor) -> None:
    Double.crashes_left[0] = 1
    before = supervisor.refs("double")
    assert supervisor.ask("double", 21) == 42
    assert supervisor.restarts("double") == 1
    assert supervisor.refs("double") != before
    assert all(ref.is_alive() for ref in supervisor.refs("double"))


def test_dead_actor_is_replaced(supervisor: Supervisor) -> None:
    supervisor.refs("double")[0].stop(block=True)
    assert supervisor.ask_all("double", [1, 2]) == [2, 4]
    assert supervisor.restarts("double") >= 1


def test_crash_message_kills_nothing_permanently(supervisor: Supervisor) -> None:
    with pytest.raises(SupervisionError, match="crashed 3 times"):
        supervisor.ask("double", Crash())
    assert supervisor.ask("double", 5) == 10


def test_tars_errors_are_answers_not_crashes(supervisor: Supervisor) -> None:
    with pytest.raises(TarsError, match="bad input x"):
        supervisor.ask("double", "x")
    assert supervisor.restarts("double") == 0


class Gone(pykka.ThreadingActor):
    """Stands for a remote actor whose node does not answer."""

    def on_receive(self, message: Any) -> Any:
        raise RemoteUnavailable(f"doubler@b: no reply to {message}")


class Local(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return 2 * message


def test_an_unavailable_peer_is_retried_on_a_local_actor_not_answered() -> None:
    # RemoteUnavailable is in the TarsError tree, yet it is no answer: the supervisor
    # replaces the actor that raised it from the role's (local) factory and retries.
    assert issubclass(RemoteUnavailable, TransportError)
    sup = Supervisor(max_retries=2)
    sup.start("double", Local.start, size=0)
    try:
        sup.add("double", Gone.start())
        assert sup.ask_all("double", [1, 2, 3]) == [2, 4, 6]
        assert sup.restarts("double") == 1
    finally:
        sup.stop_all()


def test_an_unavailable_peer_says_what_to_do() -> None:
    exc = RemoteUnavailable("incubator@n2: no reply within 5 s")
    assert isinstance(exc, TarsError) and exc.hint
    assert "running and reachable" in str(exc) and "incubator@n2" in str(exc)
    assert RemoteUnavailable("x", hint="do y").hint == "do y"


def test_no_thread_leak(supervisor: Supervisor) -> None:
    supervisor.ask_all("double", [1, 2, 3])
    supervisor.stop_all()
    names = [t.name for t in threading.enumerate() if "Double" in t.name]
    assert names == []


def teardown_module(module: Any) -> None:
    Double.crashes_left[0] = 0
