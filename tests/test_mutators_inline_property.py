"""inline_property: a read of a plain property becomes a read of the attribute it returns."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_mutators import declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src("""
class Lexer:
    def __init__(self, text, punct=""):
        self.text = text
        self._punct = punct

    @property
    def punct(self):
        \"\"\"The punctuation characters (read-only).\"\"\"
        return self._punct

    def count(self):
        n = 0
        for c in self.text:
            # one property read per character, as shlex does
            if self.punct and c in self.punct:
                n += 1
        return n, self.punct


def run(text, punct):
    lex = Lexer(text, punct)
    return lex.count(), lex.punct
""")


def test_reads_in_methods_and_of_local_instances_become_attribute_reads() -> None:
    sites = by_name("inline_property").scan("pkg/mod.py", CODE)
    assert [(s.function, s.line) for s in sites] == [("Lexer.count", 15)]
    assert "4 read(s) of `Lexer.punct`" in sites[0].detail
    new = rewrite("inline_property", CODE)
    assert "if self._punct and c in self._punct:" in new
    assert "return n, self._punct" in new
    assert "return lex.count(), lex._punct" in new
    assert "    def punct(self):" in new  # the property stays for other callers
    same(CODE, new, "run", ("a(b)c", "()"), ("", "()"), ("abc", ""))


@given(st.text(alphabet="ab();|", max_size=12), st.sampled_from(["", "()", ";|"]))
def test_same_results(text: str, punct: str) -> None:
    new = rewrite("inline_property", CODE)
    same(CODE, new, "run", (text, punct))


def test_declines_where_the_read_may_not_reach_the_getter() -> None:
    # a subclass in the module may override the property
    declines(
        "inline_property",
        CODE + "\n\nclass Shell(Lexer):\n    punct = '|'\n",
    )
    # a setter (an assignment of the name) or setattr: the name is not fixed
    declines("inline_property", CODE + "\n\ndef reset(lex):\n    lex.punct = ''\n")
    declines("inline_property", CODE + "\n\ndef poke(lex):\n    setattr(lex, 'x', 1)\n")
    # attribute lookup hooks and a base class that could define them
    declines(
        "inline_property",
        CODE.replace(
            "class Lexer:", "class Lexer:\n    def __getattr__(self, k):\n        return 0\n"
        ),
    )
    declines("inline_property", CODE.replace("class Lexer:", "class Lexer(dict):"))
    declines("inline_property", "@dataclass\n" + CODE)
    # a getter that computes, one with another decorator, a shadowed `property`
    declines("inline_property", CODE.replace("return self._punct", "return self._punct or ''"))
    declines("inline_property", CODE.replace("@property", "@functools.cached_property"))
    declines("inline_property", "property = staticmethod\n" + CODE)
    # `self` rebound in the method, or a receiver whose class is not known
    declines(
        "inline_property",
        CODE.replace("        n = 0\n", "        n = 0\n        self = Lexer('', '')\n").replace(
            "    lex = Lexer(text, punct)\n    return lex.count(), lex.punct",
            "    return Lexer(text, punct).count()",
        ),
    )
    declines(
        "inline_property",
        src("""
    class Lexer:
        @property
        def punct(self):
            return self._punct


    def f(lex):
        return lex.punct
    """),
    )


def test_reads_inside_nested_functions_are_left_alone() -> None:
    code = src("""
    class Box:
        def __init__(self, v):
            self._v = v

        @property
        def v(self):
            return self._v

        def later(self):
            return lambda: self.v
    """)
    declines("inline_property", code)
