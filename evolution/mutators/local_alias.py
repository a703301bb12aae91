"""``out.append(x)`` in a loop looks up ``append`` on every iteration; a local alias does it once.

Binding the method before the loop gives the same bound method the loop would have
looked up, as long as the loop never rebinds the name nor assigns that attribute.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    COMPS,
    SCOPES,
    Edit,
    Index,
    Located,
    between,
    binding_names,
    block_of,
    innermost_scope,
    statement,
    subtree,
)


def _assigns_attr(loop: cst.CSTNode, owner: str, attr: str) -> bool:
    for n in subtree(loop):
        targets: list[cst.CSTNode] = []
        if isinstance(n, cst.Assign):
            targets = [t.target for t in n.targets]
        elif isinstance(n, (cst.AugAssign, cst.AnnAssign, cst.Del)):
            targets = [n.target]
        for t in targets:
            for part in subtree(t):
                if (
                    isinstance(part, cst.Attribute)
                    and isinstance(part.value, cst.Name)
                    and part.value.value == owner
                    and part.attr.value == attr
                ):
                    return True
        if (
            isinstance(n, cst.Call)
            and isinstance(n.func, cst.Name)
            and n.func.value in ("setattr", "delattr")
        ):
            return True
    return False


def _calls(idx: Index, loop: cst.For | cst.While, owner: str, attr: str) -> list[cst.Call]:
    """Calls ``owner.attr(...)`` in the loop body, not inside a nested scope or comprehension."""
    found = []
    for n in subtree(loop.body):
        if (
            isinstance(n, cst.Call)
            and isinstance(n.func, cst.Attribute)
            and isinstance(n.func.value, cst.Name)
            and n.func.value.value == owner
            and n.func.attr.value == attr
            and not any(isinstance(p, (*COMPS, *SCOPES)) for p in between(idx.at(n), loop)[1:-1])
        ):
            found.append(n)
    return found


class LocalAlias(CstMutator):
    name = "local_alias"
    risk = 0.1
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, call = scan.idx, loc.node
        if not (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Attribute)
            and isinstance(call.func.value, cst.Name)
            and not call.func.attr.value.startswith("__")
        ):
            return
        owner, attr = call.func.value.value, call.func.attr.value
        loop = self._loop(idx, loc, owner, attr)
        # one alias per loop and method: the first call found speaks for all of them
        if loop is None or not scan.first((id(loop), owner, attr)):
            return
        calls = _calls(idx, loop, owner, attr)
        if calls:
            yield self._finding(scan, loc, loop, owner, attr, calls)

    def _loop(self, idx: Index, loc: Located, owner: str, attr: str) -> cst.For | cst.While | None:
        """The outermost loop of the function holding the call in its body that keeps ``owner`` fixed."""
        func = innermost_scope(loc.parents)
        if not isinstance(func, cst.FunctionDef):
            return None
        chain = between(loc, func)
        if not self._known(idx, func, owner, chain):
            return None
        for p, c in zip(chain, chain[1:], strict=False):
            if isinstance(p, COMPS):
                return None
            if (
                isinstance(p, (cst.For, cst.While))
                and c is p.body
                and block_of(idx.at(p)) is not None
                and owner not in binding_names(p)
                and not _assigns_attr(p, owner, attr)
            ):
                return p
        return None

    def _known(
        self, idx: Index, func: cst.FunctionDef, owner: str, chain: list[cst.CSTNode]
    ) -> bool:
        """``owner`` is a parameter, a local bound before the loop, or a module-level name."""
        if owner in binding_names(func.params):
            return True
        if owner in binding_names(func.body):
            first_loop = next((n for n in chain if isinstance(n, (cst.For, cst.While))), None)
            if first_loop is None:
                return False
            start = idx.at(first_loop).line
            return any(
                isinstance(n, (cst.Assign, cst.AnnAssign))
                and owner in binding_names(n)
                and idx.at(n).line < start
                for n in subtree(func.body)
            )
        return any(
            stmt.name.value == owner
            if isinstance(stmt, (cst.FunctionDef, cst.ClassDef))
            else isinstance(stmt, cst.SimpleStatementLine) and owner in binding_names(stmt)
            for stmt in idx.module.body
        )

    def _finding(
        self,
        scan: Scan,
        loc: Located,
        loop: cst.For | cst.While,
        owner: str,
        attr: str,
        calls: list[cst.Call],
    ) -> Finding:
        idx = scan.idx

        def edit() -> Edit:
            alias = idx.fresh(f"_{owner}_{attr}")
            e = Edit().insert_before(loop, statement(f"{alias} = {owner}.{attr}"))
            for call in calls:
                e.replace(call, call.with_changes(func=cst.Name(alias)))
            return e

        first = idx.at(calls[0]).line
        detail = (
            f"`{owner}.{attr}` is looked up on every iteration ({len(calls)} call(s) in the loop)"
        )
        weight = min(1.3, 1.05 + 0.05 * len(calls))
        return scan.finding(loc, detail, weight, edit, line=first)
