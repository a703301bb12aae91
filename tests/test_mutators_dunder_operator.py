"""dunder_operator: a bound ``__contains__`` of a builtin container becomes ``in``, same results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import declines, rewrite, same, src

CODE = src("""
def overlap(a, b):
    seen = {}
    # the alias is bound with another name, as difflib does
    has, n = seen.__contains__, 0
    for x in b:
        seen[x] = True
    for x in a:
        if has(x) or has(x + 1):
            n = n + 1
    return n


def direct(a):
    pool = set(a)
    return [x for x in range(5) if pool.__contains__(x)]
""")


def test_alias_and_direct_calls_become_in() -> None:
    new = rewrite("dunder_operator", CODE)
    assert "    n = 0\n" in new
    assert "if (x in seen) or (x + 1 in seen):" in new
    assert "__contains__" in new  # the direct call is a second site
    new = rewrite("dunder_operator", new)
    assert "if (x in pool)]" in new and "__contains__" not in new
    same(CODE, new, "overlap", ([1, 2, 3], [2, 9]), ([], [1]))
    same(CODE, new, "direct", ([1, 3, 7],))


@given(st.lists(st.integers(-3, 3), max_size=6), st.lists(st.integers(-3, 3), max_size=6))
def test_same_results(a: list[int], b: list[int]) -> None:
    new = rewrite("dunder_operator", rewrite("dunder_operator", CODE))
    same(CODE, new, "overlap", (a, b))
    same(CODE, new, "direct", (a,))


def test_declines_unknown_containers_and_other_uses() -> None:
    # a parameter (any type: its __contains__ may return a non-bool), an attribute
    declines(
        "dunder_operator",
        src("""
    def f(d, xs):
        has = d.__contains__
        return [x for x in xs if has(x)]

    class A:
        def g(self, xs):
            has = self.d.__contains__
            return [x for x in xs if has(x)]
    """),
    )
    # the alias escapes (passed as a value), the container is rebound, or bound after
    declines(
        "dunder_operator",
        src("""
    def f(xs):
        d = {}
        has = d.__contains__
        return list(filter(has, xs))

    def g(xs):
        d = {}
        d = make()
        has = d.__contains__
        return [x for x in xs if has(x)]

    def h(xs):
        has = d.__contains__
        d = {}
        return [x for x in xs if has(x)]
    """),
    )


def test_a_lone_alias_line_is_removed_unless_commented() -> None:
    code = src("""
    def f(xs):
        d = dict.fromkeys(xs) if xs else {}
        seen = []
        has = seen.__contains__
        for x in xs:
            if not has(x):
                seen.append(x)
        return seen
    """)
    new = rewrite("dunder_operator", code)
    assert "has" not in new and "if not (x in seen):" in new
    same(code, new, "f", ([3, 1, 3, 2, 1],))
    declines(
        "dunder_operator",
        code.replace("has = seen.__contains__", "has = seen.__contains__  # fast"),
    )
