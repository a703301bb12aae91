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
``*args``, one or three arguments, any other argument that is an expression (it would be
evaluated twice).

One kind of expression is taken: ``len(x)`` (or ``(n := len(x))``, the form ``inline_call``
leaves when it inlines difflib's ``real_quick_ratio``), paired with another or with an
integer literal.  ``len`` always returns an exact ``int``, so ``b < a`` and ``a > b`` are
the same comparison, and ``min(len(x), len(y))`` becomes ``(_min_b if (_min_a := len(x)) >
(_min_b := len(y)) else _min_a)``: each argument evaluated once, in the same order, the
same object returned.  Not inside a comprehension or a lambda (an assignment expression
there binds elsewhere, or is a syntax error).
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    COMPS,
    Edit,
    Index,
    Located,
    enclosing_loops,
    innermost_scope,
    is_constant,
    shadowed,
    short,
    subtree,
)

_OPS: dict[str, type[cst.BaseCompOp]] = {"min": cst.LessThan, "max": cst.GreaterThan}


def _plain(expr: cst.BaseExpression) -> bool:
    """A name or a literal without parentheses: reading it twice reads the same value."""
    if getattr(expr, "lpar", ()):
        return False
    return isinstance(expr, cst.Name) or is_constant(expr)


def _len_call(idx: Index, expr: cst.BaseExpression) -> bool:
    """``len(x)`` of the builtin: its result is always an exact ``int``."""
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Name)
        and expr.func.value == "len"
        and not shadowed(idx, "len")
        and len(expr.args) == 1
        and expr.args[0].keyword is None
        and not expr.args[0].star
        # no call inside (a pair there would be rewritten twice, nested)
        and not any(isinstance(n, cst.Call) for n in subtree(expr.args[0].value))
    )


def _counted(idx: Index, expr: cst.BaseExpression) -> bool:
    """``len(x)`` or ``(n := len(x))``: an exact ``int``, evaluated once where it stands."""
    if isinstance(expr, cst.NamedExpr):
        return isinstance(expr.target, cst.Name) and _len_call(idx, expr.value)
    return not getattr(expr, "lpar", ()) and _len_call(idx, expr)


def _int_literal(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Integer) and not expr.lpar


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
    if _counts(idx, a, b):
        return call.func.value, a, b
    if not (_plain(a) and _plain(b)) or (is_constant(a) and is_constant(b)):
        return None
    return call.func.value, a, b


def _counts(idx: Index, a: cst.BaseExpression, b: cst.BaseExpression) -> bool:
    """Two ``len`` results, or one and an integer literal: compared as exact ints."""
    sides = [_counted(idx, a), _counted(idx, b)]
    return any(sides) and all(s or _int_literal(e) for s, e in zip(sides, (a, b), strict=True))


def _bound(
    idx: Index, expr: cst.BaseExpression, base: str, taken: list[str]
) -> tuple[cst.BaseExpression, cst.BaseExpression]:
    """(the expression as first evaluated, a reference to its value afterwards)."""
    if isinstance(expr, cst.NamedExpr):
        assert isinstance(expr.target, cst.Name)
        first = (
            expr
            if expr.lpar
            else expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        )
        return first, cst.Name(expr.target.value)
    if _int_literal(expr):
        return expr, expr
    temp = idx.fresh(base, taken)
    taken.append(temp)
    named = cst.NamedExpr(
        target=cst.Name(temp), value=expr, lpar=[cst.LeftParen()], rpar=[cst.RightParen()]
    )
    return named, cst.Name(temp)


def _counted_conditional(
    idx: Index, which: str, a: cst.BaseExpression, b: cst.BaseExpression, taken: list[str]
) -> cst.IfExp:
    """``min``: ``b`` when ``a > b`` (ints: the same as ``b < a``), evaluating ``a`` first."""
    a_first, a_ref = _bound(idx, a, "_min_a", taken)
    b_first, b_ref = _bound(idx, b, "_min_b", taken)
    op: cst.BaseCompOp = cst.GreaterThan() if which == "min" else cst.LessThan()
    return cst.IfExp(
        test=cst.Comparison(a_first, [cst.ComparisonTarget(op, b_first)]),
        body=b_ref,
        orelse=a_ref,
        lpar=[cst.LeftParen()],
        rpar=[cst.RightParen()],
    )


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
            and not (_counts(idx, found[1], found[2]) and _in_comprehension(other, func))
        ]
        if not sites:
            return
        first = sites[0][0]

        def edit() -> Edit:
            e = Edit()
            taken: list[str] = []
            for other, (which, a, b) in sites:
                call = other.node
                assert isinstance(call, cst.Call)
                cond = (
                    _counted_conditional(idx, which, a, b, taken)
                    if _counts(idx, a, b)
                    else _conditional(which, a, b)
                )
                e.replace(
                    call,
                    cond.with_changes(lpar=[*call.lpar, *cond.lpar], rpar=[*cond.rpar, *call.rpar]),
                )
            return e

        loops = max(len(enclosing_loops(other)) for other, _ in sites)
        weight = (1.2 if loops else 1.1) + 0.01 * min(len(sites) - 1, 10)
        detail = (
            f"{len(sites)} two-argument min/max call(s), each a builtin call"
            f" (first: `{short(idx.code(first.node))}`)"
        )
        yield scan.finding(first, detail, weight, edit)


def _in_comprehension(loc: Located, func: cst.CSTNode) -> bool:
    """Whether a comprehension or lambda lies between ``func`` and ``loc``."""
    below = False
    for node in loc.parents:
        if node is func:
            below = True
        elif below and isinstance(node, (*COMPS, cst.Lambda)):
            return True
    return False
