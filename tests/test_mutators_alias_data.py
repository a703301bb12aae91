"""alias_data: data attributes, builtins and constants read in a loop become locals, same results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src("""
import math

SUFFIXES = ("ing", "ed", "s")


class Counter:
    def __init__(self, scale):
        self.scale = scale
        self.seen = {}

    def feed(self, words):
        total = 0
        for w in words:
            # the body reads self.scale, self.seen, len, SUFFIXES and math.pi
            n = len(w) * self.scale
            self.seen.setdefault(w, []).append(n)
            if w.endswith(SUFFIXES):
                n += round(math.pi)
            total += n + len(self.seen)
        return total


def run(words, scale):
    return Counter(scale).feed(words)
""")


def test_attributes_builtins_and_constants_are_read_once() -> None:
    new = rewrite("alias_data", CODE)
    for line in (
        "_SUFFIXES = SUFFIXES",
        "_len = len",
        "_math_pi = math.pi",
        "_round = round",
        "_self_scale = self.scale",
        "_self_seen = self.seen",
    ):
        assert f"        {line}\n" in new, line
    assert "n = _len(w) * _self_scale" in new
    assert "_self_seen.setdefault(w, []).append(n)" in new
    assert new.index("_len = len") < new.index("for w in words")
    same(CODE, new, "run", (["walking", "ed", "cats", ""], 3), ([], 1))


@given(st.lists(st.sampled_from(["a", "bs", "ring", "", "ed"]), max_size=8), st.integers(-3, 3))
def test_same_results(words: list[str], scale: int) -> None:
    same(CODE, rewrite("alias_data", CODE), "run", (words, scale))


def test_outermost_loop_takes_the_read() -> None:
    code = src("""
    def grid(rows):
        out = 0
        for row in rows:
            for x in row:
                out += len(x) + abs(out)
        return out
    """)
    sites = by_name("alias_data").scan("pkg/mod.py", code)
    assert [s.line for s in sites] == [3]
    new = rewrite("alias_data", code)
    assert "    _abs = abs\n    _len = len\n    for row in rows:" in new
    same(code, new, "grid", ([["ab", "c"], []],))


def test_declines_what_the_loop_could_rebind() -> None:
    # a call the guard does not know: it could rebind self.scale or len
    declines("alias_data", CODE.replace("self.seen.setdefault(w, []).append(n)", "self.log(w)"))
    # the attribute is stored in the loop (under another owner, too: it may be the same object)
    declines(
        "alias_data",
        src("""
    class B:
        def __init__(self, scale):
            self.scale = scale

        def feed(self, others):
            t = 0
            for other in others:
                t += self.scale
                other.scale = t
            return t
    """),
    )
    # not set in __init__ (it may not exist), a property, a shadowed builtin, a rebound constant
    declines(
        "alias_data",
        src("""
    class A:
        def __init__(self):
            if True:
                self.x = 1

        @property
        def y(self):
            return 2

        def run(self, items):
            for i in items:
                i.v = self.x + self.y
            return items

    def len(x):
        return 0

    LIMIT = 3

    def use(xs):
        for x in xs:
            print(len(x), LIMIT)

    def bump():
        global LIMIT
        LIMIT = 4
    """),
    )


def test_declines_a_parameter_owner_and_the_loop_iterable() -> None:
    # ``obj`` may lack ``attr`` when the loop never runs; ``range`` is evaluated once anyway
    declines(
        "alias_data",
        src("""
    def f(obj, n):
        t = 0
        for i in range(n):
            t += obj.attr
        return t
    """),
    )
