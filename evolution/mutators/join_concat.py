"""``acc += piece`` in a loop copies the growing string each time (quadratic in the worst case).

Collecting the pieces in a list and joining once after the loop builds the same string in
linear time.  It is only equivalent when nothing reads ``acc`` while the loop runs, the
loop cannot leave through an exception someone catches here, and ``acc`` starts as ``""``.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    SCOPES,
    Edit,
    Located,
    binding_names,
    function_block,
    has_ancestor,
    name_refs,
    plain_for,
    single_assign,
    statement,
    subtree,
)


def _appends(loop: cst.For) -> dict[str, list[cst.AugAssign]]:
    """``acc += x`` statements in the loop body, reached only through ifs, grouped by name."""
    found: dict[str, list[cst.AugAssign]] = {}

    def walk(block: cst.BaseSuite) -> None:
        if not isinstance(block, cst.IndentedBlock):
            return
        for stmt in block.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if (
                        isinstance(small, cst.AugAssign)
                        and isinstance(small.operator, cst.AddAssign)
                        and isinstance(small.target, cst.Name)
                    ):
                        found.setdefault(small.target.value, []).append(small)
            elif isinstance(stmt, cst.If):
                walk_if(stmt)

    def walk_if(node: cst.If) -> None:
        walk(node.body)
        if isinstance(node.orelse, cst.If):
            walk_if(node.orelse)
        elif isinstance(node.orelse, cst.Else):
            walk(node.orelse.body)

    walk(loop.body)
    return found


def _empty_string(stmt: cst.CSTNode, name: str) -> cst.Assign | None:
    small = single_assign(stmt, name)
    if small is not None and isinstance(small.value, cst.SimpleString):
        return small if small.value.value in ('""', "''") else None
    return None


class JoinConcat(CstMutator):
    name = "join_concat"
    risk = 0.2
    kinds = (cst.For,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        loop = loc.node
        if not plain_for(loop):
            return
        where = function_block(loc)
        if where is None:
            return
        func, block = where
        for acc, sites in _appends(loop).items():
            finding = self._one(scan, loc, loop, func, block, acc, sites)
            if finding is not None:
                yield finding

    def _one(
        self,
        scan: Scan,
        loc: Located,
        loop: cst.For,
        func: cst.FunctionDef,
        block: cst.CSTNode,
        acc: str,
        sites: list[cst.AugAssign],
    ) -> Finding | None:
        idx = scan.idx
        targets = {id(s.target) for s in sites}
        if any(ref.value == acc and id(ref) not in targets for ref, _ in name_refs(loop)):
            return None
        if any(
            isinstance(n, (cst.Global, cst.Nonlocal)) and acc in binding_names(n)
            for n in subtree(func)
        ):
            return None
        for ref, _ in name_refs(func.body):  # a closure reading acc would see the wrong value
            if ref.value == acc and has_ancestor(idx.at(ref), SCOPES, func):
                return None
        body = list(block.body)  # type: ignore[attr-defined]
        at = next(i for i, s in enumerate(body) if s is loop)
        init = None
        for stmt in reversed(body[:at]):
            init = _empty_string(stmt, acc)
            if init is not None:
                break
            if any(ref.value == acc for ref, _ in name_refs(stmt)):
                return None
        if init is None:
            return None

        def edit() -> Edit:
            parts = idx.fresh(f"_{acc}_parts")
            quote = init.value.value if isinstance(init.value, cst.SimpleString) else '""'
            annotated = cst.AnnAssign(
                target=cst.Name(parts),
                annotation=cst.Annotation(cst.parse_expression("list[str]")),
                value=cst.List([]),
            )
            e = Edit().replace(init, annotated)
            for aug in sites:
                append = cst.Call(
                    func=cst.Attribute(cst.Name(parts), cst.Name("append")),
                    args=[cst.Arg(aug.value)],
                )
                e.replace(aug, cst.Expr(append, semicolon=aug.semicolon))
            e.insert_after(loop, statement(f"{acc} = {quote}.join({parts})"))
            return e

        detail = f"`{acc} += ...` concatenates strings in a loop ({len(sites)} place(s))"
        return scan.finding(loc, detail, 1.3, edit)
