"""The one batching loop (``_send_batches``) that ``send_many`` and a backlog flush share.

Over an inproc PAIR: no Curve, no node, just the frames the loop hands to ZeroMQ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq

from runtime.transport._wire import _packer, _prefix, _send_batches


@pytest.fixture
def pipe() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx: zmq.Context[Any] = zmq.Context()
    tx, rx = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    rx.bind("inproc://wire-test")
    tx.connect("inproc://wire-test")
    yield tx, rx
    tx.close(0)
    rx.close(0)
    ctx.term()


def frames(n: int, size: int = 10) -> list[bytes]:
    head = _prefix("msg", "ch") + b"\xc0"
    return [head + _packer().pack(f"{i:0{size}d}") for i in range(n)]


def bodies(rx: zmq.Socket[bytes]) -> list[list[str]]:
    """What arrived: one list of bodies per ZeroMQ message (a batch, or a frame alone)."""
    out = []
    while rx.poll(0):
        kind, _channel, _ident, body = msgpack.unpackb(rx.recv(), raw=False)
        out.append([inner[3] for inner in body] if kind == "bat" else [body])
    return out


def test_frames_leave_in_order_in_batches_of_at_most_most(
    pipe: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    tx, rx = pipe
    sent = frames(10)
    assert _send_batches(tx, sent, 1 << 20, 4) == 10
    got = bodies(rx)
    assert [len(b) for b in got] == [4, 4, 2]
    assert [body for batch in got for body in batch] == [f"{i:010d}" for i in range(10)]


def test_a_batch_stays_under_the_byte_limit_and_a_lone_frame_goes_as_itself(
    pipe: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    tx, rx = pipe
    sent = frames(5)
    assert _send_batches(tx, sent, 2 * len(sent[0]), 100) == 5
    assert [len(b) for b in bodies(rx)] == [2, 2, 1]
    assert _send_batches(tx, sent[:1], 1, 100) == 1  # one frame over the limit still leaves
    assert bodies(rx) == [["0000000000"]]


def test_a_full_socket_takes_what_it_can_and_says_how_many() -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    lone = ctx.socket(zmq.PAIR)  # nobody reads: with SNDHWM 2, two messages fit
    lone.sndhwm = 2
    lone.connect("inproc://nobody-listens")
    try:
        assert _send_batches(lone, frames(6), 1 << 20, 2) == 4  # two batches of two
        assert _send_batches(lone, frames(3), 1 << 20, 2) == 0
    finally:
        lone.close(0)
        ctx.term()
