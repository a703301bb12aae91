"""Each rewrite: changes what it should, keeps behaviour, declines what it should, keeps comments."""

from __future__ import annotations

import difflib
import textwrap
from typing import Any

import pytest

from evolution.errors import MutationError
from evolution.mutators import ALL_MUTATORS, by_name
from evolution.mutators.base import Site

PATH = "pkg/mod.py"


def src(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")


def rewrite(kind: str, code: str, which: int = 0) -> str:
    mutator = by_name(kind)
    sites = mutator.scan(PATH, code)
    assert sites, f"{kind} found nothing in:\n{code}"
    assert all(s.kind == kind and s.file == PATH and s.weight >= 1.0 for s in sites)
    new = mutator.apply(code, sites[which])
    compile(new, PATH, "exec")
    assert new != code
    assert_comments_kept(code, new)
    return new


def declines(kind: str, code: str) -> None:
    assert by_name(kind).scan(PATH, code) == []


def call(code: str, func: str, *args: Any) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(code, PATH, "exec"), namespace)
    return namespace[func](*args)


def same(old: str, new: str, func: str, *inputs: tuple[Any, ...]) -> None:
    for args in inputs:
        assert call(old, func, *args) == call(new, func, *args), args


def assert_comments_kept(old: str, new: str) -> None:
    """Only code lines are replaced or deleted; every comment and blank line survives as is."""
    a, b = old.splitlines(), new.splitlines()
    for tag, i1, i2, _, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("replace", "delete"):
            for line in a[i1:i2]:
                assert line.strip() and not line.strip().startswith("#"), f"lost {line!r}"
    comments = [line for line in a if line.strip().startswith("#")]
    assert comments == [line for line in b if line.strip().startswith("#")]


HEADER = '''\
"""Module docstring."""

# a comment that must survive

import re
'''


# ---------------------------------------------------------------- set_membership

SET_MODULE = HEADER + src("""
STOP = ["a", "an", "the", "of"]  # the stopwords


def keep(words):
    # filter the words
    out = []
    for w in words:
        if w not in STOP:
            out.append(w)
    return out
""")


def test_set_membership_module_list() -> None:
    new = rewrite("set_membership", SET_MODULE)
    assert "STOP_SET = frozenset(STOP)\n" in new
    assert "if w not in STOP_SET:" in new
    assert new.index("STOP_SET = frozenset") > new.index("STOP = [")
    same(SET_MODULE, new, "keep", (["a", "b", "the", "c"],), ([],))


def test_set_membership_local_and_literal() -> None:
    code = src("""
    def count(words):
        names = ("x", "y", 3)
        n = 0
        for w in words:
            if w in names:
                n += 1
            if w in [1, 2, "z"]:
                n += 10
        return n
    """)
    sites = by_name("set_membership").scan(PATH, code)
    assert len(sites) == 2
    new = rewrite("set_membership", code, 0)
    assert "_names_set = frozenset(names)" in new and "if w in _names_set:" in new
    new2 = rewrite("set_membership", new, 0)
    assert 'if w in {1, 2, "z"}:' in new2
    same(code, new2, "count", (["x", 3, "z", "q", 2],))


def test_set_membership_declines_mutated_or_unsafe() -> None:
    declines(
        "set_membership",
        src("""
    STOP = ["a", "b"]

    def keep(words):
        STOP.append("c")
        return [w for w in words if w not in STOP]
    """),
    )
    declines(
        "set_membership",
        src("""
    def keep(words, extra):
        names = ["a", "b"]
        names = names + extra
        return [w for w in words if w not in names]
    """),
    )
    declines(
        "set_membership",
        src("""
    def keep(words, names):
        return [w for w in words if w not in names]
    """),
    )


# ---------------------------------------------------------------- hoist_invariant

HOIST = HEADER + src("""
def count(rows, allowed):
    # count rows whose kind is allowed
    n = 0
    for row in rows:
        if row in set(allowed):
            n += 1
    return n
""")


def test_hoist_invariant_moves_call_before_loop() -> None:
    new = rewrite("hoist_invariant", HOIST)
    assert "    _hoisted_0 = set(allowed)\n    for row in rows:\n" in new
    assert "if row in _hoisted_0:" in new
    same(HOIST, new, "count", ([1, 2, 3], [2, 3]), ([], [1]))


