"""Parameter search: read and rewrite one literal, propose values without repeats."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evolution.errors import MutationError
from evolution.params import format_value, propose, read_constant, set_constant

SOURCE = """\
# CHUNK = 999 in a comment must not change
\"\"\"Docstring mentions CHUNK = 7.\"\"\"
import re

CHUNK = 64  # lines per batch  (tuned)
RATE: float = 0.25
NEG = -3
FLAG = True
NAME = "CHUNK = 5"

def f():
    CHUNK = 1
    return CHUNK
"""


def test_read_constant() -> None:
    assert read_constant(SOURCE, "CHUNK") == 64
    assert read_constant(SOURCE, "RATE") == 0.25
    assert read_constant(SOURCE, "NEG") == -3
    assert read_constant(SOURCE, "FLAG") is None  # bool is not a tunable number
    assert read_constant(SOURCE, "NAME") is None
    assert read_constant(SOURCE, "MISSING") is None
    assert read_constant("def broken(:\n", "X") is None


def test_set_constant_changes_only_that_literal() -> None:
    out = set_constant(SOURCE, "CHUNK", 128, "int")
    assert out == SOURCE.replace("CHUNK = 64  #", "CHUNK = 128  #")
    assert read_constant(out, "CHUNK") == 128
    before, after = SOURCE.splitlines(keepends=True), out.splitlines(keepends=True)
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [4]


def test_set_constant_floats_negatives_and_rounding() -> None:
    assert "RATE: float = 0.125\n" in set_constant(SOURCE, "RATE", 0.125, "float")
    assert "NEG = 5\n" in set_constant(SOURCE, "NEG", 5, "int")
    assert "CHUNK = -2  #" in set_constant(SOURCE, "CHUNK", -2, "int")
    assert "CHUNK = 3  #" in set_constant(SOURCE, "CHUNK", 2.5, "int")
    assert format_value(1e-5, "float") == "1e-05"


def test_set_constant_keeps_unicode_and_crlf_bytes() -> None:
    src = "NAME = 'héllo wörld'; X = 10  # größe\r\nY = 2\r\n"
    out = set_constant(src, "X", 20, "int")
    assert out == src.replace("X = 10", "X = 20")
    crlf = "A = 1\r\nB = 2\r\n\rC = 3\r\n"
    assert set_constant(crlf, "C", 4, "int") == crlf.replace("C = 3", "C = 4")


def test_set_constant_last_assignment_wins() -> None:
    src = "X = 1\nX = 2\n"
    assert read_constant(src, "X") == 2
    assert set_constant(src, "X", 9, "int") == "X = 1\nX = 9\n"


def test_set_constant_errors() -> None:
    with pytest.raises(MutationError, match="MISSING"):
        set_constant(SOURCE, "MISSING", 1, "int")
    with pytest.raises(MutationError):
        set_constant(SOURCE, "FLAG", 1, "int")
    with pytest.raises(ValueError, match="kind"):
        set_constant(SOURCE, "CHUNK", 1, "complex")
    with pytest.raises(ValueError, match="finite"):
        set_constant(SOURCE, "CHUNK", float("inf"), "float")


@given(st.integers(-(10**6), 10**6), st.text(alphabet="abc #é\t", max_size=20))
def test_set_constant_round_trip(value: int, comment: str) -> None:
    src = f"import os\nLIMIT = 17  #{comment}\nOTHER = 17\n"
    out = set_constant(src, "LIMIT", value, "int")
    assert read_constant(out, "LIMIT") == value
    assert out == src.replace("LIMIT = 17", f"LIMIT = {value}")


def test_propose_starts_with_geometric_steps() -> None:
    assert sorted(propose(64, 1, 1024, "int", {}, random.Random(0))) == [32, 128]
    assert sorted(propose(0.5, 0.01, 10.0, "float", {}, random.Random(0))) == [0.25, 1.0]


def test_propose_clamps_to_range() -> None:
    values = propose(64, 1, 100, "int", {}, random.Random(0))
    assert sorted(values) == [32, 100]
    at_top = propose(100, 1, 100, "int", {}, random.Random(0), count=3)
    assert all(1 <= v <= 100 for v in at_top) and 100 not in at_top


def test_propose_moves_toward_the_best_gain_and_shrinks() -> None:
    # 128 beat the parent: it becomes the centre; ×2 is new ground, ÷2 is the parent
    first = propose(64, 1, 1024, "int", {32: 0.9, 128: 1.2}, random.Random(0), count=1)
    assert first == [256]
    # 256 was worse: both ×2 neighbours of 128 are spent, so the step shrinks to ×√2
    nxt = propose(64, 1, 1024, "int", {32: 0.9, 128: 1.2, 256: 0.95}, random.Random(0))
    assert sorted(nxt) == [91, 181]


def test_propose_grows_the_step_after_a_success() -> None:
    # 1.0 → ×1.19 won: resume one step coarser (×√2) around the winner, not at ×1.19 again
    values = propose(
        1.0, 0.01, 100.0, "float", {1.18921: 1.1, 0.840896: 0.9}, random.Random(0), count=1
    )
    assert values == [pytest.approx(1.18921 * 2**0.5, rel=1e-5)]


def test_propose_skips_near_twins_of_tried_values() -> None:
    tried = {4096.0: 1.5, 8192.0: 0.8, 2048.0: 0.9}
    values = propose(64, 1, 100000, "int", {**tried, 5793.0: 1.6}, random.Random(0), count=4)
    assert 8193 not in values and all(abs(v - 8192) > 40 for v in values)


def test_propose_never_repeats_and_ends_when_exhausted() -> None:
    rng = random.Random(3)
    tried: dict[float, float | None] = {}
    seen: list[float] = []
    for _ in range(100):
        batch = propose(4, 1, 8, "int", tried, rng)
        if not batch:
            break
        for v in batch:
            assert v not in tried and v != 4 and 1 <= v <= 8 and v == int(v)
            tried[v] = None if v == 8 else 1.0 - abs(v - 5) * 0.01 + (0.05 if v == 5 else 0)
            seen.append(v)
    else:
        pytest.fail("search did not converge")
    assert len(seen) == len(set(seen))
    assert 5 in seen and 6 in seen


def test_propose_float_converges() -> None:
    tried: dict[float, float | None] = {}
    rng = random.Random(1)
    for _ in range(200):
        batch = propose(1.0, 0.001, 100.0, "float", tried, rng)
        if not batch:
            break
        for v in batch:
            assert v not in tried
            tried[v] = 1.0 + 1.0 / (1.0 + abs(v - 3.0))  # peak at 3.0
    else:
        pytest.fail("search did not converge")
    best = max(tried, key=lambda v: tried[v] or 0.0)
    assert best == pytest.approx(3.0, rel=0.05)
    assert len(tried) < 30


def test_propose_from_zero_uses_arithmetic_steps() -> None:
    assert sorted(propose(0, -8, 8, "int", {}, random.Random(0))) == [-4, 4]
    assert sorted(propose(0, 0, 8, "int", {}, random.Random(0))) == [1, 2]


def test_propose_is_deterministic_with_a_seed() -> None:
    tried = {32.0: 1.1, 128.0: 0.8}
    a = [propose(64, 1, 1024, "int", tried, random.Random(9), count=1) for _ in range(3)]
    b = [propose(64, 1, 1024, "int", tried, random.Random(9), count=1) for _ in range(3)]
    assert a == b
    seeds = {tuple(propose(64, 1, 1024, "int", {}, random.Random(s), count=1)) for s in range(20)}
    assert seeds == {(32,), (128,)}  # rng picks the first direction, no bias either way


def test_propose_edge_cases() -> None:
    assert propose(64, 1, 1024, "int", {}, random.Random(0), count=0) == []
    assert propose(1, 1.2, 1.8, "int", {}, random.Random(0)) == []  # no integer in range
    assert propose(1, 1, 2, "int", {2: 0.5}, random.Random(0)) == []
    with pytest.raises(ValueError, match="empty"):
        propose(1, 5, 5, "int", {}, random.Random(0))
    with pytest.raises(ValueError, match="kind"):
        propose(1, 0, 5, "str", {}, random.Random(0))


@given(
    st.floats(0.1, 1000.0),
    st.dictionaries(st.floats(0.1, 1000.0), st.one_of(st.none(), st.floats(0.5, 2.0)), max_size=8),
    st.integers(0, 2**32),
    st.sampled_from(["int", "float"]),
)
def test_propose_properties(
    current: float, tried: dict[float, float | None], seed: int, kind: str
) -> None:
    low, high = 0.1, 1000.0
    values = propose(current, low, high, kind, tried, random.Random(seed), count=3)
    assert len(values) <= 3
    assert len(set(values)) == len(values)
    for v in values:
        assert low <= v <= high or kind == "int"
        assert v not in tried
        if kind == "int":
            assert isinstance(v, int) and 1 <= v <= 1000
    assert values == propose(current, low, high, kind, tried, random.Random(seed), count=3)
