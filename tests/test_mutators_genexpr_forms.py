"""genexpr_forms: a generator fed to tuple/list/set/join/sum becomes a comprehension, same result."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import declines, rewrite, same, src

CODE = src("""
def forms(words, n):
    # every consumer the rewrite knows
    a = tuple(w.upper() for w in words if w)
    b = "-".join(w for w in words)
    c = set(len(w) for w in words)
    d = sum(len(w) * n for w in words)
    e = list(w for w in words if len(w) > n)
    return a, b, c, d, e
""")


def _all(code: str) -> str:
    while True:
        try:
            code = rewrite("genexpr_forms", code)
        except AssertionError:
            return code


def test_every_form_is_rewritten() -> None:
    new = _all(CODE)
    assert "tuple([w.upper() for w in words if w])" in new
    assert '"-".join([w for w in words])' in new
    assert "c = {len(w) for w in words}" in new
    assert "sum([len(w) * n for w in words])" in new
    assert "e = [w for w in words if len(w) > n]" in new
    same(CODE, new, "forms", (["ab", "", "cde"], 1), ([], 0))


@given(st.lists(st.text(max_size=4), max_size=6), st.integers(-2, 3))
def test_same_results(words: list[str], n: int) -> None:
    same(CODE, _all(CODE), "forms", (words, n))


def test_declines_early_stopping_and_effects() -> None:
    declines(
        "genexpr_forms",
        src("""
    def f(xs):
        return any(x for x in xs), all(x for x in xs), min(x for x in xs), next(x for x in xs)
    """),
    )
    # sum over elements that call something unknown: the adds would interleave differently
    declines(
        "genexpr_forms",
        src("""
    def f(xs, log):
        return sum(log(x) for x in xs)
    """),
    )
    # a shadowed builtin, a join on something that may not be a str, module level, two args
    declines(
        "genexpr_forms",
        src("""
    def tuple(x):
        return x

    def f(xs, sep):
        return tuple(x for x in xs), sep.join(x for x in xs), sum((x for x in xs), 0)

    TOTAL = set(x for x in range(3))
    """),
    )


def test_sum_with_walrus_declines() -> None:
    declines(
        "genexpr_forms",
        src("""
    def f(xs):
        return sum((y := x) for x in xs)
    """),
    )


def test_sum_may_call_anything_for_its_first_iterable() -> None:
    code = src("""
    class Blocks:
        def __init__(self, n):
            self.n = n

        def get(self):
            return [(i, i, i) for i in range(self.n)]

        def total(self):
            return sum(t[-1] for t in self.get())
    """)
    new = rewrite("genexpr_forms", code)
    assert "sum([t[-1] for t in self.get()])" in new
