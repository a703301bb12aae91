"""inline_method: a method call on a receiver of known exact class becomes the method's statements."""

from __future__ import annotations

from test_mutators import PATH, declines, same, src

from evolution.mutators import by_name


def rewrite(kind: str, code: str) -> str:
    """The one candidate applied; the method's comments come along with its statements."""
    sites = by_name(kind).scan(PATH, code)
    assert len(sites) == 1 and sites[0].kind == kind and sites[0].weight >= 1.0
    new = by_name(kind).apply(code, sites[0])
    compile(new, PATH, "exec")
    assert new != code
    return new


#: difflib's shape: a matcher built in the function, a guard-return setter, a counting bound
CODE = src('''
def _ratio(matches, length):
    if length:
        return 2.0 * matches / length
    return 1.0


class Matcher:
    def __init__(self):
        self.a = self.b = None
        self.counts = None
        self.calls = 0

    def set_a(self, a):
        """Docstrings do not count."""
        if a is self.a:
            return
        self.a = a
        self.calls = self.calls + 1

    def set_b(self, b):
        self.b = b
        self.counts = None

    def quick(self):
        # count b once
        if self.counts is None:
            self.counts = counts = {}
            for elt in self.b:
                counts[elt] = counts.get(elt, 0) + 1
        counts = self.counts
        avail = {}
        matches = 0
        for elt in self.a:
            numb = avail[elt] if elt in avail else counts.get(elt, 0)
            avail[elt] = numb - 1
            if numb > 0:
                matches = matches + 1
        return _ratio(matches, len(self.a) + len(self.b))

    def exact(self):
        return _ratio(sum(x == y for x, y in zip(self.a, self.b)), len(self.a) + len(self.b))


def close(word, words, cutoff):
    out = []
    s = Matcher()
    s.set_b(word)
    for x in words:
        s.set_a(x)
        if len(x) > 0 and s.quick() >= cutoff and s.exact() >= cutoff:
            out.append((x, s.exact(), s.calls))
    return out
''')

WORDS = ["apple", "ape", "peach", "puppy", "apple", "", "applet", "maple"]
INPUTS = [("apple", WORDS, 0.6), ("ape", WORDS, 0.3), ("zzz", WORDS, 0.0), ("", WORDS, 0.5)]


def test_every_method_call_on_the_receiver_is_inlined_same_results() -> None:
    sites = by_name("inline_method").scan(PATH, CODE)
    assert len(sites) == 1 and sites[0].function == "close"
    assert "`set_b`, `set_a`, `quick` on `s`" in sites[0].detail
    new = rewrite("inline_method", CODE)
    body = new.split("def close")[1]
    assert "s.set_a(" not in body and "s.quick()" not in body and "s.set_b(" not in body
    # the guard return is the same test, negated
    assert "        if x is not s.a:\n            s.a = x\n" in body
    # the and-chain splits where the call was: the first operand still decides first
    assert "        if len(x) > 0:\n" in body
    assert "(_ratio(_matches, len(x) + len(word))) >= cutoff and s.exact() >= cutoff:" in body
    # and the stores the paste exposed are forwarded (forward_attr, same receiver)
    assert "    s.b = word\n" in body and "            for _elt in x:\n" in body
    same(CODE, new, "close", *INPUTS)


def test_a_call_first_in_the_test_and_an_assigned_result() -> None:
    code = CODE.replace(
        "        if len(x) > 0 and s.quick() >= cutoff and s.exact() >= cutoff:",
        "        q = s.quick()\n        if s.quick() >= cutoff and q:",
    )
    new = rewrite("inline_method", code)
    body = new.split("def close")[1]
    assert "q = _ratio(" in body and "if (_ratio(" in body
    same(code, new, "close", *INPUTS)


def test_declines_a_subclass_in_the_module() -> None:
    declines("inline_method", CODE + "\n\nclass Fancy(Matcher):\n    pass\n")


def test_declines_a_rebound_method() -> None:
    declines(
        "inline_method",
        CODE.replace(
            "def close(",
            "Matcher.quick = Matcher.exact\nMatcher.set_a = Matcher.set_b\n"
            "Matcher.set_b = Matcher.set_a\n\n\ndef close(",
        ),
    )


def test_declines_lookup_hooks_and_dict_tricks() -> None:
    hook = "    def __getattr__(self, name):\n        return 0\n\n    def set_a"
    declines("inline_method", CODE.replace("    def set_a", hook, 1))
    declines("inline_method", CODE + "\n\ndef peek(m):\n    return m.__dict__\n")
    declines("inline_method", CODE + "\n\ndef peek(m):\n    return vars(m)\n")
    declines("inline_method", CODE + "\n\ndef poke(m):\n    setattr(m, 'quick', len)\n")


