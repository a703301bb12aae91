"""``x in LIST`` inside a loop scans the list every time; a frozenset answers in O(1).

Only constant lists of hashable literals qualify, and only when the list is bound once
and used in ways that cannot change it, so the frozenset built once stays equal to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    binding_names,
    constant_sequence,
    enclosing_loops,
    innermost_scope,
    name_refs,
    short,
    single_assign,
    statement,
)

#: calls that only read a sequence they get as their sole argument
_READERS = frozenset({"len", "sorted", "set", "frozenset", "tuple", "list"})


def _weight(count: int) -> float:
    return min(4.0, 1.0 + count / 40)


def _read_only_use(name: cst.Name, parent: cst.CSTNode | None, grand: cst.CSTNode | None) -> bool:
    """Whether this occurrence of the name can only read the sequence it names."""
    if isinstance(parent, cst.ComparisonTarget) and parent.comparator is name:
        return isinstance(parent.operator, (cst.In, cst.NotIn))
    if isinstance(parent, (cst.For, cst.CompFor)) and parent.iter is name:
        return True
    return (
        isinstance(parent, cst.Arg)
        and isinstance(grand, cst.Call)
        and isinstance(grand.func, cst.Name)
        and grand.func.value in _READERS
        and len(grand.args) == 1
    )


def _only_read(idx: Index, scope: cst.CSTNode, name: str, binding: cst.CSTNode) -> bool:
    for ref, parent in name_refs(scope):
        if ref.value != name or ref is binding:
            continue
        grand = idx.at(parent).parent if parent is not None and id(parent) in idx.by_id else None
        if not _read_only_use(ref, parent, grand):
            return False
    return True


def _list_binding(
    body: Sequence[cst.BaseStatement], name: str
) -> tuple[cst.BaseStatement, cst.Assign, int] | None:
    """The first ``name = ...`` line of ``body``, if it binds a constant list: (line, assign, items)."""
    for stmt in body:
        assign = single_assign(stmt, name)
        if assign is not None:
            count = constant_sequence(assign.value)
            return None if count is None else (stmt, assign, count)
    return None


def _existing_set(body: Sequence[cst.BaseStatement], name: str) -> str | None:
    """A ``X = frozenset(name)`` already made by an earlier rewrite, to reuse."""
    for stmt in body:
        small = single_assign(stmt)
        if (
            small is not None
            and isinstance(small.targets[0].target, cst.Name)
            and isinstance(small.value, cst.Call)
            and isinstance(small.value.func, cst.Name)
            and small.value.func.value == "frozenset"
            and len(small.value.args) == 1
            and isinstance(small.value.args[0].value, cst.Name)
            and small.value.args[0].value.value == name
        ):
            return small.targets[0].target.value
    return None


def _frozenset_edit(
    idx: Index,
    body: Sequence[cst.BaseStatement],
    name: str,
    hint: str,
    ref: cst.Name,
    anchor: cst.CSTNode,
) -> Callable[[], Edit]:
    """Use a frozenset of ``name`` at ``ref``: the one already beside it, or a new one after ``anchor``."""

    def edit() -> Edit:
        reuse = _existing_set(body, name)
        alias = reuse or idx.fresh(hint)
        e = Edit().replace(ref, cst.Name(alias))
        if reuse is None:
            e.insert_after(anchor, statement(f"{alias} = frozenset({name})"))
        return e

    return edit


class SetMembership(CstMutator):
    name = "set_membership"
    risk = 0.15
    kinds = (cst.ComparisonTarget,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        target, comparison = loc.node, loc.parent
        if (
            isinstance(target, cst.ComparisonTarget)
            and isinstance(target.operator, (cst.In, cst.NotIn))
            and isinstance(comparison, cst.Comparison)
        ):
            finding = self._literal(scan, loc, comparison, target) or self._named(
                scan, loc, comparison, target
            )
            if finding is not None:
                yield finding

    def _literal(
        self,
        scan: Scan,
        loc: Located,
        comparison: cst.Comparison,
        target: cst.ComparisonTarget,
    ) -> Finding | None:
        idx = scan.idx
        seq = target.comparator
        count = constant_sequence(seq)
        if count is None or not (
            enclosing_loops(loc) or isinstance(innermost_scope(loc.parents), cst.FunctionDef)
        ):
            return None
        if isinstance(seq, cst.Tuple) and not seq.lpar:
            return None
        assert isinstance(seq, (cst.List, cst.Tuple))

        def edit() -> Edit:
            if isinstance(seq, cst.List):
                new = cst.Set(
                    elements=seq.elements,
                    lbrace=cst.LeftCurlyBrace(whitespace_after=seq.lbracket.whitespace_after),
                    rbrace=cst.RightCurlyBrace(whitespace_before=seq.rbracket.whitespace_before),
                    lpar=seq.lpar,
                    rpar=seq.rpar,
                )
            else:
                assert isinstance(seq, cst.Tuple)
                new = cst.Set(
                    elements=seq.elements,
                    lbrace=cst.LeftCurlyBrace(whitespace_after=seq.lpar[0].whitespace_after),
                    rbrace=cst.RightCurlyBrace(whitespace_before=seq.rpar[-1].whitespace_before),
                    lpar=seq.lpar[1:],
                    rpar=seq.rpar[:-1],
                )
            return Edit().replace(seq, new)

        detail = f"`{short(idx.code(comparison))}` scans a {count}-item literal; a set literal is a constant frozenset"
        return scan.finding(loc, detail, _weight(count), edit)

    def _named(
        self,
        scan: Scan,
        loc: Located,
        comparison: cst.Comparison,
        target: cst.ComparisonTarget,
    ) -> Finding | None:
        idx = scan.idx
        ref = target.comparator
        if not isinstance(ref, cst.Name) or not enclosing_loops(loc):
            return None
        name = ref.value
        scopes = [
            n for n in loc.parents if isinstance(n, (cst.FunctionDef, cst.Lambda, cst.ClassDef))
        ]
        binders = [s for s in scopes if name in binding_names(s)]
        detail_head = f"`{short(idx.code(comparison))}` scans"
        if not binders:
            return self._module_level(scan, loc, ref, detail_head)
        func = scopes[-1]
        if (
            binders != [func]
            or not isinstance(func, cst.FunctionDef)
            or binding_names(func).count(name) != 1
        ):
            return None
        body = func.body
        if not isinstance(body, cst.IndentedBlock):
            return None
        found = _list_binding(body.body, name)
        if found is None:
            return None
        anchor, assign, count = found
        if idx.at(anchor).line >= loc.line:
            return None
        if not _only_read(idx, func, name, assign.targets[0].target):
            return None
        edit = _frozenset_edit(idx, body.body, name, f"_{name.lower()}_set", ref, anchor)

        detail = f"{detail_head} a {count}-item local list in a loop"
        return scan.finding(loc, detail, _weight(count), edit)

    def _module_level(
        self, scan: Scan, loc: Located, ref: cst.Name, detail_head: str
    ) -> Finding | None:
        idx = scan.idx
        name = ref.value
        if idx.module_bindings.get(name, 0) != 1:
            return None
        found = _list_binding(idx.module.body, name)
        if found is None:
            return None
        anchor, assign, count = found
        if not _only_read(idx, idx.module, name, assign.targets[0].target):
            return None
        edit = _frozenset_edit(idx, idx.module.body, name, f"{name.upper()}_SET", ref, anchor)

        detail = f"{detail_head} a {count}-item module list in a loop"
        return scan.finding(loc, detail, _weight(count), edit)
