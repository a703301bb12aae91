"""add_slots: ``__slots__`` on a plain class whose instances always carry the same attributes.

Code it must change (and the rewritten class behaves the same, minus the ``__dict__``),
and every kind of class or module it must leave alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_mutators import PATH, call, declines, rewrite, src

from evolution.mutators import by_name

POINT = src('''
"""Points."""


class Point:
    """A point on the plane."""

    # made many times by the benchmark
    def __init__(self, x, y):
        self.x = x
        self.y = y
        if x < 0:
            self.quadrant = "left"
        else:
            self.quadrant = "right"

    def moved(self, dx):
        self.x += dx
        return self

    def norm(self):
        return (self.x ** 2 + self.y ** 2) ** 0.5


class Pair:
    def __init__(self, a, b):
        self.a, (self.b, *self.rest) = a, b


def work(n):
    pts = [Point(i - 2, i).moved(1) for i in range(n)]
    pair = Pair(1, [2, 3, 4])
    missing = []
    for p in pts:
        try:
            p.other
        except AttributeError as exc:
            missing.append(type(exc).__name__)
    return [(p.x, p.y, p.quadrant, p.norm()) for p in pts], (pair.a, pair.b, pair.rest), missing


def has_dict():
    return hasattr(Point(1, 2), "__dict__"), hasattr(Pair(1, [2]), "__dict__")
''')
#: code elsewhere that gives an instance a new attribute: in the module, it blocks the rewrite
ADD_NEW = src("""


def add_new():
    p = Point(1, 2)
    p.z = 3
    return p.z
""")


def test_a_plain_class_gets_slots_and_behaves_the_same() -> None:
    sites = by_name("add_slots").scan(PATH, POINT)
    assert [(s.function, s.line) for s in sites] == [("Point.__init__", 4), ("Pair.__init__", 24)]
    assert "3 attributes all set in __init__" in sites[0].detail
    new = rewrite("add_slots", POINT)
    assert "    \"\"\"A point on the plane.\"\"\"\n    __slots__ = ('x', 'y', 'quadrant')\n" in new
    assert call(new, "work", 6) == call(POINT, "work", 6)
    assert call(POINT, "has_dict") == (True, True)
    assert call(new, "has_dict") == (False, True)
    # a new attribute from outside now fails, which is why the module may not do it
    declines("add_slots", POINT + ADD_NEW)
    assert call(POINT + ADD_NEW, "add_new") == 3
    with pytest.raises(AttributeError):
        call(new + ADD_NEW, "add_new")
    both = rewrite("add_slots", POINT, 1)
    assert "class Pair:\n    __slots__ = ('a', 'b', 'rest')\n    def __init__" in both
    assert call(both, "work", 3) == call(POINT, "work", 3)


def _class(body: str = "", *, header: str = "", decorator: str = "", bases: str = "") -> str:
    return (
        header
        + "\n\n"
        + src(f"""
{decorator}
class Thing{bases}:
    def __init__(self, a):
        self.a = a
{body}
""")
    )


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"decorator": "@dataclass", "header": "from dataclasses import dataclass"}, "dataclass"),
        ({"decorator": "@total_ordering", "header": "from functools import total_ordering"}, "decorated"),
        ({"bases": "(Base)", "header": "class Base:\n    pass\n"}, "a base with a __dict__"),
        ({"bases": "(metaclass=Meta)", "header": "Meta = type\n"}, "a metaclass"),
        ({"body": "    def later(self):\n        self.cache = {}\n"}, "an attribute set outside __init__"),
        ({"body": "    a = 0\n"}, "a class attribute of the same name"),
        ({"body": "    @property\n    def a(self):\n        return 1\n"}, "a property of the same name"),
        ({"body": "    __slots__ = ('a',)\n"}, "slots already"),
        ({"body": "    def __setattr__(self, k, v):\n        object.__setattr__(self, k, v)\n"}, "own __setattr__"),
        ({"body": "    def __getstate__(self):\n        return {}\n"}, "own pickling"),
        ({"body": "\n\nclass Child(Thing):\n    pass\n"}, "a subclass"),
        ({"body": "\n\ndef show(t):\n    return vars(t)\n"}, "vars()"),
        ({"body": "\n\ndef grow(t):\n    setattr(t, 'b', 1)\n"}, "setattr()"),
        ({"body": "\n\ndef peek(t):\n    return t.__dict__\n"}, "__dict__"),
        ({"header": "import pickle"}, "pickle"),
        ({"header": "import copy"}, "copy"),
        ({"header": "import weakref"}, "weakref"),
        ({"body": "\n\ndef grow(t):\n    t.extra = 1\n"}, "an attribute added from outside"),
        ({"body": "        def inner(self):\n            self.a = 2\n        inner(self)\n"}, "self rebound"),
        ({"body": "        self.__class__ = Thing\n"}, "a dunder attribute"),
    ],
)  # fmt: skip
def test_leaves_alone(kwargs: dict[str, Any], why: str) -> None:
    code = _class(**kwargs)
    compile(code, PATH, "exec")
    declines("add_slots", code)
    # the same class without the obstacle is rewritten: each case tests its obstacle
    assert by_name("add_slots").scan(PATH, _class("")), why


def test_leaves_alone_the_other_shapes() -> None:
    many = "\n".join(f"        self.a{i} = {i}" for i in range(13))
    declines("add_slots", src(f"class Wide:\n    def __init__(self):\n{many}\n"))
    declines("add_slots", src("class NoInit:\n    x = 1\n"))
    declines("add_slots", src("class Empty:\n    def __init__(self):\n        pass\n"))
    declines(
        "add_slots",
        src(
            "def f():\n    class Inner:\n        def __init__(self):\n            self.a = 1\n    return Inner\n"
        ),
    )
    declines(
        "add_slots", src("class Err(Exception):\n    def __init__(self, m):\n        self.m = m\n")
    )
    static = src("""
class Ok(object):
    def __init__(self, v):
        self.v = v

    @staticmethod
    def make(other):
        return Ok(other)

    @classmethod
    def zero(cls):
        return cls(0)
""")
    assert [s.function for s in by_name("add_slots").scan(PATH, static)] == ["Ok.__init__"]
