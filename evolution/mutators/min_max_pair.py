"""``min(a, b)`` is a builtin call with keyword parsing and an iterator; ``b if b < a else a`` is not.

CPython's ``min``/``max`` take any iterable, ``key=`` and ``default=``: with two plain
arguments they still parse keywords, build an iterator over the argument tuple and walk
it.  Measured under the instruction counter on CPython 3.11: ``min(la, lb)`` in difflib's
``real_quick_ratio`` (13,800 calls in the seqdiff bench) costs about 1,100 instructions
more per call than the conditional expression.

The rewrite is exact for every type, because it is what the builtin does: ``min`` keeps
the first argument and replaces it by a later one only when ``later < kept`` is true
(``PyObject_RichCompareBool(item, kept, Py_LT)``, the truth of the same comparison, with
the same operands in the same order), ``max`` the same with ``>``.  So ``min(a, b)`` is
``(b if b < a else a)`` and ``max(a, b)`` is ``(b if b > a else a)``: same comparison
call, same result object, same exception when the comparison raises.

Only two positional arguments that are names or constants are rewritten: reading either
twice gives the same value.  The residual difference: when *both* names are unbound, the
error names ``b`` instead of ``a``.  Declined: a shadowed ``min``/``max``, keywords,
``*args``, one or three arguments, any argument that is an expression (it would be
evaluated twice).
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    enclosing_loops,
    innermost_scope,
    is_constant,
    shadowed,
    short,
)

_OPS: dict[str, type[cst.BaseCompOp]] = {"min": cst.LessThan, "max": cst.GreaterThan}


def _plain(expr: cst.BaseExpression) -> bool:
    """A name or a literal without parentheses: reading it twice reads the same value."""
    if getattr(expr, "lpar", ()):
        return False
    return isinstance(expr, cst.Name) or is_constant(expr)


def _pair(
    idx: Index, call: cst.CSTNode
) -> tuple[str, cst.BaseExpression, cst.BaseExpression] | None:
    """``(min|max, a, b)`` for a two-argument call of the builtin, else ``None``."""
    if not (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Name)
        and call.func.value in _OPS
        and not shadowed(idx, call.func.value)
        and len(call.args) == 2
        and all(a.keyword is None and not a.star for a in call.args)
    ):
        return None
    a, b = call.args[0].value, call.args[1].value
    if not (_plain(a) and _plain(b)) or (is_constant(a) and is_constant(b)):
        return None
    return call.func.value, a, b


def _conditional(which: str, a: cst.BaseExpression, b: cst.BaseExpression) -> cst.IfExp:
    test = cst.Comparison(b, [cst.ComparisonTarget(_OPS[which](), a)])
    return cst.IfExp(
        test=test,
        body=b,
        orelse=a,
        lpar=[cst.LeftParen()],
        rpar=[cst.RightParen()],
    )


class MinMaxPair(CstMutator):
    name = "min_max_pair"
    risk = 0.05
    kinds = (cst.Call,)

    def applies(self, idx: Index) -> bool:
        return not (shadowed(idx, "min") and shadowed(idx, "max"))

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx = scan.idx
        func = innermost_scope(loc.parents)
        if _pair(idx, loc.node) is None or not isinstance(func, cst.FunctionDef):
            return
        if not scan.first(("min_max_pair", id(func))):
            return
        # one candidate per function: every pair in it (each saves one builtin call)
        sites = [
            (other, found)
            for other in idx.nodes
            if innermost_scope(other.parents) is func
            and (found := _pair(idx, other.node)) is not None
        ]

        def edit() -> Edit:
            e = Edit()
            for other, (which, a, b) in sites:
                call = other.node
                assert isinstance(call, cst.Call)
                cond = _conditional(which, a, b)
                e.replace(
                    call,
                    cond.with_changes(lpar=[*call.lpar, *cond.lpar], rpar=[*cond.rpar, *call.rpar]),
                )
            return e

        loops = max(len(enclosing_loops(other)) for other, _ in sites)
        weight = (1.2 if loops else 1.1) + 0.01 * min(len(sites) - 1, 10)
        detail = (
            f"{len(sites)} two-argument min/max call(s), each a builtin call"
            f" (first: `{short(idx.code(loc.node))}`)"
        )
        yield scan.finding(loc, detail, weight, edit)
