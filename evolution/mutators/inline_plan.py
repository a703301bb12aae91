"""How a call's arguments and a callee's locals are substituted into its expression.

Each parameter and each local binding of the callee becomes a replacement: the argument
itself (a name or a constant, read as often as the body reads it), or an expression
evaluated once where the body first reads it (bound with ``:=`` when read again); the
rules that keep that equal to the call are in :mod:`inline_args`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import libcst as cst

from evolution.mutators.cst_tools import Index, Located, name_refs, subtree
from evolution.mutators.inline_args import (
    first_use_unconditional,
    impure_calls,
    pure_expression,
    simple_argument,
)
from evolution.mutators.inline_callee import Callee


def bind(call: cst.Call, fn: Signature, skip_first: bool) -> dict[str, cst.BaseExpression] | None:
    """Parameter → argument expression for this call, or ``None`` if it does not fit."""
    positional = fn.positional[1:] if skip_first else fn.positional
    bound: dict[str, cst.BaseExpression] = {}
    for i, arg in enumerate(call.args):
        if arg.star:
            return None
        if arg.keyword is None:
            if i >= len(positional) or positional[i] in bound:
                return None
            bound[positional[i]] = arg.value
        else:
            key = arg.keyword.value
            if key not in fn.keywords or key in bound or (skip_first and key == fn.positional[0]):
                return None
            bound[key] = arg.value
    wanted = [*positional, *(k for k in sorted(fn.keywords) if k not in fn.positional)]
    for name in wanted:
        if name not in bound:
            if name not in fn.defaults:
                return None
            bound[name] = fn.defaults[name]
    return bound


class Signature(Protocol):
    """What binding arguments needs of a function (a :class:`Callee` or a procedure)."""

    @property
    def positional(self) -> tuple[str, ...]: ...
    @property
    def keywords(self) -> frozenset[str]: ...
    @property
    def defaults(self) -> Mapping[str, cst.BaseExpression]: ...


@dataclass(frozen=True)
class Plan:
    """What replaces each name of the callee's expression."""

    #: parameter or local → the expression that replaces it
    bound: Mapping[str, cst.BaseExpression]
    #: name → (fresh name, id of the use that binds it with ``:=``), for reused expressions
    temps: Mapping[str, tuple[str, int]]
    #: (fresh name, argument) bound in order before the expression, ``(_m := M, …, E)[-1]``:
    #: the arguments a call evaluates first when one of them is read only conditionally
    prebind: tuple[tuple[str, cst.BaseExpression], ...] = ()


def plan(
    idx: Index, loc: Located, fn: Callee, args: Mapping[str, cst.BaseExpression], local: set[str]
) -> Plan | None:
    """The substitution for this call, or ``None`` when it could behave differently."""
    body_impure = any(impure_calls(idx, e) for e in (fn.expr, *fn.lets.values()))
    if fn.lets and (body_impure or not all(simple_argument(v) for v in args.values())):
        return None  # locals move past one another: only pure code over plain arguments
    refs = [r for r, _ in name_refs(fn.expr)]
    bound: dict[str, cst.BaseExpression] = {}
    temps: dict[str, tuple[str, int]] = {}
    late = False
    for param, value in args.items():
        if simple_argument(value):
            if not isinstance(value, cst.Name) and param in _fstring_names(fn.expr):
                return None  # a literal pasted into an f-string could clash with its quotes
            if isinstance(value, cst.Name) and (
                (value.value not in local and body_impure) or not fn.uses.get(param)
            ):
                return None  # a global could be rebound by a call; an unread name could fail
            bound[param] = value
        elif body_impure or not pure_expression(idx, value):
            return None
        elif not _delay(idx, loc, fn, refs, param, value, bound, temps):
            late = True  # read only sometimes (or never): evaluate it first, as the call did
            bound[param] = value
    if late:
        return _prebound(idx, loc, fn, args, bound)
    for name, expr in fn.lets.items():
        value = substitute(expr, bound, {})
        if not pure_expression(idx, value) or not _delay(
            idx, loc, fn, refs, name, value, bound, temps
        ):
            return None
    return Plan(bound, temps)