def test_hoist_invariant_sees_through_bisect_searches() -> None:
    code = HEADER + src("""
    import bisect

    def histogram(values, bounds):
        counts = [0] * (len(bounds) + 1)
        for v in values:
            counts[bisect.bisect_left(sorted(bounds), v)] += 1
        return counts
    """)
    new = rewrite("hoist_invariant", code)
    assert "_hoisted_0 = sorted(bounds)" in new and "bisect.bisect_left(_hoisted_0, v)" in new
    same(code, new, "histogram", ([5, 1, 9, 3], [4, 2, 8]), ([], [1]))


def test_hoist_invariant_while_test() -> None:
    code = src("""
    def total(items):
        i = 0
        s = 0
        while i < len(items):
            s += items[i]
            i += 1
        return s
    """)
    new = rewrite("hoist_invariant", code)
    assert "_hoisted_0 = len(items)" in new and "while i < _hoisted_0:" in new
    same(code, new, "total", ([1, 2, 3],), ([],))


def test_hoist_invariant_declines() -> None:
    declines(
        "hoist_invariant",
        src("""
    def f(rows, seen):
        n = 0
        for row in rows:
            n += len(seen)
            seen.append(row)
        return n
    """),
    )
    declines(
        "hoist_invariant",
        src("""
    def f(rows):
        n = 0
        for row in rows:
            n += len(row)
        return n
    """),
    )
    declines(
        "hoist_invariant",
        src("""
    def f(rows, other):
        n = 0
        for row in rows:
            if other is not None:
                n += len(other)
        return n
    """),
    )
    declines(
        "hoist_invariant",
        src("""
    def f(rows, limits):
        for row in rows:
            if row > max(limits):
                return row
    """),
    )


# ---------------------------------------------------------------- join_concat

JOIN = HEADER + src("""
def render(rows):
    text = ""
    # one line per row
    for k, v in rows:
        if v:
            text += "%s=%s\\n" % (k, v)
        else:
            text += k + "\\n"
    return text
""")


def test_join_concat() -> None:
    new = rewrite("join_concat", JOIN)
    assert "_text_parts: list[str] = []" in new
    assert '_text_parts.append("%s=%s\\n" % (k, v))' in new
    assert '_text_parts.append(k + "\\n")' in new
    assert '    text = "".join(_text_parts)\n    return text' in new
    same(JOIN, new, "render", ([("a", 1), ("b", 0)],), ([],))


def test_join_concat_declines_when_read_in_loop() -> None:
    declines(
        "join_concat",
        src("""
    def render(rows):
        text = ""
        for r in rows:
            if len(text) > 10:
                break
            text += r
        return text
    """),
    )
    declines(
        "join_concat",
        src("""
    def render(rows):
        text = "start"
        for r in rows:
            text += r
        return text
    """),
    )


# ---------------------------------------------------------------- precompile_regex

REGEX = HEADER + src("""

def digits(lines):
    # keep digit runs
    out = []
    for line in lines:
        out.extend(re.findall(r"\\d+", line, flags=re.I))
        if re.match(
            r"x"
            r"y",
            line,
        ):
            out.append("xy")
    return out
""")


def test_precompile_regex() -> None:
    new = rewrite("precompile_regex", REGEX)
    assert 'import re\n_RE_DIGITS_1 = re.compile(r"\\d+", re.I)\n' in new
    assert "_RE_DIGITS_1.findall(line)" in new
    new2 = rewrite("precompile_regex", new)
    assert '_RE_DIGITS_2 = re.compile(r"x" r"y")' in new2
    assert "        if _RE_DIGITS_2.match(\n            line,\n        ):\n" in new2
    same(REGEX, new2, "digits", (["a12b3", "xyz", "q"],))


def test_precompile_regex_declines() -> None:
    declines(
        "precompile_regex",
        src("""
    import re

    def f(pat, s):
        return re.match(pat, s)
    """),
    )
    declines(
        "precompile_regex",
        src("""
    import re

    def f(s):
        return re.match("(unclosed", s)
    """),
    )
    declines(
        "precompile_regex",
        src("""
    import re

    def f(s, fl):
        return re.match("a", s, flags=fl)
    """),
    )
    declines("precompile_regex", "import re\nM = re.match('a', 'a')\n")


# ---------------------------------------------------------------- memoize

MEMO = HEADER + src("""
def fib(n):
    # the classic
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def shout(word):
    return word.upper() + "!"


def all_shout(words):
    return [shout(w) for w in words]
""")


