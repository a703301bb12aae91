"""``any([...])`` builds the whole list before looking at it; ``any(...)`` stops at the answer.

The generator form gives the same truth value; it only skips evaluating the elements
after the deciding one, so the comprehension may call nothing that has side effects
(only pure builtins and read-only methods are accepted) and must not use ``:=``.
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
    pure_call,
    shadowed,
    short,
    subtree,
)


def _side_effect_free(idx: Index, comp: cst.ListComp) -> bool:
    if contains(comp, (cst.NamedExpr, cst.Yield, cst.Await)):
        return False
    return all(pure_call(idx, n) for n in subtree(comp) if isinstance(n, cst.Call))


class AnyAllGenerator(CstMutator):
    name = "any_all_generator"
    risk = 0.1
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, call = scan.idx, loc.node
        if not (
            isinstance(call, cst.Call)
            and isinstance(call.func, cst.Name)
            and call.func.value in ("any", "all")
            and not shadowed(idx, call.func.value)
            and len(call.args) == 1
            and call.args[0].keyword is None
            and not call.args[0].star
        ):
            return
        comp = call.args[0].value
        if not isinstance(comp, cst.ListComp) or comp.lpar or not _side_effect_free(idx, comp):
            return
        arg = call.args[0]

        def edit() -> Edit:
            gen = cst.GeneratorExp(elt=comp.elt, for_in=comp.for_in, lpar=[], rpar=[])
            return Edit().replace(arg, arg.with_changes(value=gen, comma=cst.MaybeSentinel.DEFAULT))

        detail = f"`{short(idx.code(call))}` builds a list before testing it"
        yield scan.finding(loc, detail, 1.3, edit)
