"""The shared find() walk: a new mutator says which nodes it looks at and what it makes of one.

A toy rewrite (``x == None`` to ``x is None``, once per left operand) written the way a
new mutator would be shows what :class:`CstMutator` does for it: the walk in source
order over ``kinds`` only, the ``applies`` short cut, ``Scan.first`` for one finding per
key, the site's function and line, and ``apply`` finding the site again.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import Edit, Index, Located, index


class NoneCompare(CstMutator):
    name = "toy_none_compare"
    risk = 0.1
    kinds = (cst.Comparison,)

    def __init__(self) -> None:
        self.shown: list[type[cst.CSTNode]] = []

    def applies(self, idx: Index) -> bool:
        return "None" in idx.all_names

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        comp = loc.node
        self.shown.append(type(comp))
        assert isinstance(comp, cst.Comparison)
        target = comp.comparisons[0]
        op = target.operator
        if not (
            isinstance(op, cst.Equal)
            and isinstance(target.comparator, cst.Name)
            and target.comparator.value == "None"
            and scan.first(scan.idx.code(comp.left))
        ):
            return

        def edit() -> Edit:
            new = cst.Is(
                whitespace_before=op.whitespace_before, whitespace_after=op.whitespace_after
            )
            return Edit().replace(op, new)

        yield scan.finding(loc, f"`{scan.idx.code(comp)}` compares with ==", 1.01, edit)


SOURCE = textwrap.dedent(
    """
    class C:
        def f(self, a, b):
            if a == None:
                return 1
            if a == None or b == None:
                return 2
            return a < b
    """
).lstrip()


def test_find_walks_only_kinds_in_source_order_once_per_key() -> None:
    toy = NoneCompare()
    idx = index(SOURCE)
    assert idx is not None
    found = toy.find(idx, "m.py")
    assert [(f.site.function, f.site.line, f.site.detail) for f in found] == [
        ("C.f", 3, "`a == None` compares with =="),
        ("C.f", 5, "`b == None` compares with =="),
    ]
    assert toy.shown == [cst.Comparison] * 4  # every comparison, nothing else
    assert all(f.site.kind == "toy_none_compare" for f in found)


def test_apply_refinds_the_site_and_rewrites_only_it() -> None:
    toy = NoneCompare()
    sites = toy.scan("m.py", SOURCE)
    new = toy.apply(SOURCE, sites[1])
    assert new == SOURCE.replace("b == None", "b is None")


def test_applies_false_skips_the_walk() -> None:
    toy = NoneCompare()
    assert toy.scan("m.py", "def f(a, b):\n    return a == b\n") == []
    assert toy.shown == []
