"""The msgspec fast path of ledger decoding (consensus/_msgspec.py) against the reference.

Every node must turn the same bytes into the same entry, or skip it the same way, so the
fast path may only ever be a shortcut: for any bytes, it answers None or exactly what the
reference path (``entries.parse(entries.read_map(...))``, the checker that names bad
fields) answers, and None wherever the reference refuses.  Hypothesis damages valid
entries the way a lying or buggy peer would: fields dropped, values of every msgpack type
put anywhere, unknown fields added, the tag changed.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger_entries import ADOPTION, HELD, RECORD

from consensus import entries as E
from evolution.errors import ConsensusError

VALID = [
    E.register_entry("g", "[genome]\n", {"a.py": "x = 1\n"}, 1.0, "node-1", 1.5),
    E.register_entry("g", "[genome]\n", {}, None, "node-1", 2),  # an int where a float goes
    E.cycle_entry("g", "node-1", 3, 7, [RECORD], [HELD], ADOPTION, 3.25),
    E.cycle_entry("g", "node-1", 4, 7, [], [], None, 4.0),
    E.vote_entry("g", "p1", "v1", "node-2", True, "tests pass", 5.0),
    E.rollback_entry("g", "v0", "regression", "node-3", 6.0),
    E.members_entry(["node-2", "node-1"], "node-1", 7.0),
]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
    | st.binary(max_size=5)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=3))
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=3)
    ),
    max_leaves=6,
)


def reference(data: bytes) -> E.Entry | None:
    try:
        return E.parse(E.read_map(data))
    except ConsensusError:
        return None


def reference_head(data: bytes) -> tuple[str, str | None] | None:
    try:
        raw = E.read_map(data)
    except ConsensusError:
        return None
    genome = raw.get("genome")
    return raw["type"], genome if isinstance(genome, str) else None


def check_peek(data: bytes) -> None:
    """``peek`` answers None or what ``read_map`` says, and None wherever that fails."""
    head, ref = E.peek(data), reference_head(data)
    assert head is None or head == ref, f"peek disagrees on {data!r}: {head} vs {ref}"


def same(a: E.Entry, b: E.Entry) -> bool:
    """Equal down to the types of the values (1 and 1.0 are not the same entry)."""
    return type(a) is type(b) and E.encode(a) == E.encode(b)


@pytest.mark.parametrize("data", VALID, ids=lambda d: msgpack.unpackb(d)["type"])
def test_every_valid_entry_takes_the_fast_path_and_agrees(data: bytes) -> None:
    fast = E.fast_decode(data)
    assert fast is not None, "a well-formed entry fell back to the slow path"
    assert E.peek(data) == reference_head(data) != None  # noqa: E711
    ref = reference(data)
    assert ref is not None and same(fast, ref)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a decoded entry a damaged value could go."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(paths(item, (*prefix, i)))
    return out


def damaged(entry: Any, path: tuple[Any, ...], action: str, value: Any, name: str) -> Any:
    container = entry
    for step in path[:-1]:
        container = container[step]
    last = path[-1]
    if action == "drop" and isinstance(container, dict):
        del container[last]
    elif action == "add" and isinstance(container[last], dict):
        container[last][name] = value
    else:
        container[last] = value
    return entry


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(VALID),
    pick=st.integers(min_value=0),
    action=st.sampled_from(["set", "drop", "add"]),
    value=VALUES,
    name=st.text(max_size=6),
)
def test_the_fast_path_never_disagrees_with_the_reference(
    base: bytes, pick: int, action: str, value: Any, name: str
) -> None:
    entry = msgpack.unpackb(base, raw=False, strict_map_key=False)
    places = paths(entry)
    data = msgpack.packb(
        damaged(entry, places[pick % len(places)], action, value, name), use_bin_type=True
    )
    check_peek(data)
    fast = E.fast_decode(data)
    ref = reference(data)
    if ref is None:
        assert fast is None, f"the fast path accepted what the checker refuses: {data!r}"
    elif fast is not None:
        assert same(fast, ref), f"the two paths disagree on {data!r}: {fast!r} vs {ref!r}"


def test_a_few_damaged_entries_by_hand() -> None:
    """The cases a property run might not meet, written out."""
    cycle = msgpack.unpackb(VALID[2], raw=False)
    cases = []
    for field, bad in [("cycle", "3"), ("at", True), ("evaluated", [{"x": 1}]), ("seed", 1.0)]:
        cases.append({**cycle, field: bad})
    cases.append({**cycle, "proposal": {**cycle["proposal"], "surplus": 1}})
    cases.append({**cycle, "held": [{**cycle["held"][0], "evidence": {1: "int key"}}]})
    for case in cases:
        data = msgpack.packb(case, use_bin_type=True)
        assert reference(data) is None
        assert E.fast_decode(data) is None
    # nil where a field is optional: both take the default
    vote = {**msgpack.unpackb(VALID[4], raw=False), "reason": None}
    data = msgpack.packb(vote, use_bin_type=True)
    fast, ref = E.fast_decode(data), reference(data)
    assert fast is not None and ref is not None and same(fast, ref) and fast.reason == ""


def packed_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A msgpack map with the pairs as given: repeated keys included (dicts cannot say it)."""
    body = b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in pairs)
    return bytes([0x80 | len(pairs)]) + body


def test_repeated_keys_and_garbage_defer_to_the_reference() -> None:
    vote = list(msgpack.unpackb(VALID[4], raw=False).items())
    for data in [
        packed_map([("type", "cycle"), *vote]),  # the tag twice: msgpack keeps the last
        packed_map([*vote, ("type", "rollback")]),
        packed_map([*vote, ("genome", 7)]),
        VALID[4] + b"\x00",  # trailing bytes
        b"\xc1",  # a reserved byte
        msgpack.packb(["type", "vote"]),
        msgpack.packb({"type": 3}),
    ]:
        check_peek(data)
        fast, ref = E.fast_decode(data), reference(data)
        assert fast is None or (ref is not None and same(fast, ref))
        if ref is None:
            assert fast is None
