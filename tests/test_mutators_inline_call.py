"""inline_call: a call to a one-expression function becomes the expression, same results."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_mutators import call, declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src('''
LIMIT = 10


def ratio(matches, length):
    # a comment in the callee stays in the callee
    if length:
        return 2.0 * matches / length
    return 1.0


def clamp(x, lo=0, *, hi=10):
    """Docstrings do not count."""
    return min(max(x, lo), hi)


def pair(a, b):
    return a, b


def total(xs):
    out = []
    for m in xs:
        n = m + 1
        out.append(ratio(m, n) + clamp(m, hi=5) + ratio(m, 0))
        out.append(pair(m, -1))
    return out
''')


def _all(code: str) -> str:
    while by_name("inline_call").scan("pkg/mod.py", code):
        code = rewrite("inline_call", code)
    return code


def test_functions_are_inlined() -> None:
    new = _all(CODE)
    assert "(2.0 * m / n if n else 1.0)" in new
    assert "(min(max(m, (0)), (5)))" in new
    assert "(2.0 * m / (0) if (0) else 1.0)" in new
    assert "out.append((m, (-1)))" in new
    assert "ratio(" not in new.split("def total")[1]
    same(CODE, new, "total", ([0, 1, 7, -1],), ([],))


@given(st.lists(st.integers(-50, 50), max_size=8))
def test_same_results(xs: list[int]) -> None:
    same(CODE, _all(CODE), "total", (xs,))


METHODS = src("""
class Box:
    def __init__(self, a, b):
        self.a = a
        self.b = b

    def size(self):
        return len(self.a) + len(self.b)

    def ratio(self, k):
        return self.size() * k

    def many(self, n):
        return [self.ratio(i) for i in range(n)]


def run(a, b, n):
    return Box(a, b).many(n)
""")


def test_methods_of_a_final_class_are_inlined() -> None:
    new = _all(METHODS)
    assert (
        "return (((len(self.a) + len(self.b))) * k)" in new or "(len(self.a) + len(self.b))" in new
    )
    assert "self.ratio(" not in new and "self.size()" not in new
    same(METHODS, new, "run", ("ab", "cde", 4), ("", "", 0))


def test_declines_what_could_mean_something_else() -> None:
    # a subclass in the module may override the method
    declines(
        "inline_call", METHODS + "\n\nclass Sub(Box):\n    def size(self):\n        return 0\n"
    )
    # an attribute of the method's name is assigned somewhere: an instance may shadow it
    shadowed = METHODS.replace("self.b = b", "self.b = b\n        self.size = len")
    sites = by_name("inline_call").scan("pkg/mod.py", shadowed)
    assert [s.detail.split("`")[1] for s in sites] == ["ratio"]
    # the function is rebound, decorated, has *args or a default that is not a constant
    declines(
        "inline_call",
        src("""
    import functools

    LIMIT = 3

    def f(x):
        return x + 1

    f = functools.lru_cache(f)

    @functools.cache
    def g(x):
        return x * 2

    def h(x):
        return h(x - 1) if x > 0 else 0  # inside itself a recursive call stays a call

    def v(*xs):
        return len(xs)

    def w(x, k=LIMIT):
        return x + k

    def use(y):
        return f(y) + g(y) + v(y) + w(y)
    """),
    )


def test_declines_unsafe_arguments_and_captures() -> None:
    declines(
        "inline_call",
        src("""
    N = 3

    def f(x):
        return x + N

    def g(x):
        return [x for y in range(3)]

    def one(x, y):
        return x

    def use(a, b, N2):
        N = 4  # the callee's global N would be captured by this local
        return f(a) + g(a) + one(a, b) + f(a.b) + f(a + 1)
    """),
    )
    # a global argument when the body calls something (it could rebind it)
    declines(
        "inline_call",
        src("""
    G = 1

    def f(x):
        return str(x) + helper()

    def helper():
        global G
        G = 2
        return ""

    def use():
        return f(G)
    """),
    )


TEMPS = src("""
def ratio(matches, length):
    if length:
        return 2.0 * matches / length
    return 1.0


class Matcher:
    def __init__(self, a, b):
        self.a = a
        self.b = b

    def quick(self):
        la, lb = len(self.a), len(self.b)
        return ratio(min(la, lb), la + lb)

    def full(self, m):
        return ratio(m, len(self.a) + len(self.b))


def best(words, word):
    s = Matcher(word, "")
    out = []
    for w in words:
        s.a = w
        out.append((s.quick(), s.full(len(w) // 2)))
    return out
""")


def test_expressions_and_locals_are_evaluated_once_first() -> None:
    new = _all(TEMPS)
    assert "(_length := len(self.a) + len(self.b))" in new
    # ``matches`` is read only when ``length`` is true: bound first, in the test; the
    # method then holds ``:=`` and is no longer a one-expression callee itself
    assert "if (_matches := min(la, lb), _length := la + lb)[1] else 1.0" in new
    same(TEMPS, new, "best", (["ab", "", "abcdef"], "xyz"), ([], ""))


@given(st.lists(st.text(max_size=5), max_size=5), st.text(max_size=3))
def test_temps_keep_results(words: list[str], word: str) -> None:
    same(TEMPS, _all(TEMPS), "best", (words, word))


def test_declines_conditional_or_impure_expressions() -> None:
    # ``m`` is read only when ``length`` is true: ``m // 0`` must still raise at the call,
    # so the arguments are bound first, in order, in the test (``prebind``)
    code = src("""
    def ratio(matches, length):
        return 2.0 * matches / length if length else 1.0

    def use(m, n):
        return ratio(m // 0, n)

    def fine(m, n):
        return ratio(m // 2, n - 1)
    """)
    new = _all(code)
    assert "(_matches := m // 0)[0]" not in new and "(_matches := m // 0, n)[1]" in new
    assert "(_matches := m // 2, _length := n - 1)[1] else 1.0" in new
    for n in (0, 1):
        with pytest.raises(ZeroDivisionError):
            call(new, "use", 3, n)
    same(code, new, "fine", (7, 1), (7, 3), (0, 5))
    # an argument that calls something unknown, or a body that does
    declines(
        "inline_call",
        src("""
    def twice(x):
        return x + x

    def show(x):
        return print(x) or x

    def use(log, n):
        return twice(log(n)) + show(n + 1)
    """),
    )
    # a local whose value is read only in a branch; locals over an argument expression
    declines(
        "inline_call",
        src("""
    def pick(a, b):
        n = len(a)
        return n if b else 0

    def size(a):
        n = len(a)
        return n + 1

    def use(xs, flag):
        return pick(xs, flag) + size(xs + xs)
    """),
    )


def test_instance_of_a_local_class() -> None:
    code = src("""
    class C:
        def __init__(self, base):
            self.base = base

        def get(self, k):
            return self.base + k * 2


    def use(xs):
        c = C(10)
        return [c.get(x) for x in xs]
    """)
    new = rewrite("inline_call", code)
    assert "[(c.base + x * 2) for x in xs]" in new
    same(code, new, "use", ([1, 2, 3],))
    # rebound, or made by a class with __new__: no longer known to be a C
    declines("inline_call", code.replace("c = C(10)", "c = C(10)\n    c = make()"))
    declines(
        "inline_call",
        code.replace("class C:", "class C:\n    def __new__(cls, base):\n        return 1\n"),
    )


def test_a_binding_in_a_nested_scope_is_not_the_callers() -> None:
    declines(
        "inline_call",
        src("""
    class C:
        def get(self, k):
            return self.base + k


    def use(xs):
        def make():
            c = C()
            return c

        return [c.get(x) for x in xs]
    """),
    )
