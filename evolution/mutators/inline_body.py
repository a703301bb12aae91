"""A call statement of a small function becomes the function's statements, without the frame.

``pos = skip_chars(src, pos, WS)`` becomes the ``try``/``while`` of ``skip_chars`` with its
parameters bound to the arguments and its locals renamed to fresh names, then
``pos = <returned value>``.  The callee qualifies as in :mod:`inline_procedure`; the call
qualifies when it is a whole statement (``f(...)``, ``x = f(...)`` or ``return f(...)``)
of a function's block, ``f`` is a top-level function bound once in the module, and the
names the body reads besides its own are bound nowhere in the caller.

Arguments are evaluated once, before the body, in order, as the call did: constants, and
names of the caller's locals the body never rebinds, are substituted; anything else is
first bound to a fresh local (all non-constant arguments are, as soon as one is, so the
reads keep their order).  ``x = f(x, ...)`` where ``f`` rebinds that parameter and returns
it updates ``x`` in place, unless an exception raised half-way could be seen: then (inside
a ``try`` of the caller) a fresh local carries the value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    binding_names,
    enclosing_loops,
    has_ancestor,
    innermost_scope,
    is_constant,
    name_refs,
    short,
    subtree,
)
from evolution.mutators.inline_args import impure_calls
from evolution.mutators.inline_plan import Substitute, bind
from evolution.mutators.inline_procedure import Procedure, procedure
from evolution.mutators.inline_scope import outer_function


def fstring_names(proc: Procedure) -> frozenset[str]:
    """Names read inside f-strings of the body: a literal cannot be pasted there."""
    parts = (*proc.body, *([proc.result] if proc.result is not None else []))
    return frozenset(
        n.value
        for part in parts
        for f in subtree(part)
        if isinstance(f, cst.FormattedString)
        for n in subtree(f)
        if isinstance(n, cst.Name)
    )


def compiles(idx: Index, edit: Edit) -> Edit | None:
    """``edit`` if the module it makes compiles (a last check on what a paste produced)."""
    try:
        compile(edit.run(idx.module, idx), "<inline>", "exec", dont_inherit=True)
    except SyntaxError:
        return None
    return edit


def module_procedures(idx: Index) -> dict[str, Procedure]:
    out: dict[str, Procedure] = {}
    for stmt in idx.module.body:
        if isinstance(stmt, cst.FunctionDef) and idx.module_bindings.get(stmt.name.value) == 1:
            proc = procedure(stmt)
            if proc is not None:
                out[proc.name] = proc
    return out


def _renamed(node: cst.CSTNode, names: Mapping[str, cst.BaseExpression]) -> cst.CSTNode:
    by_id = {id(ref): names[ref.value] for ref, _ in name_refs(node) if ref.value in names}
    out = node.visit(Substitute(by_id))
    assert isinstance(out, cst.CSTNode)
    return out


def _site(loc: Located) -> tuple[cst.SimpleStatementLine, cst.BaseSmallStatement] | None:
    """The statement line the call is the whole of (as value of an Expr/Assign/Return)."""
    if len(loc.parents) < 3:
        return None
    parent = loc.parent
    line = loc.parents[-2]
    if not (
        isinstance(line, cst.SimpleStatementLine)
        and len(line.body) == 1
        and line.body[0] is parent
        and isinstance(loc.parents[-3], cst.IndentedBlock)
    ):
        return None
    if isinstance(parent, (cst.Expr, cst.Return)) and parent.value is loc.node:
        return line, parent
    if isinstance(parent, cst.Assign) and parent.value is loc.node and len(parent.targets) == 1:
        return line, parent
    return None


@dataclass(frozen=True)
class _Call:
    """One call statement that can take the body in: where it is and what it binds."""

    loc: Located
    proc: Procedure
    args: dict[str, cst.BaseExpression]
    line: cst.SimpleStatementLine
    small: cst.BaseSmallStatement
    local: frozenset[str]


def _qualify(scan: Scan, loc: Located) -> _Call | None:
    call = loc.node
    outer = outer_function(loc)
    site = _site(loc)
    if (
        not isinstance(call, cst.Call)
        or outer is None
        or site is None
        or not isinstance(call.func, cst.Name)
        or not isinstance(innermost_scope(loc.parents), cst.FunctionDef)
    ):
        return None  # pasted into a class body, the callee's locals would be attributes
    proc = scan.derived(module_procedures).get(call.func.value)
    if proc is None or any(
        isinstance(p, cst.FunctionDef) and p.name.value == proc.name for p in loc.parents
    ):
        return None  # a recursive call stays a call
    local = frozenset(binding_names(outer))
    args = bind(call, proc, False)
    if args is None or proc.free & local:
        return None
    if any(isinstance(n, (cst.Global, cst.Nonlocal)) for n in subtree(outer)):
        return None
    return _Call(loc, proc, args, site[0], site[1], local)


def pasted(
    idx: Index,
    proc: Procedure,
    args: Mapping[str, cst.BaseExpression],
    local: frozenset[str],
    taken: list[str],
    reuse: str | None = None,
) -> tuple[list[cst.BaseStatement], dict[str, cst.BaseExpression]]:
    """The body's statements with the arguments bound, and what each of its names became.

    Constants, and names of the caller's locals (``local``) the body never rebinds, are
    substituted; every other argument is first bound to a fresh local, in order (all
    non-constant ones are, as soon as one is, so the reads keep their order).  ``reuse``
    is the parameter that is the call's target itself (:meth:`InlineBody._reuse`).
    """

    def fresh(name: str) -> cst.Name:
        new = idx.fresh(f"_{name}", taken)
        taken.append(new)
        return cst.Name(new)

    names: dict[str, cst.BaseExpression] = {}
    pre: list[cst.BaseStatement] = []
    impure = any(impure_calls(idx, s) for s in proc.body)
    temps = any(not (is_constant(v) or isinstance(v, cst.Name)) for v in args.values())
    for param, value in args.items():
        if param == reuse:
            names[param] = cst.Name(value.value)  # type: ignore[attr-defined]
        elif (
            # a literal in an f-string could clash with its quotes: it gets a temp
            is_constant(value)
            and param not in proc.locals | fstring_names(proc)
            or (
                isinstance(value, cst.Name)
                and not temps
                and param not in proc.locals
                and (value.value in local or not impure)
            )
        ):
            names[param] = value
        else:
            temp = fresh(param)
            names[param] = temp
            pre.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(temp)], value)]))
    for name in sorted(proc.locals - set(args)):
        names[name] = fresh(name)
    body = [_renamed(s, names) for s in proc.body]
    return [*pre, *body], names  # type: ignore[list-item]


class InlineBody(CstMutator):
    name = "inline_body"
    risk = 0.3
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        first = _qualify(scan, loc)
        if first is None or not scan.first(("inline_body", first.proc.name)):
            return
        # one candidate pastes the body at every call statement of the function: each
        # saves a frame, and alone one site rarely moves a whole benchmark
        name = first.proc.name
        calls = [
            q
            for other in scan.idx.nodes
            if isinstance(other.node, cst.Call)
            and isinstance(other.node.func, cst.Name)
            and other.node.func.value == name
            and (q := _qualify(scan, other)) is not None
        ]
        yield self._finding(scan, loc, calls)

    def _finding(self, scan: Scan, loc: Located, calls: list[_Call]) -> Finding:
        idx = scan.idx

        def edit() -> Edit | None:
            taken: list[str] = []
            e = Edit()
            for q in calls:
                self._paste(idx, q, e, taken)
            return compiles(idx, e)

        proc = calls[0].proc
        count = sum(isinstance(n, cst.BaseStatement) for s in proc.body for n in subtree(s))
        depth = max(len(enclosing_loops(q.loc)) for q in calls)
        weight = 1.05 + 0.05 * depth + 0.01 * min(len(calls), 10)
        detail = (
            f"{len(calls)} call statement(s) of `{proc.name}` run its {count} statement(s)"
            f" in a frame of their own (first: `{short(idx.code(loc.node))}`)"
        )
        return scan.finding(loc, detail, weight, edit)

    def _paste(self, idx: Index, q: _Call, e: Edit, taken: list[str]) -> None:
        """Schedule the body (its arguments bound, its locals renamed) in place of ``q``."""
        reuse = self._reuse(q.proc, q.args, q.small, has_ancestor(q.loc, (cst.Try, cst.TryStar)))
        stmts, names = pasted(idx, q.proc, q.args, q.local, taken, reuse)
        for stmt in stmts:
            e.insert_before(q.line, stmt)
        last = self._last(q.proc, q.small, names, reuse is not None)
        if last is None:
            e.remove(q.line)
        else:
            e.replace(q.small, last)

    def _reuse(
        self,
        proc: Procedure,
        args: dict[str, cst.BaseExpression],
        small: cst.BaseSmallStatement,
        in_try: bool,
    ) -> str | None:
        """The parameter that can be the call's target itself (``x = f(x)`` returning it)."""
        if in_try or not isinstance(small, cst.Assign) or not isinstance(proc.result, cst.Name):
            return None
        target = small.targets[0].target
        param = proc.result.value
        value = args.get(param)
        if not (
            isinstance(target, cst.Name)
            and isinstance(value, cst.Name)
            and value.value == target.value
            and param in proc.locals
        ):
            return None
        others = [v for p, v in args.items() if p != param]
        if any(target.value in {r.value for r, _ in name_refs(v)} for v in others):
            return None
        return param

    def _last(
        self,
        proc: Procedure,
        small: cst.BaseSmallStatement,
        names: Mapping[str, cst.BaseExpression],
        reused: bool,
    ) -> cst.BaseSmallStatement | None:
        """What the call statement becomes once the body ran: the result put where the call was."""
        result = proc.result
        value = cst.Name("None") if result is None else _renamed(result, names)
        assert isinstance(value, cst.BaseExpression)
        if isinstance(small, cst.Assign):
            return None if reused else small.with_changes(value=value)
        if isinstance(small, cst.Return):
            return small.with_changes(value=value)
        if result is None or isinstance(result, cst.Name) or is_constant(result):
            return None  # an Expr statement drops the value; reading a name changes nothing
        return small.with_changes(value=value)
