"""``has = d.__contains__`` then ``has(x)`` was a speed trick once; on 3.11 ``x in d`` is faster.

Older CPythons paid for the ``in`` operator's dispatch, so hand-tuned code (``difflib``
among it) binds a container's ``__contains__`` to a local and calls it.  On 3.11 the
operator is one specialised instruction while the call goes through a method-wrapper:
in ``difflib``'s ``quick_ratio`` loop, ``elt in avail`` for ``availhas(elt)`` saves 5 % of
the whole benchmark's instructions.

Why equal: for the builtin containers (``dict``, ``set``, ``frozenset``, ``list``,
``tuple``) ``x in c`` calls the same slot as ``c.__contains__(x)``, which already returns
a ``bool``, and raises the same errors.  So the rewrite needs to know the container is
one of those: it is a local of the function bound once, by a display or comprehension
or a call of the unshadowed ``dict/set/frozenset/list/tuple``, in the same block before
the alias.  The alias is a local bound once (alone, or in a tuple assignment such as
``has, n = d.__contains__, 0``) and every use of it is a call with one positional
argument; the alias then disappears.  Direct calls ``c.__contains__(x)`` on such a local
become ``x in c`` too.
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
    binding_names,
    innermost_scope,
    name_refs,
    short,
    subtree,
)

_MAKERS = frozenset({"dict", "set", "frozenset", "list", "tuple"})


def _top_statement(loc: Located, func: cst.FunctionDef) -> cst.CSTNode | None:
    """The statement of ``func``'s own block that holds ``loc``."""
    chain = loc.chain
    for i, node in enumerate(chain[:-1]):
        if node is func.body:
            return chain[i + 1]
    return None


def _container_local(idx: Index, func: cst.FunctionDef, name: str, loc: Located) -> bool:
    """``name`` is bound once in ``func``, to a builtin container, by a statement of its own
    block that runs before the one holding ``loc``."""
    if binding_names(func).count(name) != 1 or name in binding_names(func.params):
        return False
    anchor = _top_statement(loc, func)
    if anchor is None or not isinstance(func.body, cst.IndentedBlock):
        return False
    for stmt in func.body.body:
        if stmt is anchor:
            return False
        small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        if isinstance(small, cst.Assign) and name in binding_names(small):
            return len(small.targets) == 1 and _makes_container(idx, small, name)
    return False


def _makes_container(idx: Index, assign: cst.Assign, name: str) -> bool:
    target, value = assign.targets[0].target, assign.value
    if isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple):
        pairs = zip(target.elements, value.elements, strict=False)
        found = [
            v.value for t, v in pairs if isinstance(t.value, cst.Name) and t.value.value == name
        ]
        if len(target.elements) != len(value.elements) or len(found) != 1:
            return False
        value = found[0]
    elif not (isinstance(target, cst.Name) and target.value == name):
        return False
    if isinstance(value, (cst.Dict, cst.Set, cst.List, cst.Tuple, *COMPS)):
        return not isinstance(value, cst.GeneratorExp)
    return (
        isinstance(value, cst.Call)
        and isinstance(value.func, cst.Name)
        and value.func.value in _MAKERS
        and not idx.module_bindings.get(value.func.value)
    )


def _contains_of(expr: cst.CSTNode) -> str | None:
    """``X`` for ``X.__contains__``."""
    if (
        isinstance(expr, cst.Attribute)
        and expr.attr.value == "__contains__"
        and isinstance(expr.value, cst.Name)
    ):
        return expr.value.value
    return None


def _in(arg: cst.BaseExpression, container: str, call: cst.Call) -> cst.BaseExpression:
    value = (
        arg.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        if isinstance(
            arg,
            (cst.BooleanOperation, cst.Comparison, cst.IfExp, cst.Lambda, cst.NamedExpr, cst.Yield),
        )
        else arg
    )
    return cst.Comparison(
        left=value,
        comparisons=[cst.ComparisonTarget(operator=cst.In(), comparator=cst.Name(container))],
        lpar=[*call.lpar, cst.LeftParen()],
        rpar=[cst.RightParen(), *call.rpar],
    )


def _one_arg(call: cst.CSTNode | None) -> cst.BaseExpression | None:
    if (
        isinstance(call, cst.Call)
        and len(call.args) == 1
        and call.args[0].keyword is None
        and not call.args[0].star
    ):
        return call.args[0].value
    return None