def test_memoize_recursive_and_in_loop() -> None:
    sites = by_name("memoize").scan(PATH, MEMO)
    assert {s.function for s in sites} == {"fib", "shout"}
    fib = next(s for s in sites if s.function == "fib")
    shout = next(s for s in sites if s.function == "shout")
    assert fib.weight > shout.weight
    new = by_name("memoize").apply(MEMO, fib)
    assert_comments_kept(MEMO, new)
    assert "import re\nimport functools\n" in new
    assert "@functools.lru_cache(maxsize=None)\ndef fib(n):" in new
    same(MEMO, new, "fib", (0,), (1,), (20,))
    new2 = rewrite("memoize", new)
    assert "@functools.lru_cache(maxsize=None)\ndef shout(word):" in new2
    assert new2.count("import functools") == 1
    same(MEMO, new2, "all_shout", (["a", "b", "a"],))


@pytest.mark.parametrize(
    "body",
    [
        "def f(x):\n    print(x)\n    return x\n",
        "def f(x):\n    return [x, x]\n",
        "def f(x):\n    out = []\n    out.append(x)\n    return out\n",
        "import random\ndef f(x):\n    return x + random.random()\n",
        "STATE = {}\ndef f(x):\n    STATE[x] = 1\n    return x\n",
        "def f(items):\n    return len(items)\n",
        "def f(x, acc=[]):\n    return x\n",
        "COUNT = 0\ndef f(x):\n    global COUNT\n    COUNT += 1\n    return x\n",
        "def f(x):\n    yield x\n",
        "def f(x):\n    return x.split()\n",
    ],
)
def test_memoize_declines_impure_or_mutable(body: str) -> None:
    declines("memoize", body + "\ndef g(xs):\n    return [f(x) for x in xs]\n")


def test_memoize_needs_repeated_calls() -> None:
    declines("memoize", "def f(x):\n    return x + 1\n\nY = f(2)\n")


# ---------------------------------------------------------------- local_alias

ALIAS = HEADER + src("""
import math


def roots(values):
    out = []
    # alias candidates
    for v in values:
        out.append(math.sqrt(v))
        out.append(v)
    return out
""")


def test_local_alias() -> None:
    sites = by_name("local_alias").scan(PATH, ALIAS)
    assert {s.detail.split("`")[1] for s in sites} == {"out.append", "math.sqrt"}
    site = next(s for s in sites if "out.append" in s.detail)
    new = by_name("local_alias").apply(ALIAS, site)
    assert_comments_kept(ALIAS, new)
    assert "    # alias candidates\n    _out_append = out.append\n    for v in values:" in new
    assert "_out_append(math.sqrt(v))" in new and "_out_append(v)" in new
    same(ALIAS, new, "roots", ([1.0, 4.0],))
    new2 = rewrite("local_alias", new)
    assert "_math_sqrt = math.sqrt" in new2
    same(ALIAS, new2, "roots", ([1.0, 9.0],))


def test_local_alias_declines_rebound() -> None:
    declines(
        "local_alias",
        src("""
    def f(groups):
        for g in groups:
            g.sort()
        return groups
    """),
    )
    declines(
        "local_alias",
        src("""
    def f(values):
        out = []
        for v in values:
            out.append(v)
            out = list(out)
        return out
    """),
    )


# ---------------------------------------------------------------- min_max_sorted

SORTED = HEADER + src("""
def ends(xs, words, n):
    # both ends
    lo = sorted(xs)[0]
    hi = sorted(xs, reverse=True)[0]
    top = sorted(xs)[-1]
    longest = sorted(words, key=len, reverse=True)[0]
    best = sorted(words, key=len, reverse=True)[:n]
    least = sorted(xs)[:2]
    return lo, hi, top, longest, best, least
""")


def test_min_max_sorted_all_shapes() -> None:
    new = SORTED
    for _ in range(6):
        new = rewrite("min_max_sorted", new)
    assert "lo = min(xs)" in new and "hi = max(xs)" in new and "top = max(xs)" in new
    assert "longest = max(words, key=len)" in new
    assert "best = heapq.nlargest(n, words, key=len)" in new
    assert "least = heapq.nsmallest(2, xs)" in new
    assert "import re\nimport heapq\n" in new
    declines("min_max_sorted", new)
    words = ["aa", "b", "cc", "ddd", "ee"]
    same(SORTED, new, "ends", ([3, 1, 2, 5], words, 3), ([1, 1.0, True], words, 0))


def test_min_max_sorted_declines() -> None:
    declines(
        "min_max_sorted",
        "def f(xs):\n    try:\n        return sorted(xs)[0]\n    except IndexError:\n        return None\n",
    )
    declines("min_max_sorted", "def f(xs):\n    return sorted(xs, key=len)[-1]\n")
    declines("min_max_sorted", "def f(xs):\n    return sorted(xs)[1]\n")
    declines("min_max_sorted", "def f(xs, n):\n    return sorted(xs)[n:]\n")


