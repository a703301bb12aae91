"""A call to a one-expression function costs a frame; the expression itself does not.

``f(a, 1)`` where ``def f(x, y): return x * y + 1`` becomes ``(a * (1) + 1)``: the
parameters are replaced by the arguments.  That is the same computation when

- ``f`` is what the name means at the call: a top-level ``def`` without decorators, bound
  once in the module (no other ``def``/assignment/import/``global`` of the name), so the
  module itself never rebinds it;
- every argument is a constant or a local name of the caller: reading either twice, or
  later, gives the same value (nothing in the expression can rebind a caller's local;
  callers whose nested functions declare ``nonlocal`` are declined), and every
  parameter passed a name is read at least once, so no read that could fail is dropped;
- the other names the expression reads (the module's globals and builtins) are not bound
  anywhere in the calling function, so they mean at the call what they meant in ``f``.

Methods: ``self.m(...)`` inside another method of the same class ``C`` is inlined when
``m`` is a plain method of ``C`` defined once in its body, no attribute named ``m`` is
assigned anywhere in the module (an instance attribute would shadow it), ``C`` has no
metaclass and no ``__getattribute__``/``__getattr__``, and **no class in the module
derives from** ``C``.  The guard cannot see subclasses in other modules: a subclass
elsewhere that overrides ``m`` would see ``C``'s version at these call sites.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    binding_names,
    enclosing_loops,
    innermost_scope,
    short,
    subtree,
)
from evolution.mutators.inline_callee import Callee
from evolution.mutators.inline_plan import Plan, bind, inlined, plan
from evolution.mutators.inline_scope import (
    class_callees,
    instance_class,
    module_callees,
    outer_function,
    self_method,
)


class InlineCall(CstMutator):
    name = "inline_call"
    risk = 0.3
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        first = self._qualify(scan, loc)
        if first is None or not scan.first(("inline_call", id(first[0]))):
            return
        # one candidate inlines every call of the function that qualifies: each saves a
        # frame, and alone one site rarely moves a whole benchmark
        sites = [
            found
            for other in scan.idx.nodes
            if isinstance(other.node, cst.Call)
            and (found := self._qualify(scan, other)) is not None
            and found[0] is first[0]
        ]
        yield self._finding(scan, loc, sites)

    def _qualify(self, scan: Scan, loc: Located) -> tuple[Callee, Plan, cst.Call, Located] | None:
        """The function a call can be replaced by, and how, or ``None``."""
        idx, call = scan.idx, loc.node
        if not isinstance(call, cst.Call):
            return None
        outer = outer_function(loc)
        if outer is None or not isinstance(innermost_scope(loc.parents), cst.FunctionDef):
            return None  # a class body or lambda scopes names its own way
        found = self._callee(scan, loc, call)
        if found is None:
            return None
        fn, skip_first, caller_self = found
        bound = bind(call, fn, skip_first)
        locals_ = set(binding_names(outer))
        if bound is None or fn.free & locals_:
            return None
        if caller_self is not None:
            bound[fn.positional[0]] = cst.Name(caller_self)
        if any(isinstance(n, (cst.Nonlocal, cst.Global)) for n in subtree(outer)):
            return None  # a name passed in could be rebound behind the expression's back
        how = plan(idx, loc, fn, bound, locals_)
        return None if how is None else (fn, how, call, loc)

    def _callee(
        self, scan: Scan, loc: Located, call: cst.Call
    ) -> tuple[Callee, bool, str | None] | None:
        """The function called, whether its first parameter is the receiver, and the receiver."""
        idx = scan.idx
        func = call.func
        if isinstance(func, cst.Name):
            fn = scan.derived(module_callees).get(func.value)
            if fn is None or any(n.name.value == func.value for n in _defs_around(loc)):
                return None  # a recursive call stays a call
            return fn, False, None
        if not (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)):
            return None
        receiver = func.value.value
        cls = self._receiver_class(idx, loc, receiver)
        if cls is None:
            return None
        fn = class_callees(idx, cls).get(func.attr.value)
        if (
            fn is None
            or not fn.positional
            or any(n.name.value == fn.name for n in _defs_around(loc))
        ):
            return None
        return fn, True, receiver

    def _receiver_class(self, idx: Index, loc: Located, receiver: str) -> cst.ClassDef | None:
        """The class ``receiver`` is an instance of: ``self`` in a method, or ``x = C(...)``."""
        method = self_method(idx, loc)
        if method is not None and method[1] == receiver:
            cls, _, method_def = method
            return None if receiver in binding_names(method_def.body) else cls
        func = innermost_scope(loc.parents)
        if not isinstance(func, cst.FunctionDef) or func is not outer_function(loc):
            return None  # only in a top-level function (or method): no closure in between
        return instance_class(idx, func, receiver)

    def _finding(
        self, scan: Scan, loc: Located, sites: list[tuple[Callee, Plan, cst.Call, Located]]
    ) -> Finding:
        idx = scan.idx
        fn = sites[0][0]

        def edit() -> Edit:
            e = Edit()
            for _, how, call, _ in sites:
                e.replace(call, inlined(fn, how, call))
            return e

        loops = max(len(enclosing_loops(site[3])) for site in sites)
        weight = (1.15 if loops else 1.05) + 0.01 * min(len(sites) - 1, 10)
        detail = (
            f"{len(sites)} call(s) of `{fn.name}`, one expression, each through a frame"
            f" (first: `{short(idx.code(sites[0][2]))}`)"
        )
        return scan.finding(loc, detail, weight, edit)


def _defs_around(loc: Located) -> list[cst.FunctionDef]:
    return [p for p in loc.parents if isinstance(p, cst.FunctionDef)]