def _commented(stmt: cst.CSTNode) -> bool:
    if not isinstance(stmt, cst.SimpleStatementLine):
        return True
    return stmt.trailing_whitespace.comment is not None or any(
        line.comment is not None for line in stmt.leading_lines
    )


class DunderOperator(CstMutator):
    name = "dunder_operator"
    risk = 0.1
    kinds = (cst.Attribute,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, node = scan.idx, loc.node
        container = _contains_of(node)
        func = innermost_scope(loc.parents)
        if container is None or not isinstance(func, cst.FunctionDef):
            return
        if not _container_local(idx, func, container, loc):
            return
        parent = loc.parent
        if isinstance(parent, cst.Call) and parent.func is node:
            arg = _one_arg(parent)
            if arg is not None:
                call = parent

                def direct() -> Edit:
                    return Edit().replace(call, _in(arg, container, call))

                detail = f"`{short(idx.code(call))}` calls a method-wrapper for `in`"
                yield scan.finding(loc, detail, 1.1, direct)
            return
        found = self._alias(idx, loc, func)
        if found is not None:
            yield self._alias_finding(scan, loc, container, *found)

    def _alias(
        self, idx: Index, loc: Located, func: cst.FunctionDef
    ) -> tuple[cst.Assign, str, list[cst.Call]] | None:
        """The assignment binding ``H = X.__contains__``, ``H``, and its calls (all its uses)."""
        chain = loc.chain
        assign = next((n for n in reversed(chain) if isinstance(n, cst.Assign)), None)
        if assign is None or len(assign.targets) != 1:
            return None
        target, value = assign.targets[0].target, assign.value
        alias: cst.Name | None = None
        if value is loc.node and isinstance(target, cst.Name):
            alias = target
        elif isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple):
            for t, v in zip(target.elements, value.elements, strict=False):
                if v.value is loc.node and isinstance(t.value, cst.Name):
                    alias = t.value
        stmt = idx.at(assign).parent
        if alias is None or not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return None
        if value is loc.node and _commented(stmt):
            return None  # the line goes, and a comment on it would go with it
        name = alias.value
        if binding_names(func).count(name) != 1 or any(
            isinstance(n, (cst.Global, cst.Nonlocal)) for n in subtree(func)
        ):
            return None
        calls: list[cst.Call] = []
        for ref, parent in name_refs(func.body):
            if ref is alias or ref.value != name:
                continue
            if not (isinstance(parent, cst.Call) and parent.func is ref and _one_arg(parent)):
                return None  # used as a value: the bound method must stay
            calls.append(parent)
        return (assign, name, calls) if calls else None

    def _alias_finding(
        self,
        scan: Scan,
        loc: Located,
        container: str,
        assign: cst.Assign,
        name: str,
        calls: list[cst.Call],
    ) -> Finding:
        idx = scan.idx
        stmt = idx.at(assign).parent
        assert stmt is not None

        def edit() -> Edit:
            e = Edit()
            target, value = assign.targets[0].target, assign.value
            if isinstance(target, cst.Tuple) and isinstance(value, cst.Tuple):
                keep = [
                    (t, v)
                    for t, v in zip(target.elements, value.elements, strict=True)
                    if v.value is not loc.node
                ]
                if len(keep) == 1:
                    new = assign.with_changes(
                        targets=[assign.targets[0].with_changes(target=keep[0][0].value)],
                        value=keep[0][1].value,
                    )
                else:
                    new = assign.with_changes(
                        targets=[
                            assign.targets[0].with_changes(
                                target=target.with_changes(
                                    elements=[
                                        t.with_changes(comma=cst.MaybeSentinel.DEFAULT)
                                        for t, _ in keep
                                    ]
                                )
                            )
                        ],
                        value=value.with_changes(
                            elements=[
                                v.with_changes(comma=cst.MaybeSentinel.DEFAULT) for _, v in keep
                            ]
                        ),
                    )
                e.replace(assign, new)
            else:
                e.remove(stmt)
            for call in calls:
                arg = _one_arg(call)
                assert arg is not None
                e.replace(call, _in(arg, container, call))
            return e

        detail = (
            f"`{name}` = `{container}.__contains__` is called {len(calls)} time(s) instead of `in`"
        )
        return scan.finding(loc, detail, 1.3, edit)