# ---------------------------------------------------------------- comprehension

COMP = HEADER + src("""
def evens(xs):
    # keep the even squares
    out = []
    for x in xs:
        if x % 2 == 0:
            out.append(x * x)
    return out


def pairs(d):
    res = []
    for k, v in d.items():
        res.append((k, v))
    return res
""")


def test_comprehension() -> None:
    new = rewrite("comprehension", COMP)
    assert "    out = [x * x for x in xs if x % 2 == 0]\n    return out" in new
    same(COMP, new, "evens", ([1, 2, 3, 4],), ([],))
    new2 = rewrite("comprehension", new)
    assert "res = [(k, v) for k, v in d.items()]" in new2
    same(COMP, new2, "pairs", ({"a": 1, "b": 2},))


def test_comprehension_declines() -> None:
    declines(
        "comprehension",
        src("""
    def f(xs):
        out = []
        for x in xs:
            out.append(x)
        return out, x
    """),
    )
    declines(
        "comprehension",
        src("""
    def f(xs):
        out = []
        for x in xs:
            out.append(x)
            print(x)
        return out
    """),
    )
    declines(
        "comprehension",
        src("""
    def f(xs):
        out = []
        for x in xs:
            out.append(len(out))
        return out
    """),
    )


# ---------------------------------------------------------------- any_all_generator

ANYALL = HEADER + src("""
def has(words, wanted):
    # short-circuit me
    return any([w in words for w in wanted]), all([w.startswith("a") for w in wanted],)
""")


def test_any_all_generator() -> None:
    new = rewrite("any_all_generator", ANYALL)
    new = rewrite("any_all_generator", new)
    assert "any(w in words for w in wanted)" in new
    assert 'all(w.startswith("a") for w in wanted)' in new
    same(ANYALL, new, "has", (["a", "b"], ["a", "ab"]), ([], []), (["x"], ["b"]))


def test_any_all_generator_declines_side_effects() -> None:
    declines("any_all_generator", "def f(xs):\n    return any([print(x) for x in xs])\n")
    declines("any_all_generator", "def f(xs):\n    return any([x for x in xs] + [1])\n")


# ---------------------------------------------------------------- the registry and round trips


def test_registry() -> None:
    names = [m.name for m in ALL_MUTATORS]
    assert len(names) == len(set(names)) >= 8
    for m in ALL_MUTATORS:
        assert by_name(m.name) is m
        assert 0.0 <= m.risk <= 1.0
    with pytest.raises(MutationError):
        by_name("nope")


def test_apply_raises_when_site_is_gone() -> None:
    site = Site(PATH, "keep", 999, "set_membership", "", 2.0)
    with pytest.raises(MutationError):
        by_name("set_membership").apply(SET_MODULE, site)
    with pytest.raises(MutationError):
        by_name("set_membership").apply("def broken(:\n", site)


def test_scan_of_unparsable_source_is_empty() -> None:
    for m in ALL_MUTATORS:
        assert m.scan(PATH, "def broken(:\n") == []


CORPUS = [SET_MODULE, HOIST, JOIN, REGEX, MEMO, ALIAS, SORTED, COMP, ANYALL]


@pytest.mark.parametrize("code", CORPUS)
def test_every_site_rewrites_to_code_that_compiles(code: str) -> None:
    for m in ALL_MUTATORS:
        for site in m.scan(PATH, code):
            new = m.apply(code, site)
            compile(new, PATH, "exec")
            assert new != code
            assert_comments_kept(code, new)


def test_memoize_finds_helpers_made_hot_by_their_callers() -> None:
    """A pure helper called per record through another function is as hot as a loop body;
    rebinding a parameter and calling a known-pure imported function keep it pure."""
    from evolution.mutators import by_name

    source = (
        "from urllib.parse import unquote\n\n\n"
        "def clean(path):\n"
        "    path = path.split('?', 1)[0]\n"
        "    return unquote(path).lower()\n\n\n"
        "def record(rec):\n"
        "    return {'path': clean(rec['path'])}\n\n\n"
        "def records(recs):\n"
        "    return [record(r) for r in recs]\n"
    )
    sites = by_name("memoize").scan("m.py", source)
    assert [s.function for s in sites] == ["clean"]
    rewritten = by_name("memoize").apply(source, sites[0])
    assert "@functools.lru_cache(maxsize=None)\ndef clean(path):" in rewritten
    impure = source.replace("return unquote(path).lower()", "return open(path).read()")
    assert by_name("memoize").scan("m.py", impure) == []