def _prebound(
    idx: Index,
    loc: Located,
    fn: Callee,
    args: Mapping[str, cst.BaseExpression],
    bound: dict[str, cst.BaseExpression],
) -> Plan | None:
    """Every non-simple argument bound first, in order, then the expression: the call's order.

    ``f(M, L)`` with ``def f(m, l): return 2.0 * m / l if l else 1.0`` reads ``m`` only when
    ``l`` is true; ``2.0 * _m / _l if (_m := M, _l := L)[1] else 1.0`` evaluates ``M`` then
    ``L`` as the call did, then the body.  Refused with local bindings in the body and
    where ``:=`` is not allowed (a comprehension's iterable).
    """
    if fn.lets or _in_comprehension_iterable(loc):
        return None
    taken: list[str] = []
    pre: list[tuple[str, cst.BaseExpression]] = []
    for param, value in args.items():
        if simple_argument(value):
            continue
        temp = idx.fresh(f"_{param}", taken)
        taken.append(temp)
        pre.append((temp, value))
        bound[param] = cst.Name(temp)
    return Plan(bound, {}, tuple(pre))


def _fstring_names(expr: cst.CSTNode) -> set[str]:
    return {
        n.value
        for f in subtree(expr)
        if isinstance(f, cst.FormattedString)
        for n in subtree(f)
        if isinstance(n, cst.Name)
    }


def _delay(
    idx: Index,
    loc: Located,
    fn: Callee,
    refs: list[cst.Name],
    name: str,
    value: cst.BaseExpression,
    bound: dict[str, cst.BaseExpression],
    temps: dict[str, tuple[str, int]],
) -> bool:
    """Evaluate ``value`` at the first read of ``name``, if that read always happens."""
    uses = [r for r in refs if r.value == name]
    first = first_use_unconditional(fn.expr, uses)
    if first is None:
        return False  # evaluated only sometimes, or never: a raise could vanish
    bound[name] = value
    if len(uses) > 1:
        if _in_comprehension_iterable(loc):
            return False  # ``:=`` is refused there
        temps[name] = (idx.fresh(f"_{name}", (t for t, _ in temps.values())), id(first))
    return True


def _in_comprehension_iterable(loc: Located) -> bool:
    chain = loc.chain
    return any(
        isinstance(p, cst.CompFor) and c is p.iter for p, c in zip(chain, chain[1:], strict=False)
    )


class Substitute(cst.CSTTransformer):
    """Names (by node identity) replaced by expressions, parenthesised unless a plain name."""

    def __init__(self, by_id: Mapping[int, cst.BaseExpression]) -> None:
        super().__init__()
        self.by_id = by_id

    def leave_Name(  # noqa: N802 - libcst's visitor naming
        self, original_node: cst.Name, updated_node: cst.Name
    ) -> cst.BaseExpression:
        new = self.by_id.get(id(original_node))
        if new is None:
            return updated_node
        if isinstance(new, cst.Name):
            return new.with_changes(lpar=original_node.lpar, rpar=original_node.rpar)
        return new.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def substitute(
    expr: cst.BaseExpression,
    bound: Mapping[str, cst.BaseExpression],
    temps: Mapping[str, tuple[str, int]],
) -> cst.BaseExpression:
    """``expr`` with each name in ``bound`` replaced (the first use of a temp binds it)."""
    by_id: dict[int, cst.BaseExpression] = {}
    for ref, _ in name_refs(expr):
        value = bound.get(ref.value)
        if value is None:
            continue
        if ref.value in temps:
            temp, first = temps[ref.value]
            by_id[id(ref)] = (
                cst.NamedExpr(target=cst.Name(temp), value=value)
                if id(ref) == first
                else cst.Name(temp)
            )
        else:
            by_id[id(ref)] = cst.Name(value.value) if isinstance(value, cst.Name) else value
    out = expr.visit(Substitute(by_id))
    assert isinstance(out, cst.BaseExpression)
    return out


def inlined(fn: Callee, how: Plan, call: cst.Call) -> cst.BaseExpression:
    """``fn``'s expression with its names replaced, in parentheses where ``call`` was."""
    expr = substitute(fn.expr, how.bound, how.temps)
    if how.prebind:
        # ``A if C else B``: the bindings go where evaluation starts, the test; a tuple
        # indexed by a non-negative constant (3.11 specialises that subscript, not ``[-1]``)
        elements = [cst.Element(cst.NamedExpr(target=cst.Name(t), value=v)) for t, v in how.prebind]
        first = expr.test if isinstance(expr, cst.IfExp) else expr
        if not (isinstance(first, cst.Name) and first.value == how.prebind[-1][0]):
            elements.append(cst.Element(first))  # the test is not just the last binding
        index = cst.Index(cst.Integer(str(len(elements) - 1)))
        bound = cst.Subscript(value=cst.Tuple(elements), slice=[cst.SubscriptElement(index)])
        expr = expr.with_changes(test=bound) if isinstance(expr, cst.IfExp) else bound
    return expr.with_changes(
        lpar=[*call.lpar, cst.LeftParen(), *expr.lpar],
        rpar=[*expr.rpar, cst.RightParen(), *call.rpar],
    )
