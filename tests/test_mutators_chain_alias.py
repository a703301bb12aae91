"""chain_alias: an if/elif chain testing ``self.attr`` reads it once, with the same results."""

from __future__ import annotations

from test_mutators import call, declines, rewrite, same, src

from evolution.mutators import by_name

CODE = src("""
class Lexer:
    def __init__(self, text):
        self.text = text
        self.state = " "
        self.quotes = "'\\""

    def run(self):
        out = []
        for ch in self.text:
            # the state machine: one test of the state per branch
            if self.state is None:
                break
            elif self.state == " ":
                if ch in self.quotes:
                    self.state = ch
                elif ch == ".":
                    self.state = None
                else:
                    self.state = "a"
            elif self.state in self.quotes:
                if ch == self.state:
                    self.state = " "
                out.append(ch)
            elif (self.state == "a"
                  and ch != " "):
                out.append(ch.upper())
            else:
                self.state = " "
        return "".join(out), self.state


def lex(text):
    return Lexer(text).run()
""")


def test_the_chain_reads_the_attribute_once() -> None:
    sites = by_name("chain_alias").scan("pkg/mod.py", CODE)
    assert [(s.function, s.line) for s in sites] == [("Lexer.run", 11)]
    assert "`self.state` read by 4 tests" in sites[0].detail
    new = rewrite("chain_alias", CODE)
    assert "            _state = self.state\n            if _state is None:" in new
    assert 'elif _state == " ":' in new and "elif _state in self.quotes:" in new
    assert 'elif (_state == "a"' in new
    # reads in the bodies stay as they are: a body may have changed the attribute
    assert "if ch == self.state:" in new and 'self.state = " "' in new
    same(CODE, new, "lex", ("ab 'c d' e",), ("'x",), ("a.b",), ("",), ("  'q' . z",))
    assert call(new, "lex", "ab 'c d' e") == ("Bc d'E", "a")


def test_a_chain_that_does_not_begin_with_the_read_is_left_alone() -> None:
    # the first test reads ``flag`` first: hoisting ``self.state`` would move its read
    # before a test that may end the chain (and could raise where the original did not)
    declines(
        "chain_alias",
        CODE.replace("if self.state is None:", "if flag and self.state is None:").replace(
            "def run(self):", "def run(self, flag=True):"
        ),
    )


def test_calls_rebinding_and_non_data_attributes_are_declined() -> None:
    # a call between the tests could change the attribute
    declines("chain_alias", CODE.replace('elif self.state == " ":', 'elif self.step() == " ":'))
    declines(
        "chain_alias",
        CODE.replace('elif self.state == " ":', 'elif self.state == self.peek(" "):'),
    )
    # an assignment expression in a test
    declines(
        "chain_alias",
        CODE.replace("elif self.state in self.quotes:", "elif (q := self.state) in self.quotes:"),
    )
    # a property (computed on every read) or __getattr__: not a plain data attribute
    prop = CODE.replace(
        "    def run(self):",
        "    @property\n    def state(self):\n        return self._s\n\n    def run(self):",
    )
    declines("chain_alias", prop)
    declines(
        "chain_alias",
        CODE.replace(
            "    def run(self):",
            "    def __getattr__(self, name):\n        return 1\n\n    def run(self):",
        ),
    )
    # not set by __init__
    declines("chain_alias", CODE.replace('        self.state = " "\n', "", 1))
    # ``self`` rebound in the method
    declines(
        "chain_alias", CODE.replace("        out = []\n", "        out = []\n        self = self\n")
    )
    # one test only: nothing to save
    one = src("""
    class A:
        def __init__(self):
            self.s = 1

        def f(self):
            if self.s == 1:
                return 1
            else:
                return self.s
    """)
    declines("chain_alias", one)
    # a plain function's parameter: its attribute may be a property of any class
    declines(
        "chain_alias",
        src("""
        def f(o):
            if o.s == 1:
                return 1
            elif o.s == 2:
                return 2
        """),
    )


def test_an_elif_chain_nested_in_a_branch_is_its_own_site() -> None:
    nested = src("""
    class M:
        def __init__(self):
            self.mode = 0
            self.kind = "x"

        def step(self, c):
            if self.mode == 0:
                if self.kind == "x":
                    return 1
                elif self.kind == "y":
                    return 2
            elif self.mode == 1:
                return 3
            return 4


    def run(mode, kind):
        m = M()
        m.mode, m.kind = mode, kind
        return m.step("c")
    """)
    sites = by_name("chain_alias").scan("pkg/mod.py", nested)
    assert [(s.function, s.line) for s in sites] == [("M.step", 7), ("M.step", 8)]
    for which in (0, 1):
        new = rewrite("chain_alias", nested, which)
        same(nested, new, "run", *((m, k) for m in (0, 1, 2) for k in ("x", "y", "z")))
