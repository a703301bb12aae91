"""Which functions can stand in for their calls: a body that is one expression, and its parameters.

A call costs a frame; a function whose body is ``return EXPR`` (or ``if C: return A`` then
``return B``, which is ``A if C else B``), optionally after a few local bindings
(``n = len(x)``, ``a, b = x, y``) that read only parameters, can be replaced at a call
site by that expression with its parameters and locals substituted.  This module reads a ``def`` and says
whether it is such a function and what the expression is; :mod:`inline_call` decides
where a call may be replaced.

An expression is refused when substituting into it could change what its names mean:
comprehensions and lambdas bind names of their own (an argument name could be captured),
``:=`` rebinds, ``yield``/``await`` suspend, and ``super()``/``locals()``/``vars()``/
``eval``/``exec`` depend on the frame they run in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.cst_tools import COMPS, contains, is_constant, name_refs

#: names whose meaning depends on the frame that evaluates them
FRAME_NAMES = frozenset({"super", "locals", "vars", "eval", "exec", "__class__", "globals"})


@dataclass(frozen=True)
class Callee:
    """A function reduced to one expression over its parameters."""

    name: str
    #: parameters a positional argument can fill, in order (``self`` first for a method)
    positional: tuple[str, ...]
    #: parameters a keyword argument can fill
    keywords: frozenset[str]
    defaults: Mapping[str, cst.BaseExpression]
    expr: cst.BaseExpression
    #: how many times the expression reads each parameter
    uses: Mapping[str, int]
    #: the other names it reads (globals and builtins of the module)
    free: frozenset[str]
    #: local bindings before the return, in order: each is substituted like an argument
    lets: Mapping[str, cst.BaseExpression]


def _body(func: cst.FunctionDef) -> list[cst.BaseStatement]:
    body = func.body
    if isinstance(body, cst.SimpleStatementSuite):
        return [cst.SimpleStatementLine(body=body.body)]
    assert isinstance(body, cst.IndentedBlock)
    stmts: list[cst.BaseStatement] = list(body.body)
    if stmts and docstring(stmts[0]):
        stmts = stmts[1:]
    return stmts


def docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))
    )


def _returned(stmts: Sequence[cst.BaseStatement]) -> cst.BaseExpression | None:
    """The value of a block that is exactly one ``return VALUE``."""
    if len(stmts) != 1:
        return None
    stmt = stmts[0]
    if (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Return)
    ):
        return stmt.body[0].value
    return None


def _block(node: cst.BaseSuite) -> Sequence[cst.BaseStatement]:
    if isinstance(node, cst.SimpleStatementSuite):
        return [cst.SimpleStatementLine(body=node.body)]
    assert isinstance(node, cst.IndentedBlock)
    return node.body


def _paren(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``expr`` made safe as an operand of ``if``/``else`` (an ``IfExp`` or a bare tuple would regroup)."""
    if isinstance(expr, (cst.IfExp, cst.Tuple)) and not expr.lpar:
        return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return expr


def _lets(stmts: Sequence[cst.BaseStatement]) -> list[tuple[str, cst.BaseExpression]] | None:
    """``name = expr`` and ``a, b = x, y`` lines as (name, expr) pairs, or ``None``."""
    out: list[tuple[str, cst.BaseExpression]] = []
    for stmt in stmts:
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
            return None
        small = stmt.body[0]
        if not (isinstance(small, cst.Assign) and len(small.targets) == 1):
            return None
        target, value = small.targets[0].target, small.value
        if isinstance(target, cst.Name):
            out.append((target.value, value))
        elif (
            isinstance(target, cst.Tuple)
            and isinstance(value, cst.Tuple)
            and len(target.elements) == len(value.elements)
            and all(isinstance(e, cst.Element) for e in (*target.elements, *value.elements))
            and all(isinstance(e.value, cst.Name) for e in target.elements)
        ):
            out.extend(
                (t.value.value, v.value)  # type: ignore[attr-defined]
                for t, v in zip(target.elements, value.elements, strict=True)
            )
        else:
            return None
    return out