def test_declines_a_receiver_that_escapes_or_is_rebound() -> None:
    # handed to a call: that code could give it an instance attribute shadowing a method
    declines(
        "inline_method", CODE.replace("    s.set_b(word)\n", "    s.set_b(word)\n    print(s)\n")
    )
    declines("inline_method", CODE.replace("    s.set_b(word)\n", "    s.set_b(word)\n    t = s\n"))
    # bound twice: its class is no longer known at every call
    declines("inline_method", CODE.replace("    out = []\n", "    out = []\n    s = None\n"))
    # a parameter: any class could come in
    declines(
        "inline_method",
        CODE.replace(
            "def close(word, words, cutoff):", "def close(word, words, cutoff, s):"
        ).replace("    s = Matcher()\n", ""),
    )


def test_declines_calls_it_cannot_split_or_paste() -> None:
    only = {"set_b", "set_a"}
    # not first in its operand: the right side of the comparison would run after the body
    code = CODE.replace("s.quick() >= cutoff", "cutoff <= s.quick()")
    # an else (or an elif) would run when the moved statements ran and the rest failed
    code2 = CODE.replace(
        "            out.append((x, s.exact(), s.calls))",
        "            out.append((x, s.exact(), s.calls))\n        else:\n            out.append(None)",
    )
    # an ``or`` chain: the call may not run at all
    code3 = CODE.replace(
        "len(x) > 0 and s.quick() >= cutoff", "(len(x) > 0 or s.quick() >= cutoff)"
    )
    for c in (code, code2, code3):
        found = by_name("inline_method").scan(PATH, c)
        assert len(found) == 1
        names = {n.strip("`,") for n in found[0].detail.split(" on ")[0].split()[3:]}
        assert names <= only, names
        same(c, rewrite("inline_method", c), "close", *INPUTS)


def test_declines_bodies_it_cannot_paste() -> None:
    # a return of a value after the guard: the guard path and the rest return different things
    code = CODE.replace("        self.calls = self.calls + 1\n", "        return self.calls\n")
    found = by_name("inline_method").scan(PATH, code)
    assert found and "`set_a`" not in found[0].detail
    # a class-private name is mangled by the class it is written in
    code = CODE.replace("self.counts", "self.__counts")
    found = by_name("inline_method").scan(PATH, code)
    assert found and "`quick`" not in found[0].detail and "`set_b`" not in found[0].detail
    # a body that rebinds self
    code = CODE.replace("        self.b = b\n", "        self = None\n")
    found = by_name("inline_method").scan(PATH, code)
    assert found and "`set_b`" not in found[0].detail


def test_a_recursive_name_and_a_method_caller_are_left_alone() -> None:
    # the caller named like the method: a recursive call stays a call
    code = CODE.replace("def close(", "def quick(").replace('"close"', '"quick"')
    found = by_name("inline_method").scan(PATH, code)
    assert found and "`quick`" not in found[0].detail


def test_two_calls_in_one_chain_split_it_twice_in_order() -> None:
    code = CODE.replace(
        "        if len(x) > 0 and s.quick() >= cutoff and s.exact() >= cutoff:",
        "        if s.cheap() >= cutoff and len(x) > 0 and s.quick() >= cutoff:",
    ).replace(
        "    def exact(self):",
        "    def cheap(self):\n        la, lb = len(self.a), len(self.b)\n"
        "        return _ratio(min(la, lb), la + lb)\n\n    def exact(self):",
    )
    new = rewrite("inline_method", code)
    body = new.split("def close")[1]
    assert "s.cheap()" not in body and "s.quick()" not in body
    assert body.index("_la, _lb = len(x), len(word)") < body.index("if (_ratio(min(_la, _lb)")
    assert body.index("if (_ratio(min(_la, _lb)") < body.index("for _elt in x:")
    same(code, new, "close", *INPUTS)


def test_declines_a_closure_a_base_class_and_a_call_before_the_binding() -> None:
    # a lambda holds the receiver: it could carry it out of the function
    declines(
        "inline_method",
        CODE.replace("    s.set_b(word)\n", "    s.set_b(word)\n    peek = lambda: s.a\n"),
    )
    # a base class could bring __getattribute__ or its own __init__
    base = "class Base:\n    def __getattribute__(self, name):\n        return 0\n\n\n"
    declines("inline_method", CODE.replace("class Matcher:", base + "class Matcher(Base):"))
    # bound after the call: the call must fail before any of the method's statements run
    code = CODE.replace(
        "    s = Matcher()\n    s.set_b(word)\n",
        "    if word:\n        s.set_b(word)\n    s = Matcher()\n",
    )
    found = by_name("inline_method").scan(PATH, code)
    assert found and "`set_b`" not in found[0].detail
