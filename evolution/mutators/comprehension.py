"""``out = []`` then ``for v in it: out.append(f(v))`` runs a Python-level call per item.

A list comprehension builds the same list in one specialised loop.  It differs only in
what escapes: the comprehension's variable does not leak and a half-built list is never
seen, so the loop variable must be unused elsewhere and the loop must not sit in a ``try``.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Located,
    contains,
    function_block,
    name_refs,
    plain_for,
    single_assign,
    single_small,
    target_names,
)


def _append_arg(stmt: cst.CSTNode, out: str) -> cst.BaseExpression | None:
    small = single_small(stmt)
    if not isinstance(small, cst.Expr) or not isinstance(small.value, cst.Call):
        return None
    call = small.value
    func = call.func
    if (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value == out
        and func.attr.value == "append"
        and len(call.args) == 1
        and call.args[0].keyword is None
        and not call.args[0].star
    ):
        return call.args[0].value
    return None


def _paren(code: str, expr: cst.CSTNode) -> str:
    """Parenthesise what a comprehension clause would otherwise parse differently."""
    bare_tuple = isinstance(expr, cst.Tuple) and not expr.lpar
    if isinstance(expr, (cst.IfExp, cst.Lambda, cst.NamedExpr)) or bare_tuple:
        return f"({code})"
    return code


class Comprehension(CstMutator):
    name = "comprehension"
    risk = 0.1
    kinds = (cst.SimpleStatementLine,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx = scan.idx
        small = single_assign(loc.node)
        if small is None or not isinstance(small.value, cst.List) or small.value.elements:
            return
        where = function_block(loc)
        if where is None:
            return
        func, block = where
        out = cst.ensure_type(small.targets[0].target, cst.Name).value
        body = list(block.body)  # type: ignore[attr-defined]
        at = next(i for i, s in enumerate(body) if s is loc.node)
        if at + 1 >= len(body):
            return
        loop = body[at + 1]
        if not plain_for(loop):
            return
        if any(line.comment is not None for line in loop.leading_lines) or contains(
            loop, (cst.Comment,)
        ):
            return
        if contains(loop, (cst.NamedExpr, cst.Yield, cst.Await, cst.Lambda)):
            return
        if not isinstance(loop.body, cst.IndentedBlock) or len(loop.body.body) != 1:
            return
        inner = loop.body.body[0]
        cond: cst.BaseExpression | None = None
        if isinstance(inner, cst.If):
            if (
                inner.orelse is not None
                or not isinstance(inner.body, cst.IndentedBlock)
                or len(inner.body.body) != 1
            ):
                return
            cond = inner.test
            inner = inner.body.body[0]
        elt = _append_arg(inner, out)
        if elt is None:
            return
        names = target_names(loop.target)
        if not names or len(names) != len(list(_all_names(loop.target))):
            return  # attribute or subscript targets would not be plain comprehension targets
        refs = [r for r, _ in name_refs(loop)]
        if sum(1 for r in refs if r.value == out) != 1:
            return
        loop_refs = {id(r) for r in refs}
        if any(r.value in names and id(r) not in loop_refs for r, _ in name_refs(func)):
            return  # the loop variable is used outside the loop; a comprehension would hide it
        code = f"[{_paren(idx.code(elt), elt)} for {idx.code(loop.target).strip()} in {_paren(idx.code(loop.iter), loop.iter)}"
        if cond is not None:
            code += f" if {_paren(idx.code(cond), cond)}"
        code += "]"
        assign = small

        def edit() -> Edit:
            return (
                Edit()
                .replace(assign, assign.with_changes(value=cst.parse_expression(code)))
                .remove(loop)
            )

        detail = f"`{out}` is built by append in a loop of one statement"
        yield scan.finding(loc, detail, 1.25, edit)


def _all_names(target: cst.CSTNode) -> list[cst.CSTNode]:
    """Leaves of a target: names, and anything else that is not a tuple/list/star wrapper."""
    if isinstance(target, (cst.Tuple, cst.List)):
        return [leaf for el in target.elements for leaf in _all_names(el.value)]
    if isinstance(target, cst.StarredElement):
        return _all_names(target.value)
    return [target]
