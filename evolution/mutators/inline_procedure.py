"""Which functions can be pasted in place of a call statement: a body with one ``return``, last.

``pos = skip_chars(src, pos, WS)`` runs a frame for a loop of three lines; pasting the loop
where the call was (its locals renamed to fresh names, its parameters bound to the
arguments) runs the same statements without the frame.  That is the same computation
when the body has no other exit than falling off its end or its last ``return``, binds
no name outside itself (no ``global``/``nonlocal``/``import``), defines no scope of its
own (no ``def``, ``class``, ``lambda``, comprehension: their names would need the
callee's frame) and does not suspend (``yield``/``await``).  A method that starts with
``if C: return`` (bare) and returns nowhere else is read as ``if not C: <the rest>``
(:func:`guard_return`), which has one exit, its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.cst_tools import COMPS, binding_names, contains, name_refs, subtree
from evolution.mutators.inline_callee import FRAME_NAMES, constant_params, docstring

#: a pasted body longer than this did not pay on tomlparse (9-12 statements: 0.996-1.001x)
MAX_STATEMENTS = 6
_BANNED: tuple[type[cst.CSTNode], ...] = (
    *COMPS,
    cst.Lambda,
    cst.FunctionDef,
    cst.ClassDef,
    cst.Yield,
    cst.Await,
    cst.Global,
    cst.Nonlocal,
    cst.Import,
    cst.ImportFrom,
)


@dataclass(frozen=True)
class Procedure:
    """A function whose body can replace a call statement."""

    name: str
    positional: tuple[str, ...]
    keywords: frozenset[str]
    defaults: Mapping[str, cst.BaseExpression]
    #: the statements before the final ``return`` (all of them when there is none)
    body: tuple[cst.BaseStatement, ...]
    #: the returned value (``None`` when the function returns nothing)
    result: cst.BaseExpression | None
    #: names the body binds (parameters it rebinds included)
    locals: frozenset[str]
    #: the other names it reads: the module's globals and builtins
    free: frozenset[str]


def _final_return(stmt: cst.BaseStatement) -> cst.Return | None:
    if (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Return)
    ):
        return stmt.body[0]
    return None


def procedure(func: cst.FunctionDef, limit: int = MAX_STATEMENTS) -> Procedure | None:
    """``func`` as a :class:`Procedure`, or ``None`` when pasting it could change behaviour.

    ``limit`` bounds the statements counted at every depth (:data:`MAX_STATEMENTS`).
    """
    if (
        func.decorators
        or func.asynchronous is not None
        or not isinstance(func.body, cst.IndentedBlock)
    ):
        return None
    params = constant_params(func)
    if params is None:
        return None
    stmts = list(func.body.body)
    if stmts and docstring(stmts[0]):
        stmts = stmts[1:]
    if not stmts:
        return None
    last = _final_return(stmts[-1])
    body = stmts[:-1] if last is not None else stmts
    result = last.value if last is not None else None
    if not body or any(contains(s, _BANNED) or contains(s, (cst.Return,)) for s in body):
        return None
    if result is not None and contains(result, _BANNED):
        return None
    if sum(isinstance(n, cst.BaseStatement) for s in body for n in subtree(s)) > limit:
        return None
    positional, keywords, defaults = params
    names = set(positional) | keywords
    bound = set(binding_names(func.body))
    free = {
        ref.value
        for part in (*body, *([result] if result is not None else []))
        for ref, _ in name_refs(part)
        if ref.value not in names and ref.value not in bound
    }
    if free & FRAME_NAMES:
        return None
    return Procedure(
        func.name.value,
        positional,
        keywords,
        defaults,
        tuple(body),
        result,
        frozenset(bound),
        frozenset(free),
    )


def guard_return(func: cst.FunctionDef) -> cst.FunctionDef:
    """``if C: return`` then statements without ``return``, as ``if not C: <them>``."""
    if not isinstance(func.body, cst.IndentedBlock):
        return func
    stmts = list(func.body.body)
    if stmts and docstring(stmts[0]):
        stmts = stmts[1:]
    if len(stmts) < 2 or any(contains(s, (cst.Return,)) for s in stmts[1:]):
        return func
    first = stmts[0]
    if not (
        isinstance(first, cst.If)
        and first.orelse is None
        and isinstance(first.body, cst.IndentedBlock)
        and len(first.body.body) == 1
    ):
        return func
    only = first.body.body[0]
    if not (
        isinstance(only, cst.SimpleStatementLine)
        and len(only.body) == 1
        and isinstance(only.body[0], cst.Return)
        and only.body[0].value is None
    ):
        return func
    test = negated(first.test)
    body = cst.IndentedBlock(body=stmts[1:])
    return func.with_changes(body=func.body.with_changes(body=[cst.If(test=test, body=body)]))


def negated(test: cst.BaseExpression) -> cst.BaseExpression:
    """``not (test)``; ``a is b`` → ``a is not b`` (the same identity test, negated)."""
    if (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.Is)
        and not test.lpar
    ):
        target = test.comparisons[0]
        return test.with_changes(comparisons=[target.with_changes(operator=cst.IsNot())])
    inner = (
        test if test.lpar else test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    )
    return cst.UnaryOperation(operator=cst.Not(), expression=inner)
