"""A generator expression fed to a consumer that takes every element is slower than a list.

On CPython 3.11 ``tuple(x for x in xs)``, ``"".join(x for x in xs)``, ``set(...)`` and
``sum(...)`` pay for a generator frame resumed once per element; the list (or set)
comprehension runs the same loop inline.  Measured with ``timeit`` on 3.11: ``tuple`` and
``"".join`` of a list comprehension take 0.5-0.6x the time of the generator form, a set
comprehension 0.7x, ``sum`` of a list 0.7-0.9x.

Why the forms are equal:

- ``"".join`` turns any iterable into a list before it joins, and ``tuple``/``list``/``set``
  build a container of every element, so the elements are computed in the same order
  with the same interleaving and the result is the same object type;
- ``set(genexpr)`` and a set comprehension add each element as it is made, in order;
- ``sum`` adds each element as it comes; over a list it adds them after all are made.
  The two orders are indistinguishable only if making an element has no side effect,
  so ``sum`` is rewritten only when the comprehension calls nothing but pure builtins
  and read-only methods (and has no ``:=``, ``yield`` or ``await``) once its first
  iterable, evaluated before any element in both forms, is made.

``any``/``all``/``min``/``max``/``next`` are left alone: ``any``/``all``/``next`` stop early,
and a list would evaluate the elements after the deciding one.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    contains,
    innermost_scope,
    pure_call,
    shadowed,
    short,
    subtree,
)

#: consumer → (form it takes, static weight from the 3.11 timings above)
_BUILTINS = {"tuple": ("list", 1.3), "list": ("listcomp", 1.2), "set": ("setcomp", 1.2)}
_SUM = ("list", 1.1)


def _pure(idx: Index, gen: cst.GeneratorExp) -> bool:
    """Making an element changes nothing another element (or ``__add__``) could see."""
    if contains(gen, (cst.NamedExpr, cst.Yield, cst.Await, cst.Lambda)):
        return False
    # the first iterable is evaluated once, before any element: it may call anything
    first = set(map(id, subtree(gen.for_in.iter)))
    return all(
        pure_call(idx, n) for n in subtree(gen) if isinstance(n, cst.Call) and id(n) not in first
    )


def _consumer(idx: Index, call: cst.Call) -> tuple[str, float] | None:
    """The form the generator becomes and its weight, or ``None`` for another consumer."""
    func = call.func
    if isinstance(func, cst.Name) and not shadowed(idx, func.value):
        if func.value in _BUILTINS:
            return _BUILTINS[func.value]
        if func.value == "sum":
            return _SUM
    if (
        isinstance(func, cst.Attribute)
        and func.attr.value == "join"
        and isinstance(func.value, (cst.SimpleString, cst.ConcatenatedString))
    ):
        return "list", 1.3
    return None


def _new_call(call: cst.Call, gen: cst.GeneratorExp, form: str) -> cst.BaseExpression:
    if form == "listcomp":  # list(genexpr) is the comprehension itself
        return cst.ListComp(elt=gen.elt, for_in=gen.for_in, lpar=call.lpar, rpar=call.rpar)
    if form == "setcomp":
        return cst.SetComp(elt=gen.elt, for_in=gen.for_in, lpar=call.lpar, rpar=call.rpar)
    comp = cst.ListComp(elt=gen.elt, for_in=gen.for_in)
    arg = call.args[0].with_changes(value=comp, comma=cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=[arg])


class GenexprForms(CstMutator):
    name = "genexpr_forms"
    risk = 0.1
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, call = scan.idx, loc.node
        if not (
            isinstance(call, cst.Call)
            and len(call.args) == 1
            and call.args[0].keyword is None
            and not call.args[0].star
            and isinstance(call.args[0].value, cst.GeneratorExp)
            and innermost_scope(loc.parents) is not None  # module level runs once
        ):
            return
        gen = call.args[0].value
        found = _consumer(idx, call)
        if found is None:
            return
        form, weight = found
        if isinstance(call.func, cst.Name) and call.func.value == "sum" and not _pure(idx, gen):
            return

        def edit() -> Edit:
            return Edit().replace(call, _new_call(call, gen, form))

        detail = f"`{short(idx.code(call))}` resumes a generator per element"
        yield scan.finding(loc, detail, weight, edit)
