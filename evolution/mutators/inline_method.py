"""A method call on a receiver of known class becomes the method's statements, without the frame.

``s.quick_ratio()`` in ``get_close_matches`` (difflib) runs a frame per word for a loop of
six lines; where ``s = SequenceMatcher()`` is built in the same function, the method that
runs is known exactly, and its body (``self`` replaced by ``s``, its parameters bound to
the arguments, its locals renamed) can run in the caller instead.  That is the same
computation when

- the receiver is a local of a top-level function bound once, by ``s = C(...)`` in the
  function's own block, with ``C`` a class of the module that is final there and has no
  lookup hooks (``inline_call``'s guard: no metaclass, keywords, ``__new__``,
  ``__getattr__``/``__getattribute__``, no class of the module derives from it, no
  attribute of the method's name assigned anywhere in the module, no ``setattr``/
  ``delattr``), and the module never touches ``__dict__`` or ``vars``;
- the receiver does not escape: every other use of ``s`` in the function is ``s.attr``
  (nothing else can hold ``s`` and shadow a method with an instance attribute);
- the method is a plain ``def`` bound once in the class body, never rebinding ``self``,
  with no class-private names (``self.__x`` is mangled by the class), and a body
  :func:`~evolution.mutators.inline_procedure.procedure` accepts (one ``return``, last;
  no nested scopes) after one normalisation: a first statement ``if C: return`` (bare)
  followed by statements with no ``return`` is ``if not C: <the rest>``;
- the call is a whole statement (``s.m(...)``, ``x = s.m(...)``, ``return s.m(...)``),
  or it is the first thing evaluated in one operand of an ``if``'s ``and`` chain (no
  ``else``, not an ``elif``): ``if A and s.m() >= c and B: body`` becomes ``if A:`` then
  the method's statements, then ``if (<its result>) >= c and B: body``.  ``A`` decides
  first as before; the statements run exactly when the call would have, the result is
  read where the call returned, then the same comparison and the rest of the chain.

Residual risk (as :mod:`inline_call`): a subclass or monkeypatch of the method from
another module is bypassed; a method that hands ``self`` to outside code lets that code
shadow a method with an instance attribute; tracebacks lose the method's frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    COMPS,
    SCOPES,
    Edit,
    Index,
    Located,
    binding_names,
    enclosing_loops,
    innermost_scope,
    short,
    subtree,
)
from evolution.mutators.inline_body import _renamed, _site, compiles, pasted
from evolution.mutators.inline_plan import bind
from evolution.mutators.inline_procedure import Procedure, guard_return, procedure
from evolution.mutators.inline_scope import class_methods, instance_class, outer_function

#: a method body pasted into a caller's loop: difflib's ``quick_ratio`` counts 13
MAX_METHOD_STATEMENTS = 16


def _private(func: cst.FunctionDef) -> bool:
    """Whether the body names a class-private ``__x`` (mangled by the class it is in)."""
    return any(
        isinstance(n, cst.Name) and n.value.startswith("__") and not n.value.endswith("__")
        for n in subtree(func.body)
    )  # an attribute's name is a Name node too: ``self.__x`` is caught


def method_procedure(idx: Index, cls: cst.ClassDef, name: str) -> Procedure | None:
    """Method ``name`` of ``cls`` as a pasteable body (``self`` its first parameter), or ``None``."""
    key = ("inline_method_proc", id(cls), name)
    if key in idx.memo:
        found = idx.memo[key]
        return found if isinstance(found, Procedure) else None
    func = class_methods(idx, cls).get(name)
    proc = None
    if func is not None and not _private(func):
        proc = procedure(guard_return(func), MAX_METHOD_STATEMENTS)
        if proc is not None and (not proc.positional or proc.positional[0] in proc.locals):
            proc = None  # no ``self``, or a body that rebinds it
    idx.memo[key] = proc if proc is not None else False
    return proc


def _attr_only(func: cst.FunctionDef, name: str) -> bool:
    """Every use of ``name`` in ``func`` is ``name.attr`` or its one binding: it never escapes.

    No nested scope (``def``, ``lambda``, class, comprehension) may mention it: a closure
    could carry it out, or read it later than the code around it.
    """
    inner = [n for n in subtree(func.body) if isinstance(n, (*SCOPES, *COMPS))]
    if any(isinstance(m, cst.Name) and m.value == name for n in inner for m in subtree(n)):
        return False
    uses = sum(1 for n in subtree(func.body) if isinstance(n, cst.Name) and n.value == name)
    attrs = sum(
        1
        for n in subtree(func.body)
        if isinstance(n, cst.Attribute) and isinstance(n.value, cst.Name) and n.value.value == name
    )
    return uses == attrs + 1


def known_class(idx: Index, func: cst.FunctionDef, name: str) -> cst.ClassDef | None:
    """The class ``name`` is built from, when nothing but the class itself decides its lookups.

    :func:`instance_class` (bound once, to ``C(...)`` in the function's own block), and
    ``C`` has no base class (a base could bring ``__getattribute__``, ``__setattr__`` or
    an ``__init__`` of its own).
    """
    cls = instance_class(idx, func, name)
    if cls is None or any(
        not (isinstance(b.value, cst.Name) and b.value.value == "object") for b in cls.bases
    ):
        return None
    return cls


def _bound_before(idx: Index, func: cst.FunctionDef, name: str, loc: Located) -> bool:
    """The one binding of ``name`` is a statement of the function's block above the call."""
    for stmt in func.body.body if isinstance(func.body, cst.IndentedBlock) else ():
        if name in binding_names(stmt):
            at = idx.by_id.get(id(stmt))
            return at is not None and at.line < loc.line
    return False


def _no_dict_tricks(idx: Index) -> bool:
    key = ("inline_method_no_dict",)
    if key not in idx.memo:
        idx.memo[key] = not any(
            (isinstance(n, cst.Name) and n.value == "vars")
            or (isinstance(n, cst.Attribute) and n.attr.value == "__dict__")
            for n in subtree(idx.module)
        )
    return bool(idx.memo[key])


def and_operands(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The operands of a chain of ``and`` (one operand when it is not one)."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return [*and_operands(test.left), *and_operands(test.right)]
    return [test]


def leftmost(expr: cst.BaseExpression) -> cst.BaseExpression:
    """What a comparison or arithmetic chain evaluates first."""
    while isinstance(expr, (cst.Comparison, cst.BinaryOperation)):
        expr = expr.left
    return expr


def joined(operands: Sequence[cst.BaseExpression]) -> cst.BaseExpression:
    out = operands[0]
    for op in operands[1:]:
        out = cst.BooleanOperation(left=out, operator=cst.And(), right=op)
    return out


@dataclass(frozen=True)
class _Call:
    """One call that can take the method's body in, and in which form."""

    loc: Located
    outer: cst.FunctionDef
    receiver: str
    proc: Procedure
    args: dict[str, cst.BaseExpression]
    local: frozenset[str]
    #: the statement form: the line and the small statement the call is the value of
    line: cst.SimpleStatementLine | None
    small: cst.BaseSmallStatement | None
    #: the test form: the ``if`` and which operand of its ``and`` chain starts with the call
    branch: cst.If | None
    operand: int


def _test_site(loc: Located) -> tuple[cst.If, int] | None:
    """The ``if`` (no ``else``, not an ``elif``) whose ``and`` operand begins with the call."""
    for i in range(len(loc.parents) - 1, 0, -1):
        node = loc.parents[i]
        if isinstance(node, cst.If):
            holder = loc.parents[i - 1]
            if node.orelse is not None or not isinstance(holder, cst.IndentedBlock):
                return None
            below = loc.chain[i + 1]
            if below is not node.test:
                return None
            for k, op in enumerate(and_operands(node.test)):
                if leftmost(op) is loc.node:
                    return node, k
            return None
        if isinstance(node, (cst.BaseStatement, cst.BaseSmallStatement, cst.Lambda)):
            return None
    return None


def _qualify(scan: Scan, loc: Located) -> _Call | None:
    idx, call = scan.idx, loc.node
    if not (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Attribute)
        and isinstance(call.func.value, cst.Name)
    ):
        return None
    outer = outer_function(loc)
    if outer is None or innermost_scope(loc.parents) is not outer or not _no_dict_tricks(idx):
        return None
    receiver, method = call.func.value.value, call.func.attr.value
    cls = known_class(idx, outer, receiver)
    if cls is None or not _attr_only(outer, receiver) or outer.name.value == method:
        return None
    if not _bound_before(idx, outer, receiver, loc):
        return None  # the call could run before ``s`` exists: it must fail before the body
    proc = method_procedure(idx, cls, method)
    if proc is None:
        return None
    local = frozenset(binding_names(outer))
    args = bind(call, proc, True)
    if args is None or proc.free & local:
        return None
    if any(isinstance(n, (cst.Global, cst.Nonlocal)) for n in subtree(outer)):
        return None
    args = {proc.positional[0]: cst.Name(receiver), **args}
    site = _site(loc)
    if site is not None:
        return _Call(loc, outer, receiver, proc, args, local, site[0], site[1], None, 0)
    test = _test_site(loc)
    if test is None:
        return None
    return _Call(loc, outer, receiver, proc, args, local, None, None, test[0], test[1])


class InlineMethod(CstMutator):
    name = "inline_method"
    risk = 0.3
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        first = _qualify(scan, loc)
        if first is None or not scan.first(("inline_method", id(first.outer), first.receiver)):
            return
        # one candidate inlines every qualifying method call on one receiver: the frames
        # it saves add up (difflib: set_seq1 1.020x, quick_ratio 1.017x, together 1.037x)
        calls: list[_Call] = []
        branches: set[int] = set()
        for other in scan.idx.nodes:
            q = _qualify(scan, other) if isinstance(other.node, cst.Call) else None
            if q is None or q.outer is not first.outer or q.receiver != first.receiver:
                continue
            same_test = q.branch is not None and id(q.branch) in branches
            if not same_test and any(id(p) in branches for p in other.parents):
                continue  # inside an ``if`` the candidate already rebuilds
            if q.branch is not None:
                branches.add(id(q.branch))
            calls.append(q)
        yield self._finding(scan, loc, calls)

    def _finding(self, scan: Scan, loc: Located, calls: list[_Call]) -> Finding:
        idx = scan.idx

        def edit() -> Edit | None:
            taken: list[str] = []
            e = Edit()
            tests: dict[int, list[tuple[_Call, list[cst.BaseStatement], cst.BaseExpression]]] = {}
            for q in calls:
                stmts, value = self._pasted(idx, q, taken)
                if q.branch is None:
                    self._statement(q, stmts, value, e)
                else:
                    tests.setdefault(id(q.branch), []).append((q, stmts, value))
            for group in tests.values():
                branch = group[0][0].branch
                assert branch is not None
                out = _split(and_operands(branch.test), group, branch.body)
                for stmt in out[:-1]:
                    e.insert_before(branch, stmt)
                e.replace(branch, out[-1].with_changes(leading_lines=branch.leading_lines))
            outer = calls[0].outer
            top = any(stmt is outer for stmt in idx.module.body)  # forward_attr's scope
            then = _Then(
                first=e, function=outer.name.value if top else "", receiver=calls[0].receiver
            )
            return compiles(idx, then)

        names = ", ".join(dict.fromkeys(f"`{q.proc.name}`" for q in calls))
        depth = max(len(enclosing_loops(q.loc)) for q in calls)
        weight = 1.05 + 0.05 * depth + 0.01 * min(len(calls), 10)
        detail = (
            f"{len(calls)} call(s) of {names} on `{calls[0].receiver}`, of known class"
            f" (first: `{short(idx.code(loc.node))}`)"
        )
        return scan.finding(loc, detail, weight, edit)

    def _pasted(
        self, idx: Index, q: _Call, taken: list[str]
    ) -> tuple[list[cst.BaseStatement], cst.BaseExpression]:
        """The method's statements for this call, and the value the call returned."""
        stmts, names = pasted(idx, q.proc, q.args, q.local, taken)
        if q.proc.result is None:
            return stmts, cst.Name("None")
        renamed = _renamed(q.proc.result, names)
        assert isinstance(renamed, cst.BaseExpression)
        return stmts, renamed

    def _statement(
        self, q: _Call, stmts: list[cst.BaseStatement], value: cst.BaseExpression, e: Edit
    ) -> None:
        """The statements before the call's line; the line keeps the value, if it uses it."""
        assert q.line is not None and q.small is not None
        for stmt in stmts:
            e.insert_before(q.line, stmt)
        if isinstance(q.small, cst.Expr):
            if q.proc.result is None or isinstance(value, cst.Name):
                e.remove(q.line)  # the value is dropped; reading a name changes nothing
            else:
                e.replace(q.small, q.small.with_changes(value=value))
        else:
            e.replace(q.small, q.small.with_changes(value=value))


@dataclass
class _Then(Edit):
    """The inlining, then ``forward_attr`` on the same receiver in the code it made.

    Pasting ``set_seq1`` stores ``s.a = x`` where the caller can see it; the reads of
    ``s.a`` the pasted ``quick_ratio`` brings are then ``x`` (:mod:`forward_attr` proves
    it).  Alone that is under 1 % (below any adoption threshold), and it only exists once
    the methods are inlined, so the candidate that exposes the stores forwards them too.
    """

    first: Edit = dataclasses.field(default_factory=Edit)
    function: str = ""
    receiver: str = ""

    def run(self, module: cst.Module, idx: Index | None = None) -> str:
        from evolution.mutators.forward_attr import forwarded  # it builds on this module

        return forwarded(self.first.run(module, idx), self.function, self.receiver)


def _split(
    ops: list[cst.BaseExpression],
    group: Sequence[tuple[_Call, list[cst.BaseStatement], cst.BaseExpression]],
    body: cst.BaseSuite,
) -> list[cst.BaseStatement]:
    """``if ops[0] and …: body`` with each call's statements run where the call would run.

    ``group`` holds the calls in the order of their operands; the first, in operand ``k``,
    splits the chain: ``if ops[:k]:`` (when ``k > 0``), then its statements, then the rest
    of the chain with the call's value in its place (split again at the next call).
    """
    q, stmts, value = group[0]
    k = q.operand
    if not value.lpar:
        value = value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    first = ops[k].deep_replace(q.loc.node, value)
    assert isinstance(first, cst.BaseExpression)
    rest = [first, *ops[k + 1 :]]
    later = [(dataclasses.replace(c, operand=c.operand - k), s, v) for c, s, v in group[1:]]
    inner = _split(rest, later, body) if later else [cst.If(test=joined(rest), body=body)]
    if k == 0:
        return [*stmts, *inner]
    return [cst.If(test=joined(ops[:k]), body=cst.IndentedBlock(body=[*stmts, *inner]))]
