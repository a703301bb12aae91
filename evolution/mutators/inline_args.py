"""Arguments that are more than a name: evaluated once, first, as the call would have.

A call evaluates every argument once, before the body runs.  When an argument is an
expression (``len(a) + len(b)``) its inlined form must still evaluate it exactly once and
before anything that could observe the difference, so:

- the argument must be *pure*: names, constants, attribute reads, subscripts, operators
  and calls of pure builtins and read-only methods (moving it then changes no state);
- the callee's expression must call nothing impure (nothing between the old and the new
  moment of evaluation could change what the argument reads);
- its first use in evaluation order must be unconditional (not in a branch of ``if``/
  ``else``, the right of ``and``/``or``, or a later link of a chained comparison), so
  it is evaluated exactly when the call would have raised or not;
- used more than once, it is bound there with ``:=`` to a fresh name and the later uses
  read that name (never inside a comprehension's iterable, where ``:=`` is refused).
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.cst_tools import (
    Index,
    children,
    imports_module,
    is_constant,
    pure_call,
    subtree,
)
from evolution.mutators.pure_calls import PURE_MODULES
from evolution.mutators.purity import PurityJudge

_PURE_NODES = (
    cst.Name,
    cst.Attribute,
    cst.Subscript,
    cst.SubscriptElement,
    cst.Index,
    cst.Slice,
    cst.BinaryOperation,
    cst.UnaryOperation,
    cst.Comparison,
    cst.ComparisonTarget,
    cst.BooleanOperation,
    cst.IfExp,
    cst.Call,
    cst.Arg,
    cst.Tuple,
    cst.Element,
    cst.LeftParen,
    cst.RightParen,
    cst.Dot,
    cst.Colon,
    cst.Comma,
    cst.BaseBinaryOp,
    cst.BaseUnaryOp,
    cst.BaseCompOp,
    cst.BaseBooleanOp,
    cst.BaseParenthesizableWhitespace,
    cst.SimpleString,
    cst.ConcatenatedString,
    cst.Integer,
    cst.Float,
)


def _judge(idx: Index) -> PurityJudge:
    key = ("inline_purity_judge",)
    judge = idx.memo.get(key)
    if not isinstance(judge, PurityJudge):
        judge = idx.memo[key] = PurityJudge(idx)
    return judge


def pure_callee(idx: Index, call: cst.Call) -> bool:
    """A pure builtin, a read-only method, a function of a pure standard module (``math``,
    ``re``, …), or a module function the purity judge clears."""
    if pure_call(idx, call):
        return True
    func = call.func
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
        module = func.value.value  # math.log, re.compile: modules without I/O or state
        return module in PURE_MODULES and imports_module(idx, module)
    if not isinstance(func, cst.Name):
        return False
    judge = _judge(idx)
    return func.value in judge.facts.defs and judge.pure(func.value)


def pure_expression(idx: Index, expr: cst.BaseExpression) -> bool:
    """Evaluating ``expr`` changes no state a later evaluation could see."""
    for n in subtree(expr):
        if not isinstance(n, _PURE_NODES):
            return False
        if isinstance(n, cst.Call) and (not pure_callee(idx, n) or any(a.star for a in n.args)):
            return False
    return True


def impure_calls(idx: Index, expr: cst.CSTNode) -> bool:
    return any(isinstance(n, cst.Call) and not pure_callee(idx, n) for n in subtree(expr))


def evaluation_order(
    node: cst.CSTNode, conditional: bool = False
) -> Iterator[tuple[cst.CSTNode, bool]]:
    """Every node under ``node`` in the order Python evaluates it, with whether it may be skipped.

    Children are evaluated in source order for the node kinds an inlinable expression
    holds, except that the test of ``A if T else B`` comes first, and the branches, the
    right of ``and``/``or`` and a chained comparison's later links may not run.
    """
    yield node, conditional
    if isinstance(node, cst.IfExp):
        yield from evaluation_order(node.test, conditional)
        yield from evaluation_order(node.body, True)
        yield from evaluation_order(node.orelse, True)
        return
    if isinstance(node, cst.BooleanOperation):
        yield from evaluation_order(node.left, conditional)
        yield from evaluation_order(node.right, True)
        return
    if isinstance(node, cst.Comparison):
        yield from evaluation_order(node.left, conditional)
        for i, target in enumerate(node.comparisons):
            yield from evaluation_order(target, conditional or i > 0)
        return
    for child in children(node):
        yield from evaluation_order(child, conditional)


def first_use_unconditional(expr: cst.BaseExpression, uses: list[cst.Name]) -> cst.Name | None:
    """The use of a parameter evaluated first, if it is always evaluated; else ``None``."""
    wanted = {id(u) for u in uses}
    for node, conditional in evaluation_order(expr):
        if id(node) in wanted:
            return None if conditional else node  # type: ignore[return-value]
    return None


def simple_argument(value: cst.BaseExpression) -> bool:
    """A name or a constant: reading it again, or later, gives the same value."""
    return isinstance(value, cst.Name) or is_constant(value)
