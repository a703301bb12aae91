"""Remote actor messages between two real transports on 127.0.0.1 (runtime/remote.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import msgpack
import pykka
import pytest

from actors.messages import Incubate
from actors.supervisor import Supervisor
from evolution.errors import PatchError, TransportError
from evolution.generate import Candidate
from evolution.manifest import parse_manifest
from runtime.incubation import IncubationReport
from runtime.keys import generate_keypair
from runtime.remote import OBJECT, Codec, Refused, RemoteActorRef, RemoteUnavailable, serve
from runtime.testing import free_port
from runtime.transport import Peer, Transport

MANIFEST = """
[genome]
name = "g"
sources = ["g/*.py"]

[commands]
test = ["python", "-m", "pytest", "-q"]
bench = ["python", "bench.py"]

[fitness]
metric = "seconds"
direction = "minimize"
"""


class Double(NamedTuple):
    value: int


class Doubled(NamedTuple):
    value: int
    by: str


class Note(NamedTuple):
    text: str


CODEC = Codec(
    [Double, Doubled, Note, Incubate, IncubationReport, Candidate, type(parse_manifest(MANIFEST))]
)


class Doubler(pykka.ThreadingActor):
    """A real pykka actor: doubles numbers, refuses negative ones with a TarsError, records notes."""

    name: ClassVar[str] = "doubler"

    def __init__(self, notes: list[str], noted: threading.Event) -> None:
        super().__init__()
        self.notes = notes
        self.noted = noted

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Double):
            if message.value < 0:
                raise PatchError(f"cannot double {message.value}", hint="send a positive number")
            return Doubled(2 * message.value, "b")
        if isinstance(message, Note):
            self.notes.append(message.text)
            self.noted.set()
        return None


class Pair:
    def __init__(self) -> None:
        keys = {n: generate_keypair() for n in "ab"}
        ends = {n: f"tcp://127.0.0.1:{free_port()}" for n in "ab"}
        self.transports = {
            n: Transport(
                n,
                ends[n],
                keys[n][0],
                keys[n][1],
                [Peer(p, ends[p], keys[p][0]) for p in "ab" if p != n],
            )
            for n in "ab"
        }
        self.notes: list[str] = []
        self.noted = threading.Event()
        self.refusals: list[tuple[str, str]] = []
        self.actor = Doubler.start(self.notes, self.noted)
        serve(
            self.transports["b"],
            CODEC,
            asks={"doubler": lambda m: self.actor.ask(m)},
            tells={"doubler": self.actor.tell},
            accepts={"doubler": (Double, Note), "whoami": (Note,)},
            asks_from={"whoami": lambda sender, m: Note(f"{m.text} {sender}")},
            refused=lambda sender, exc: self.refusals.append((sender, exc.message)),
        )
        for t in self.transports.values():
            t.start()

    def ref(self, **kwargs: Any) -> RemoteActorRef:
        return RemoteActorRef(self.transports["a"], "b", "doubler", CODEC, **kwargs)

    def close(self) -> None:
        for t in self.transports.values():
            t.stop()
        self.actor.stop()


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def test_the_codec_keeps_types_tuples_and_models() -> None:
    manifest = parse_manifest(MANIFEST)
    candidate = Candidate("c1", "p1", "--- a\n+++ b\n", "memoize", "hot", "g/x.py", "f", 3, "d")
    message = Incubate(manifest, {"g/x.py": "x = 1\n"}, candidate, 5)
    back = CODEC.decode(CODEC.encode(message))
    assert back == message and type(back.manifest) is type(manifest)
    report = IncubationReport(
        "c1", True, None, "", (1.0, 2.0), (0.5,), 1.0, 2.0, 3, {"k": 1.0}, "instructions"
    )
    again = CODEC.decode(CODEC.encode(report))
    assert again == report and isinstance(again.parent_samples, tuple)


def test_the_codec_builds_only_registered_types() -> None:
    class Stranger(NamedTuple):
        x: int

    with pytest.raises(TransportError, match="Stranger is not a registered"):
        CODEC.encode(Stranger(1))
    forged = msgpack.packb(msgpack.ExtType(OBJECT, msgpack.packb(["system", {"x": 1}])))
    with pytest.raises(TransportError, match="'system' is not a message type"):
        CODEC.decode(forged)
    extra = msgpack.packb(
        msgpack.ExtType(OBJECT, msgpack.packb(["Double", {"value": 1, "evil": 2}]))
    )
    with pytest.raises(TransportError, match="does not decode"):
        CODEC.decode(extra)
    with pytest.raises(TransportError, match="does not decode"):
        CODEC.decode(b"\xc1")


def test_ask_and_tell_a_remote_actor(pair: Pair) -> None:
    ref = pair.ref()
    assert ref.ask(Double(21)) == Doubled(42, "b")
    future = ref.ask(Double(5), block=False)
    assert future.get(timeout=10) == Doubled(10, "b")
    ref.tell(Note("hello"))
    assert pair.noted.wait(10) and pair.notes == ["hello"]


def test_an_error_answer_comes_back_as_the_same_error(pair: Pair) -> None:
    with pytest.raises(PatchError, match="b: cannot double -1") as caught:
        pair.ref().ask(Double(-1))
    assert caught.value.hint == "send a positive number"
    # a message that actor does not take, and an actor that is not served: refused answers
    with pytest.raises(TransportError, match="does not take Doubled"):
        pair.ref().ask(Doubled(1, "x"))
    with pytest.raises(TransportError, match="no actor 'nobody'"):
        RemoteActorRef(pair.transports["a"], "b", "nobody", CODEC).ask(Double(1))


def test_an_unreachable_peer_is_not_an_answer(pair: Pair) -> None:
    pair.transports["b"].stop()
    with pytest.raises(RemoteUnavailable):
        pair.ref(timeout=0.5).ask(Double(1))
    future = pair.ref(timeout=0.5).ask(Double(1), block=False)
    with pytest.raises(RemoteUnavailable):
        future.get(timeout=10)


def test_an_unreachable_peer_is_a_tars_error_that_says_what_to_do(pair: Pair) -> None:
    pair.transports["b"].stop()
    with pytest.raises(RemoteUnavailable) as caught:
        pair.ref(timeout=0.5).ask(Double(1))
    assert isinstance(caught.value, TransportError)  # in the TarsError tree: the CLI prints it
    assert "doubler@b" in str(caught.value) and "running and reachable" in str(caught.value)


class LocalDoubler(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return Doubled(2 * message.value, "local")


def test_a_pool_falls_back_to_a_local_actor_when_the_remote_one_is_gone(pair: Pair) -> None:
    supervisor = Supervisor()
    supervisor.start("doubler", LocalDoubler.start, size=1)
    try:
        supervisor.add("doubler", pair.ref(timeout=0.5))
        assert supervisor.ask_all("doubler", [Double(1), Double(2)]) == [
            Doubled(2, "local"),
            Doubled(4, "b"),
        ]
        pair.transports["b"].stop()
        assert supervisor.ask_all("doubler", [Double(1), Double(2)]) == [
            Doubled(2, "local"),
            Doubled(4, "local"),
        ]
        assert supervisor.restarts("doubler") == 1
        assert not any(isinstance(r, RemoteActorRef) for r in supervisor.refs("doubler"))
    finally:
        supervisor.stop_all()


def test_every_refusal_is_a_refused_answer_and_counted_with_its_sender(pair: Pair) -> None:
    """A refusal is the peer's answer, not the actor's: the supervisor runs the message locally."""
    with pytest.raises(Refused, match="does not take Doubled"):
        pair.ref().ask(Doubled(1, "x"))
    with pytest.raises(Refused, match="no actor 'nobody'"):
        RemoteActorRef(pair.transports["a"], "b", "nobody", CODEC).ask(Double(1))

    class Alien(NamedTuple):
        x: int

    with pytest.raises(Refused, match="'Alien' is not a message type"):
        RemoteActorRef(pair.transports["a"], "b", "doubler", Codec([Alien])).ask(Alien(1))
    assert [sender for sender, _ in pair.refusals] == ["a", "a", "a"]
    # an actor's own error is its answer, not a refusal, and is not counted as one
    with pytest.raises(PatchError):
        pair.ref().ask(Double(-1))
    assert len(pair.refusals) == 3
    # a handler served with asks_from is told who asks (the authenticated sender)
    assert RemoteActorRef(pair.transports["a"], "b", "whoami", CODEC).ask(Note("hi")) == Note(
        "hi a"
    )
