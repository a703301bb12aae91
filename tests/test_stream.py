"""The reliable stream's state machine, driven with no socket, no thread and no clock.

``runtime.transport._stream`` decides what the transport delivers, acknowledges and
sends again; here frames are fed to it by hand (and by hypothesis, through a network that
loses, repeats and reorders them) and what comes back is checked.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.transport._stream import (
    DELIVER,
    DUPLICATE,
    HELD,
    NOTHING,
    SYNCED,
    RxBudget,
    RxStream,
    TxStream,
    rx_stream,
)

EPOCH = 7


def drain(rx: RxStream) -> list[Any]:
    out = []
    while (body := rx.next_ready()) is not NOTHING:
        out.append(body)
    return out


def feed(rx: RxStream, seq: int, first_unacked: int, body: Any) -> list[Any]:
    """What the transport delivers for one frame, in order (as ``_on_reliable`` does)."""
    outcome = rx.receive(seq, first_unacked, body)
    if outcome in (DUPLICATE, HELD):
        return []
    return ([body] if outcome == DELIVER else []) + drain(rx)


def synced(limit: int = 100, at: int = 0) -> RxStream:
    rx = RxStream(EPOCH, limit)
    assert rx.receive(-1, at, None) == SYNCED
    return rx


def test_in_order_frames_are_delivered_at_once_and_acked_cumulatively() -> None:
    rx = synced()
    assert [feed(rx, n, 0, f"m{n}") for n in range(3)] == [["m0"], ["m1"], ["m2"]]
    assert rx.ack() == [EPOCH, 2]


def test_a_duplicate_is_dropped() -> None:
    rx = synced()
    assert feed(rx, 0, 0, "a") == ["a"]
    assert rx.receive(0, 0, "a") == DUPLICATE
    assert rx.ack() == [EPOCH, 0]


def test_a_gap_holds_what_follows_until_it_is_filled() -> None:
    rx = synced()
    assert feed(rx, 0, 0, "a") == ["a"]
    assert rx.receive(2, 0, "c") == HELD
    assert rx.receive(3, 0, "d") == HELD
    assert rx.receive(3, 0, "d") == HELD  # held twice is still one frame
    assert rx.ack() == [EPOCH, 0]  # nothing past the gap is acknowledged
    assert feed(rx, 1, 0, "b") == ["b", "c", "d"]
    assert rx.ack() == [EPOCH, 3] and rx.buffer == {}
    assert rx.receive(2, 0, "c") == DUPLICATE


def test_an_unsynced_stream_holds_everything_and_asks_where_it_stands() -> None:
    rx = RxStream(EPOCH, 100)
    assert rx.receive(0, 0, "a") == HELD and rx.receive(1, 0, "b") == HELD
    assert rx.ack() == [EPOCH, None]  # the sync request
    assert rx.receive(-1, 0, None) == SYNCED
    assert drain(rx) == ["a", "b"]
    assert rx.ack() == [EPOCH, 1]


def test_a_restarted_receiver_resumes_where_the_sender_says() -> None:
    # The sender delivered 0-2 to the receiver's previous incarnation (acked), 3 and 4
    # wait for an ack.  The new receiver holds the retransmissions, asks, and starts at 3.
    tx = TxStream()
    for body in "abcde":
        tx.push(body, 100)
    assert tx.on_ack(2) is False
    rx = RxStream(EPOCH, 100)
    for entry in tx.unacked:
        _, seq, first = tx.ident(EPOCH, entry)
        assert rx.receive(seq, first, entry[1]) == HELD
    epoch, acked = rx.ack()
    assert tx.on_ack(acked) is True  # the receiver lost track: answer with a sync
    assert tx.sync_ident(EPOCH) == [EPOCH, -1, 3]
    assert feed(rx, -1, 3, None) == ["d", "e"]
    assert rx.ack() == [EPOCH, 4]


def test_a_sync_answer_never_moves_a_stream_back() -> None:
    rx = synced(at=5)
    assert feed(rx, 5, 5, "f") == ["f"]
    assert rx.receive(-1, 2, None) == SYNCED  # a late answer from before
    assert rx.expected == 6


def test_first_unacked_skips_what_an_earlier_incarnation_delivered() -> None:
    rx = synced()
    assert rx.receive(7, 0, "h") == HELD
    assert rx.receive(2, 0, "c") == HELD
    assert feed(rx, 5, 5, "f") == ["f"]  # 0-4 were acked, so delivered: 2 is dropped
    assert rx.buffer == {7: "h"} and rx.expected == 6


def test_a_new_epoch_is_a_new_stream() -> None:
    streams: dict[Any, RxStream] = {}
    first = rx_stream(streams, ("b", "ch"), 1, 10)
    first.receive(-1, 0, None)
    first.receive(0, 0, "x")
    assert rx_stream(streams, ("b", "ch"), 1, 10) is first
    restarted = rx_stream(streams, ("b", "ch"), 2, 10)
    assert restarted is not first and not restarted.synced and restarted.expected == 0
    assert streams[("b", "ch")] is restarted


def test_the_receiver_holds_a_bounded_number_of_early_frames() -> None:
    rx = synced(limit=3)
    for seq in range(1, 10):
        assert rx.receive(seq, 0, seq) == HELD
    assert sorted(rx.buffer) == [1, 2, 3]
    assert feed(rx, 0, 0, 0) == [0, 1, 2, 3]  # the rest comes again, as retransmissions


def test_the_sender_keeps_a_bounded_number_unacknowledged() -> None:
    tx = TxStream()
    assert [tx.push(n, 2) for n in range(3)] == [[0, 0, 0.0], [1, 1, 0.0], None]
    assert tx.first_unacked() == 0 and tx.next_seq == 2
    tx.on_ack(1)
    assert tx.first_unacked() == 2 and tx.push("again", 2) == [2, "again", 0.0]


def test_acks_release_frames_and_odd_acks_are_ignored() -> None:
    tx = TxStream()
    for n in range(4):
        tx.push(n, 100)
    assert tx.on_ack(1) is False and [e[0] for e in tx.unacked] == [2, 3]
    assert tx.on_ack(0) is False and len(tx.unacked) == 2  # an old ack changes nothing
    assert tx.on_ack("3") is False and len(tx.unacked) == 2
    assert tx.on_ack(3) is False and not tx.unacked and tx.first_unacked() == 4
    assert tx.ident(EPOCH, [9, b"", 0.0]) == [EPOCH, 9, 4]


def test_what_is_due_is_sent_again_but_not_right_after_progress() -> None:
    tx = TxStream()
    for n in range(3):
        tx.push(n, 100)
    for entry, sent_at in zip(tx.unacked, (0.0, 0.5, 0.9), strict=True):
        entry[2] = sent_at
    assert [e[0] for e in tx.due(1.0, 0.2)] == [0, 1]  # 0.9 was sent too recently
    tx.on_ack(0)  # progress: the receiver is working through what it has
    assert list(tx.due(5.0, 0.2)) == []
    assert [e[0] for e in tx.due(5.0, 0.2)] == [1, 2]  # the tick after, everything due


@given(
    n=st.integers(min_value=0, max_value=12),
    order=st.permutations(list(range(12))),
    repeats=st.lists(st.integers(min_value=0, max_value=11), max_size=12),
    sync_at=st.integers(min_value=0, max_value=30),
)
def test_any_order_and_repetition_delivers_each_payload_once_in_order(
    n: int, order: list[int], repeats: list[int], sync_at: int
) -> None:
    frames = [seq for seq in order if seq < n] + [seq for seq in repeats if seq < n]
    rx = RxStream(EPOCH, 100)
    delivered: list[Any] = []
    sync_at = min(sync_at, len(frames))
    for position, seq in enumerate(frames):
        if position == sync_at:
            delivered += feed(rx, -1, 0, None)
        delivered += feed(rx, seq, 0, f"p{seq}")
    if sync_at == len(frames):
        delivered += feed(rx, -1, 0, None)
    assert delivered == [f"p{seq}" for seq in range(n)]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=15), limit=st.integers(1, 6))
def test_a_lossy_reordering_network_still_delivers_everything_once_in_order(
    data: st.DataObject, n: int, limit: int
) -> None:
    """Sender and receiver as the transport drives them, over a network that loses,
    repeats and reorders frames and acks for a while, then calms down."""
    tx, rx = TxStream(), RxStream(EPOCH, limit)
    for payload in range(n):
        assert tx.push(payload, 100) is not None
    network: list[tuple[str, Any, Any]] = []
    delivered: list[Any] = []
    now = 0.0

    def arrive(item: tuple[str, Any, Any]) -> None:
        kind, ident, body = item
        if kind == "rel":
            delivered.extend(feed(rx, ident[1], ident[2], body))
            network.append(("ack", rx.ack(), None))
        elif tx.on_ack(ident[1]):
            network.append(("rel", tx.sync_ident(EPOCH), None))

    def tick() -> None:
        for entry in tx.due(now, 1.0):
            network.append(("rel", tx.ident(EPOCH, entry), entry[1]))
            entry[2] = now

    for _ in range(data.draw(st.integers(0, 30), label="chaotic ticks")):
        now += 1.0
        tick()
        while network and data.draw(st.booleans(), label="more"):
            item = network.pop(data.draw(st.integers(0, len(network) - 1), label="which"))
            fate = data.draw(st.sampled_from(["arrive", "lose", "repeat"]), label="fate")
            if fate == "repeat":
                network.append(item)
            if fate != "lose":
                arrive(item)
    for _ in range(4 * n + 10):  # calm: everything in flight arrives, in order
        if not tx.unacked and len(delivered) == n:
            break
        now += 1.0
        tick()
        while network:
            arrive(network.pop(0))
    assert delivered == list(range(n))
    assert not tx.unacked


@pytest.mark.parametrize("seq", [-1, 0, 3])
def test_a_frame_from_before_a_sync_is_held_not_delivered(seq: int) -> None:
    rx = RxStream(EPOCH, 10)
    outcome = rx.receive(seq, 0, "x")
    assert outcome == (SYNCED if seq < 0 else HELD)
    assert rx.synced == (seq < 0)


# ---------------------------------------------------------------- bounds in bytes


def test_early_frames_are_held_within_the_senders_byte_budget() -> None:
    budget = RxBudget(max_bytes=250)
    rx = RxStream(EPOCH, 100, budget)
    rx.receive(-1, 0, None)
    assert [rx.receive(seq, 0, f"b{seq}", 100) for seq in (1, 2, 3)] == [HELD] * 3
    assert sorted(rx.buffer) == [1, 2] and budget.held == 200 == rx.held_bytes()
    assert (budget.refused_bytes, budget.refused_frames) == (1, 0)
    assert rx.receive(4, 0, "small", 50) == HELD  # what still fits is held
    assert budget.held == 250
    assert feed_sized(rx, 0, 0, "b0", 100) == ["b0", "b1", "b2"]  # 3 is missing: resent later
    assert budget.held == 50 and sorted(rx.buffer) == [4]
    assert feed_sized(rx, 3, 0, "b3", 100) == ["b3", "small"] and budget.held == 0


def test_streams_of_one_sender_share_its_budget_and_a_new_epoch_gives_bytes_back() -> None:
    streams: dict[Any, RxStream] = {}
    budget = RxBudget(max_bytes=300)
    first = rx_stream(streams, ("b", "one"), 1, 100, budget)
    other = rx_stream(streams, ("b", "two"), 1, 100, budget)
    assert first.receive(5, 0, "x", 200) == HELD  # not synced yet: held
    assert other.receive(5, 0, "y", 200) == HELD  # the sender's budget is spent
    assert other.buffer == {} and budget.refused_bytes == 1
    restarted = rx_stream(streams, ("b", "one"), 2, 100, budget)
    assert restarted is not first and budget.held == 0
    assert other.receive(5, 0, "y", 200) == HELD and other.buffer == {5: "y"}


def test_frames_skipped_by_the_senders_stamp_give_their_bytes_back() -> None:
    budget = RxBudget(max_bytes=1000)
    rx = RxStream(EPOCH, 100, budget)
    for seq in (3, 4, 9):
        rx.receive(seq, 0, seq, 100)
    assert budget.held == 300
    assert rx.receive(-1, 5, None) == SYNCED  # 0-4 were delivered by an earlier incarnation
    assert rx.buffer == {9: 9} and budget.held == 100


def test_the_frame_bound_is_counted_apart_from_the_byte_bound() -> None:
    budget = RxBudget(max_bytes=10_000)
    rx = RxStream(EPOCH, 2, budget)
    rx.receive(-1, 0, None)
    for seq in range(1, 6):
        assert rx.receive(seq, 0, seq, 10) == HELD
    assert (budget.refused_frames, budget.refused_bytes, budget.held) == (3, 0, 20)


def test_a_frame_held_twice_is_counted_once() -> None:
    budget = RxBudget(max_bytes=1000)
    rx = synced()
    rx.budget = budget
    rx.receive(2, 0, "c", 100)
    rx.receive(2, 0, "c", 100)
    assert budget.held == 100 and budget.refused_frames == budget.refused_bytes == 0


def test_the_sender_keeps_a_bounded_number_of_bytes_unacknowledged() -> None:
    tx = TxStream()
    assert tx.push("big", 100, 500, max_bytes=100) is not None  # an empty stream takes one
    assert tx.push("more", 100, 1, max_bytes=100) is None
    assert tx.refusal(100) == "bytes" and tx.unacked_bytes == 500
    tx.on_ack(0)
    assert tx.unacked_bytes == 0
    taken = [tx.push(n, 100, 40, max_bytes=100) is not None for n in range(3)]
    assert taken == [True, True, False]
    assert tx.unacked_bytes == 80 and [e[0] for e in tx.unacked] == [1, 2]
    assert tx.push("x", 2, 1, max_bytes=100) is None and tx.refusal(2) == "frames"
    tx.on_ack(2)
    assert tx.unacked_bytes == 0 and not tx.sizes


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=15),
    budget_bytes=st.integers(1, 120),
)
def test_a_byte_budget_slows_a_stream_down_but_every_frame_arrives_once_in_order(
    data: st.DataObject, sizes: list[int], budget_bytes: int
) -> None:
    """Frames of any size through a budget smaller than some of them, over a network
    that loses, repeats and reorders: what the budget refuses is never acknowledged, so
    the sender sends it again, and in the end everything is delivered once and in order
    and the budget holds nothing."""
    budget = RxBudget(budget_bytes)
    tx, rx = TxStream(), RxStream(EPOCH, 100, budget)
    for payload, size in enumerate(sizes):
        assert tx.push(payload, 100, size) is not None
    network: list[tuple[str, Any, Any]] = []
    delivered: list[Any] = []
    now = 0.0

    def arrive(item: tuple[str, Any, Any]) -> None:
        kind, ident, body = item
        if kind == "rel":
            size = sizes[body] if body is not None else 0
            delivered.extend(feed_sized(rx, ident[1], ident[2], body, size))
            assert budget.held <= budget_bytes
            network.append(("ack", rx.ack(), None))
        elif tx.on_ack(ident[1]):
            network.append(("rel", tx.sync_ident(EPOCH), None))

    def tick() -> None:
        for entry in tx.due(now, 1.0):
            network.append(("rel", tx.ident(EPOCH, entry), entry[1]))
            entry[2] = now

    for _ in range(data.draw(st.integers(0, 20), label="chaotic ticks")):
        now += 1.0
        tick()
        while network and data.draw(st.booleans(), label="more"):
            item = network.pop(data.draw(st.integers(0, len(network) - 1), label="which"))
            fate = data.draw(st.sampled_from(["arrive", "lose", "repeat"]), label="fate")
            if fate == "repeat":
                network.append(item)
            if fate != "lose":
                arrive(item)
    for _ in range(6 * len(sizes) + 10):  # calm, but in reverse order: the worst for holding
        if not tx.unacked and len(delivered) == len(sizes):
            break
        now += 1.0
        tick()
        while network:
            arrive(network.pop())
    assert delivered == list(range(len(sizes)))
    assert not tx.unacked and tx.unacked_bytes == 0
    assert budget.held == 0 and rx.buffer == {}


def feed_sized(rx: RxStream, seq: int, first_unacked: int, body: Any, size: int) -> list[Any]:
    outcome = rx.receive(seq, first_unacked, body, size)
    if outcome in (DUPLICATE, HELD):
        return []
    return ([body] if outcome == DELIVER else []) + drain(rx)