def _tail(stmts: Sequence[cst.BaseStatement]) -> cst.BaseExpression | None:
    """The value of ``return E``, or of ``if C: return A`` + ``return B`` as ``A if C else B``."""
    value = _returned(stmts)
    if value is not None:
        return value
    if len(stmts) == 1 and isinstance(stmts[0], cst.If) and isinstance(stmts[0].orelse, cst.Else):
        branch, rest = stmts[0], _block(stmts[0].orelse.body)
    elif len(stmts) == 2 and isinstance(stmts[0], cst.If) and stmts[0].orelse is None:
        branch, rest = stmts[0], stmts[1:]
    else:
        return None
    then, other = _returned(_block(branch.body)), _returned(rest)
    if then is None or other is None:
        return None
    return cst.IfExp(test=_paren(branch.test), body=_paren(then), orelse=_paren(other))


def body_expression(
    func: cst.FunctionDef,
) -> tuple[list[tuple[str, cst.BaseExpression]], cst.BaseExpression] | None:
    """The body as local bindings and one expression, or ``None`` if it is more than that."""
    stmts = _body(func)
    for cut in (len(stmts) - 1, len(stmts) - 2):
        if cut < 0:
            continue
        lets, tail = _lets(stmts[:cut]), _tail(stmts[cut:])
        if lets is not None and tail is not None:
            return lets, tail
    return None


def constant_params(
    func: cst.FunctionDef,
) -> tuple[tuple[str, ...], frozenset[str], dict[str, cst.BaseExpression]] | None:
    """(positional names, keyword names, constant defaults), or ``None`` for ``*a``/``**k``."""
    ps = func.params
    if isinstance(ps.star_arg, cst.Param) or ps.star_kwarg is not None:
        return None
    positional = tuple(p.name.value for p in (*ps.posonly_params, *ps.params))
    keywords = frozenset(p.name.value for p in (*ps.params, *ps.kwonly_params))
    defaults: dict[str, cst.BaseExpression] = {}
    for p in (*ps.posonly_params, *ps.params, *ps.kwonly_params):
        if p.default is not None:
            if not is_constant(p.default):
                return None  # evaluated once at def time: only a constant is the same later
            defaults[p.name.value] = p.default
    return positional, keywords, defaults


def callee(func: cst.FunctionDef) -> Callee | None:
    """``func`` as an inlinable :class:`Callee`, or ``None`` when it is not one."""
    if func.decorators or func.asynchronous is not None:
        return None
    body = body_expression(func)
    params = constant_params(func)
    if body is None or params is None:
        return None
    lets, expr = body
    banned: tuple[type[cst.CSTNode], ...] = (
        *COMPS,
        cst.Lambda,
        cst.NamedExpr,
        cst.Yield,
        cst.Await,
    )
    if any(contains(e, banned) for e in (expr, *(v for _, v in lets))):
        return None
    positional, keywords, defaults = params
    names = set(positional) | keywords
    let_names = [n for n, _ in lets]
    if len(set(let_names)) != len(let_names) or names & set(let_names):
        return None  # a rebinding is not a substitution
    uses: dict[str, int] = dict.fromkeys([*names, *let_names], 0)
    free: set[str] = set()
    for part in (expr, *(v for _, v in lets)):
        for ref, _ in name_refs(part):
            if ref.value in uses:
                uses[ref.value] += 1
            else:
                free.add(ref.value)
    if free & FRAME_NAMES or any(set(let_names) & _names(v) for _, v in lets):
        return None
    return Callee(
        func.name.value, positional, keywords, defaults, expr, uses, frozenset(free), dict(lets)
    )


def _names(expr: cst.BaseExpression) -> set[str]:
    return {ref.value for ref, _ in name_refs(expr)}
