"""min_max_pair: ``min(a, b)``/``max(a, b)`` become the comparison the builtin makes, same results."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import call, declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src("""
def ratio(a, b):
    la, lb = len(a), len(b)
    # the shortest over the total, as difflib's real_quick_ratio
    return min(la, lb), max(la, lb), max(lb, 1), min(-1, la)


def pick(x, y):
    return min(x, y), max(x, y)
""")


class Tie:
    """Equal under comparison but distinct objects: which one min/max return shows."""

    def __init__(self, key: int, tag: str) -> None:
        self.key, self.tag = key, tag

    def __lt__(self, other: Any) -> bool:
        return bool(self.key < other.key)

    def __gt__(self, other: Any) -> bool:
        return bool(self.key > other.key)


def test_pairs_become_conditional_expressions() -> None:
    sites = by_name("min_max_pair").scan("pkg/mod.py", CODE)
    assert [(s.function, s.line) for s in sites] == [("ratio", 4), ("pick", 8)]
    new = rewrite("min_max_pair", CODE)
    assert "return (lb if lb < la else la), (lb if lb > la else la), (1 if 1 > lb else lb)," in new
    assert "(la if la < -1 else -1)" in new
    same(CODE, new, "ratio", ("abc", "de"), ("", ""), ("a", "abcd"))
    new = rewrite("min_max_pair", CODE, 1)
    assert "return (y if y < x else x), (y if y > x else x)" in new
    # ties: the same object as the builtin returns (the first), not an equal one
    a, b = Tie(1, "a"), Tie(1, "b")
    assert [r.tag for r in call(new, "pick", a, b)] == [r.tag for r in call(CODE, "pick", a, b)]
    # an incomparable pair raises the same TypeError
    for code in (CODE, new):
        try:
            call(code, "pick", 1, "x")
        except TypeError as e:
            assert "'<' not supported between instances of 'str' and 'int'" in str(e)
        else:
            raise AssertionError("no TypeError")


@given(st.one_of(st.integers(), st.floats(), st.text(max_size=2)), st.integers(-3, 3))
def test_same_results(x: Any, y: int) -> None:
    new = rewrite("min_max_pair", CODE, 1)
    if isinstance(x, str):
        x = len(x)
    assert repr(call(new, "pick", x, y)) == repr(call(CODE, "pick", x, y))
    assert repr(call(new, "pick", y, x)) == repr(call(CODE, "pick", y, x))


def test_declines_what_is_not_a_pair_of_plain_values() -> None:
    declines(
        "min_max_pair",
        src("""
    def f(a, b, c, xs, k):
        return (
            min(a, b, c),          # three arguments
            min(xs),               # an iterable
            max(a, b, key=k),      # a keyword
            min(*xs),              # starred
            max(a + 1, b),         # an expression: it would be evaluated twice
            min(xs[0], b),         # a subscript: it would be read twice
            max(1, 2),             # two constants: nothing to gain
            min((a), b),           # parenthesised: left as written
        )
    """),
    )
    declines(
        "min_max_pair",
        "def min(a, b):\n    return a\n\n\ndef max(a, b):\n    return b\n\n\ndef f(a, b):\n    return min(a, b) + max(a, b)\n",
    )
    declines("min_max_pair", "x = min(1, y)\n")  # module level: runs once
    declines("min_max_pair", "def f(min, a, b):\n    return min(a, b)\n")  # a parameter
