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


COUNTED = src("""
def bounds(s, t):
    # what inline_call leaves of difflib's real_quick_ratio
    return min((la := len(s)), (lb := len(t))), la + lb


def spans(s, t):
    return max(len(s), len(t)), min(len(s), 3), max(0, len(t))
""")


class Sized:
    """A sequence whose ``len`` is logged: the order and number of evaluations show."""

    def __init__(self, n: int, log: list[str], tag: str) -> None:
        self.n, self.log, self.tag = n, log, tag

    def __len__(self) -> int:
        self.log.append(self.tag)
        return self.n


def test_len_results_are_compared_once_each_in_order() -> None:
    sites = by_name("min_max_pair").scan("pkg/mod.py", COUNTED)
    assert [(s.function, s.line) for s in sites] == [("bounds", 3), ("spans", 7)]
    new = rewrite("min_max_pair", COUNTED)
    assert "return (lb if (la := len(s)) > (lb := len(t)) else la), la + lb" in new
    new = rewrite("min_max_pair", COUNTED, 1)
    assert "(_min_b if (_min_a := len(s)) < (_min_b := len(t)) else _min_a)" in new
    assert "(3 if (_min_a_2 := len(s)) > 3 else _min_a_2)" in new
    assert "(_min_b_2 if 0 < (_min_b_2 := len(t)) else 0)" in new
    for func in ("bounds", "spans"):
        for m, n in ((0, 0), (1, 4), (4, 1), (3, 3), (7, 2)):
            old_log: list[str] = []
            new_log: list[str] = []
            before = call(COUNTED, func, Sized(m, old_log, "s"), Sized(n, old_log, "t"))
            after = call(
                new if func == "spans" else rewrite("min_max_pair", COUNTED),
                func,
                Sized(m, new_log, "s"),
                Sized(n, new_log, "t"),
            )
            assert repr(after) == repr(before) and new_log == old_log, (func, m, n)


def test_len_paired_with_an_unknown_type_or_in_a_comprehension_is_declined() -> None:
    declines("min_max_pair", "def f(s, b):\n    return min(len(s), b)\n")  # b: any type
    declines("min_max_pair", "def f(s, t):\n    return min(len(s), 2.5)\n")  # not an int
    declines("min_max_pair", "def f(xs, t):\n    return [min(len(x), len(t)) for x in xs]\n")
    declines("min_max_pair", "def f(s, t):\n    return min(len(s[max(1, 2):]), len(t))\n")
    declines(
        "min_max_pair",
        "def len(x):\n    return 0\n\n\ndef f(s, t):\n    return min(len(s), len(t))\n",
    )
