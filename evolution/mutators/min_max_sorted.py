"""Sorting everything to keep one end (or the first n) does O(n log n) work for an O(n) answer.

``sorted(x)[0]`` is ``min(x)`` and ``sorted(x, reverse=True)[0]`` is ``max(x)`` even with
ties (the sort is stable and ``min``/``max`` return the first extreme).  ``sorted(x)[-1]``
picks the *last* of equal maxima, so it becomes ``max(x)`` only without ``key=``, where
ties are equal values.  ``sorted(x, key=k, reverse=True)[:n]`` is documented in
:mod:`heapq` as equivalent to ``heapq.nlargest(n, x, key=k)`` (likewise ``nsmallest``).
An empty input raises ValueError instead of IndexError, so code under ``try`` is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    add_import,
    can_import,
    has_ancestor,
    shadowed,
    short,
)


def _index_value(sub: cst.Subscript) -> int | str | None:
    """0, -1, or the code-free marker 'head' for ``[:n]``; ``None`` for anything else."""
    if len(sub.slice) != 1:
        return None
    part = sub.slice[0].slice
    if isinstance(part, cst.Index) and part.star is None:
        v = part.value
        if isinstance(v, cst.Integer) and v.value == "0":
            return 0
        if (
            isinstance(v, cst.UnaryOperation)
            and isinstance(v.operator, cst.Minus)
            and isinstance(v.expression, cst.Integer)
            and v.expression.value == "1"
        ):
            return -1
        return None
    head = isinstance(part, cst.Slice) and part.lower is None and part.step is None
    if head and isinstance(part, cst.Slice) and isinstance(part.upper, (cst.Integer, cst.Name)):
        return "head"
    return None


class MinMaxSorted(CstMutator):
    name = "min_max_sorted"
    risk = 0.1
    kinds = (cst.Subscript,)

    def applies(self, idx: Index) -> bool:
        return not shadowed(idx, "sorted")

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, sub = scan.idx, loc.node
        assert isinstance(sub, cst.Subscript)
        call = sub.value
        if not (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Name)
            and call.func.value == "sorted"
        ):
            return
        if sub.lpar or has_ancestor(loc, (cst.Try, cst.TryStar)):
            return
        positional = [a for a in call.args if a.keyword is None]
        keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        if len(positional) != 1 or positional[0].star or set(keywords) - {"key", "reverse"}:
            return
        reverse_node = keywords.get("reverse")
        if reverse_node is not None and not (
            isinstance(reverse_node, cst.Name) and reverse_node.value in ("True", "False")
        ):
            return
        reverse = isinstance(reverse_node, cst.Name) and reverse_node.value == "True"
        which = _index_value(sub)
        key = keywords.get("key")
        key_code = f", key={idx.code(key)}" if key is not None else ""
        source = idx.code(positional[0].value)
        if which == 0:
            func, weight = ("max" if reverse else "min"), 1.5
            new_code = f"{func}({source}{key_code})"
        elif which == -1 and key is None:
            func, weight = ("min" if reverse else "max"), 1.5
            new_code = f"{func}({source})"
        elif which == "head":
            if not can_import(idx, "heapq"):
                return
            func, weight = ("nlargest" if reverse else "nsmallest"), 1.3
            part = sub.slice[0].slice
            assert isinstance(part, cst.Slice) and part.upper is not None
            new_code = f"heapq.{func}({idx.code(part.upper)}, {source}{key_code})"
        else:
            return

        def edit() -> Edit | None:
            e = Edit()
            if which == "head" and not add_import(idx, e, "heapq"):
                return None
            return e.replace(sub, cst.parse_expression(new_code))

        detail = f"`{short(idx.code(sub))}` sorts everything to use one end; `{func}` is linear"
        yield scan.finding(loc, detail, weight, edit)
