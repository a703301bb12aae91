"""inline_body: a call statement of a small function becomes its statements, same results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src('''
WS = frozenset(" \\t")


def skip_chars(src, pos, chars):
    """Docstrings do not count."""
    try:
        while src[pos] in chars:
            pos += 1
    except IndexError:
        pass
    return pos


def expect(src, pos, char):
    found = src[pos : pos + 1]
    if found != char:
        raise ValueError(f"wanted {char!r} at {pos}, found {found!r}")
    return pos + 1


def words(src):
    pos = 0
    out = []
    while pos < len(src):
        pos = skip_chars(src, pos, WS)
        start = pos
        while pos < len(src) and src[pos] not in WS and src[pos] != ",":
            pos += 1
        out.append(src[start:pos])
        pos = skip_chars(src, pos, WS)
        if pos < len(src):
            pos = expect(src, pos, ",")
    return out
''')


def _all(code: str) -> str:
    while by_name("inline_body").scan("pkg/mod.py", code):
        code = rewrite("inline_body", code)
    return code


def test_every_call_statement_takes_the_body() -> None:
    sites = by_name("inline_body").scan("pkg/mod.py", CODE)
    assert [s.detail.split(" call")[0] for s in sites] == ["2", "1"]
    new = _all(CODE)
    assert "skip_chars(" not in new.split("def words")[1]
    assert "        try:\n            while src[pos] in WS:\n                pos += 1\n" in new
    # a literal is not pasted into an f-string: the parameter gets a fresh local
    assert '_char = ","' in new and "_found = src[pos : pos + 1]" in new
    same(CODE, new, "words", ("a, b,c",), ("  x  ",), ("",))


@given(st.text(alphabet="ab ,\\t", max_size=12))
def test_same_results_and_errors(text: str) -> None:
    new = _all(CODE)

    def outcome(code: str) -> object:
        try:
            namespace: dict[str, object] = {}
            exec(compile(code, "pkg/mod.py", "exec"), namespace)
            return namespace["words"](text)  # type: ignore[operator]
        except ValueError as exc:
            return str(exc)

    assert outcome(CODE) == outcome(new)


def test_declines_early_returns_scopes_and_captures() -> None:
    declines(
        "inline_body",
        src("""
    def first(xs):
        for x in xs:
            if x:
                return x
        return None

    def squares(xs):
        out = [x * x for x in xs]
        return out

    def counter():
        global N
        N = 1

    N = 0

    def use(xs):
        a = first(xs)
        b = squares(xs)
        counter()
        return a, b
    """),
    )
    # a global the body reads is a local of the caller
    declines(
        "inline_body",
        src("""
    LIMIT = 3

    def cap(x):
        y = min(x, LIMIT)
        return y

    def use(x):
        LIMIT = 5
        z = cap(x)
        return z + LIMIT
    """),
    )


def test_inside_a_try_the_target_is_not_updated_half_way() -> None:
    code = src("""
    def bump(n, limit):
        n += 1
        if n > limit:
            raise ValueError(n)
        return n

    def use(n, limit):
        try:
            n = bump(n, limit)
        except ValueError:
            return -n
        return n
    """)
    new = rewrite("inline_body", code)
    assert "_n = n" in new and "n = _n" in new
    same(code, new, "use", (1, 5), (5, 5))


def test_never_pasted_into_a_class_body() -> None:
    declines(
        "inline_body",
        src("""
    def double(x):
        y = x * 2
        return y

    def build(n):
        class K:
            z = double(n)

        return K
    """),
    )
