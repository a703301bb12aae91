"""forward_attr: a read of an attribute just stored on a sealed receiver becomes the value stored."""

from __future__ import annotations

from test_mutators import PATH, declines, same, src

from evolution.mutators import by_name

#: difflib's get_close_matches after inline_method: a setter call, a guarded store, reads
CODE = src("""
class Matcher:
    def __init__(self):
        self.a = self.b = None
        self.cache = None

    def set_b(self, b):
        if b is self.b:
            return
        self.b = b
        self.cache = None
        self._count()

    def _count(self):
        self.cache = {c: self.b.count(c) for c in self.b}

    def score(self):
        return len(self.a) + len(self.b) + len(self.cache)


def close(word, words):
    out = []
    s = Matcher()
    s.set_b(word)
    for x in words:
        if x is not s.a:
            s.a = x
            s.cache = s.cache
        n = len(s.a) + len(s.b)
        if n > 3 and s.score() > 4:
            out.append((x, len(s.a), s.score()))
    return out
""")

WORDS = ["apple", "ape", "peach", "", "apple", "x"]
INPUTS = [("apple", WORDS), ("", WORDS), ("zz", [])]


def _rewrite(code: str) -> str:
    sites = by_name("forward_attr").scan(PATH, code)
    assert len(sites) == 1 and sites[0].function == "close"
    new = by_name("forward_attr").apply(code, sites[0])
    compile(new, PATH, "exec")
    return new


def test_the_setter_and_the_guarded_store_forward_their_values() -> None:
    new = _rewrite(CODE)
    assert "        n = len(x) + len(word)\n" in new
    assert "out.append((x, len(x), s.score()))" in new
    # stores and the guard's own read stay
    assert "        if x is not s.a:\n            s.a = x\n" in new
    same(CODE, new, "close", *INPUTS)


def test_a_store_in_the_loop_ends_the_forwarding_of_what_came_before() -> None:
    # s.b stored in the loop after the reads: the setter's fact no longer holds around it
    code = CODE.replace(
        "            out.append((x, len(s.a), s.score()))",
        "            out.append((x, len(s.a), s.score()))\n        s.b = x",
    )
    new = _rewrite(code)
    assert "len(s.b)" in new and "len(x)" in new
    same(code, new, "close", *INPUTS)


def test_a_method_that_may_store_the_attribute_ends_it() -> None:
    code = CODE.replace(
        "        return len(self.a) + len(self.b) + len(self.cache)",
        '        self.a = self.a + "!"\n        return len(self.b) + len(self.cache)',
    )
    new = _rewrite(code)  # s.b still forwards; s.a does not cross s.score()
    assert "len(word)" in new and "len(s.a)" in new
    same(code, new, "close", *INPUTS)


def test_declines_a_receiver_that_escapes() -> None:
    # handed to a call, the callee could store any attribute on it
    declines(
        "forward_attr", CODE.replace("    s.set_b(word)\n", "    s.set_b(word)\n    print(s)\n")
    )
    # a bound method carries the receiver
    declines(
        "forward_attr", CODE.replace("    s.set_b(word)\n", "    s.set_b(word)\n    f = s.score\n")
    )
    # a method that hands self on: the caller could reach s through it
    declines(
        "forward_attr",
        CODE.replace(
            "        self.cache = None\n        self._count()", "        REGISTRY.append(self)"
        ),
    )


def test_declines_subclasses_hooks_and_descriptors() -> None:
    declines("forward_attr", CODE + "\n\nclass Fancy(Matcher):\n    pass\n")
    hook = (
        "    def __setattr__(self, k, v):\n        object.__setattr__(self, k, v)\n\n    def set_b"
    )
    declines("forward_attr", CODE.replace("    def set_b", hook, 1))
    prop = "    @property\n    def b(self):\n        return 1\n\n    def set_b"
    declines("forward_attr", CODE.replace("    def set_b", prop, 1))
    declines("forward_attr", CODE + "\n\ndef poke(m):\n    setattr(m, 'b', 1)\n")


def test_a_rebound_value_or_an_unguarded_store_is_not_forwarded() -> None:
    # the value's name rebound after the store
    code = CODE.replace(
        "        n = len(s.a) + len(s.b)", "        x = x + '!'\n        n = len(s.a) + len(s.b)"
    )
    new = _rewrite(code)
    assert "len(s.a)" in new
    same(code, new, "close", *INPUTS)
    # the guard tests something else: on the other path s.a is not x
    code = CODE.replace("        if x is not s.a:", "        if x:")
    new = _rewrite(code)
    assert "len(s.a)" in new
    same(code, new, "close", *INPUTS)


def test_a_global_value_is_not_forwarded() -> None:
    # any call in between could rebind a global; only the function's own names are fixed
    code = CODE.replace("            s.a = x\n", "            s.a = DEFAULT\n").replace(
        "        if x is not s.a:", "        if DEFAULT is not s.a:"
    )
    found = by_name("forward_attr").scan(PATH, code)
    assert found and "`s.a`" not in found[0].detail and "`s.b` → `word`" in found[0].detail
