"""A pure function called again with the same arguments can answer from a cache.

``functools.lru_cache`` is only safe when the result depends on the arguments alone and
nothing else observes the call: so the function must read no changing global state, call
nothing impure, change none of its arguments, and return values callers cannot mutate
(a cached list would be shared between callers).  When any of that is unclear, it is not
reported.  Arguments must also be hashable at run time; the incubator's tests catch that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    add_import,
    can_import,
    enclosing_loops,
    subtree,
)
from evolution.mutators.purity import PurityJudge


def _statements(f: cst.FunctionDef) -> int:
    return sum(
        len(n.body) if isinstance(n, cst.SimpleStatementLine) else 1
        for n in subtree(f.body)
        if isinstance(n, (cst.SimpleStatementLine, cst.BaseCompoundStatement))
    )


def _hot(idx: Index, defs: dict[str, cst.FunctionDef]) -> set[str]:
    """Names called in a loop, or by a top-level function that is.

    ``normalise_record(rec)`` called per line makes the helpers it calls just as hot.
    """
    in_loop: set[str] = set()
    for loc in idx.nodes:
        call = loc.node
        if isinstance(call, cst.Call) and isinstance(call.func, cst.Name) and enclosing_loops(loc):
            in_loop.add(call.func.value)
    callees = {
        name: {
            n.func.value
            for n in subtree(f.body)
            if isinstance(n, cst.Call) and isinstance(n.func, cst.Name)
        }
        for name, f in defs.items()
    }
    frontier = [n for n in in_loop if n in callees]
    while frontier:
        for callee in callees[frontier.pop()]:
            if callee in callees and callee not in in_loop:
                in_loop.add(callee)
                frontier.append(callee)
    return in_loop


@dataclass(frozen=True)
class _Survey:
    """What one scan of a module learns once: who is pure, who is hot."""

    judge: PurityJudge
    hot: set[str]


def _survey(idx: Index) -> _Survey:
    judge = PurityJudge(idx)
    return _Survey(judge, _hot(idx, judge.facts.defs))


class Memoize(CstMutator):
    name = "memoize"
    risk = 0.5
    kinds = (cst.FunctionDef,)

    def applies(self, idx: Index) -> bool:
        return can_import(idx, "functools")

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        f = loc.node
        assert isinstance(f, cst.FunctionDef)
        survey = scan.derived(_survey)
        judge = survey.judge
        name = f.name.value
        if loc.parent is not scan.idx.module or judge.facts.defs.get(name) is not f:
            return  # only the module's own top-level functions (the judge knows no others)
        recursive = any(
            isinstance(n, cst.Call) and isinstance(n.func, cst.Name) and n.func.value == name
            for n in subtree(f.body)
        )
        if not (recursive or name in survey.hot) or not judge.pure(name):
            return
        stmts = _statements(f)
        weight = 1.2 + 0.1 * min(stmts, 10) + (1.5 if recursive else 0.0)
        why = "recursive" if recursive else "called (directly or through its callers) in a loop"
        detail = f"`{name}` is pure and {why}; {stmts} statement(s) per call"
        yield scan.finding(loc, detail, weight, self._edit(scan.idx, f), function=name)

    def _edit(self, idx: Index, f: cst.FunctionDef) -> Callable[[], Edit | None]:
        def edit() -> Edit | None:
            e = Edit()
            if not add_import(idx, e, "functools"):
                return None
            decorator = cst.Decorator(cst.parse_expression("functools.lru_cache(maxsize=None)"))
            return e.replace(f, f.with_changes(decorators=[decorator]))

        return edit
