"""A call whose inputs do not change inside a loop gives the same value every iteration.

Computing it once before the innermost loop saves the repeated work.  The rewrite is
offered only for a short list of side-effect-free callees on plain names, evaluated on
every iteration (not under an ``if`` or a short-circuit), whose names the loop neither
rebinds, mutates, aliases nor hands to code that could mutate them.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    COMPS,
    PURE_BUILTINS,
    PURE_METHODS,
    SCOPES,
    Edit,
    Index,
    Located,
    between,
    binding_names,
    block_of,
    enclosing_loops,
    imports_module,
    innermost_scope,
    mutated_roots,
    name_refs,
    pure_call,
    root_name,
    shadowed,
    short,
    statement,
    subtree,
)

#: builtin callee → static weight of hoisting it (O(n) work saved per iteration weighs more)
_BUILTINS = {
    "len": 1.1,
    "sorted": 2.0,
    "set": 1.6,
    "frozenset": 1.6,
    "tuple": 1.4,
    "min": 1.5,
    "max": 1.5,
    "sum": 1.5,
}
_STR_METHODS = frozenset({"lower", "upper", "strip", "split"})


def _callee(idx: Index, call: cst.Call) -> tuple[str, float] | None:
    """``(kind, weight)`` for a hoistable callee: 'builtin', 're', or 'str'."""
    func = call.func
    if isinstance(func, cst.Name) and func.value in _BUILTINS and not shadowed(idx, func.value):
        return "builtin", _BUILTINS[func.value]
    if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name):
        if func.value.value == "re" and func.attr.value == "compile" and imports_module(idx, "re"):
            return "re", 1.6
        if func.attr.value in _STR_METHODS:
            return "str", 1.2
    return None


def _simple_arg(expr: cst.CSTNode) -> bool:
    if isinstance(expr, (cst.Name, cst.SimpleString, cst.Integer, cst.Float)):
        return True
    if isinstance(expr, cst.Attribute):  # flags such as re.IGNORECASE
        return isinstance(expr.value, cst.Name) and expr.value.value == "re"
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.BitOr):
        return _simple_arg(expr.left) and _simple_arg(expr.right)
    return False


def _inputs(call: cst.Call) -> set[str] | None:
    """Names the call reads, or ``None`` if an argument is more than a name or a literal."""
    names: set[str] = set()
    for arg in call.args:
        if arg.star or not _simple_arg(arg.value):
            return None
        names.update(
            n.value for n in subtree(arg.value) if isinstance(n, cst.Name) and n.value != "re"
        )
    func = call.func
    if (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.value.value != "re"
    ):
        names.add(func.value.value)
    return names


def _unconditional(path: list[cst.CSTNode], loop: cst.CSTNode) -> bool:
    """Whether the last node of ``path`` (which starts at ``loop``) runs on every iteration."""
    for p, c in zip(path, path[1:], strict=False):
        if p is loop:
            continue
        if isinstance(p, cst.IndentedBlock) and p is not loop.body:  # type: ignore[attr-defined]
            return False
        if isinstance(p, cst.If) and c is not p.test:
            return False
        if isinstance(p, cst.For) and c is not p.iter:
            return False
        if isinstance(p, (cst.While, cst.With, cst.Try, cst.TryStar, cst.Match)):
            return False
        if isinstance(p, cst.BooleanOperation) and c is p.right:
            return False
        if isinstance(p, cst.IfExp) and c is not p.test:
            return False
        if isinstance(p, (*COMPS, *SCOPES)):
            return False
    return True


def _aliasing_use(ref: cst.Name, parent: cst.CSTNode | None, grand: cst.CSTNode | None) -> bool:
    """Whether this read could let other code reach (and change) the object."""
    if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.NamedExpr, cst.Element, cst.DictElement)):
        return True
    if isinstance(parent, (cst.Yield, cst.Return)):
        return False
    if isinstance(parent, cst.Arg) and isinstance(grand, cst.Call):
        func = grand.func
        if isinstance(func, cst.Name):
            return func.value not in PURE_BUILTINS
        if isinstance(func, cst.Attribute):
            return func.attr.value not in PURE_METHODS
        return True
    return False


def _only_local_effects(idx: Index, loop: cst.CSTNode, fresh_locals: set[str]) -> bool:
    """No call in the loop can reach shared state: pure callees, or methods of fresh locals."""
    for n in subtree(loop):
        if not isinstance(n, cst.Call) or pure_call(idx, n):
            continue
        if isinstance(n.func, cst.Attribute) and root_name(n.func.value) in fresh_locals:
            continue
        return False
    return True


def _fresh_locals(func: cst.FunctionDef) -> set[str]:
    """Locals only ever bound to a new empty container made in this function."""
    made: dict[str, bool] = {}
    for n in subtree(func.body):
        if isinstance(n, cst.Assign):
            for t in n.targets:
                if isinstance(t.target, cst.Name):
                    fresh = isinstance(n.value, (cst.List, cst.Dict, cst.Set, *COMPS)) or (
                        isinstance(n.value, cst.Call)
                        and isinstance(n.value.func, cst.Name)
                        and n.value.func.value in ("list", "dict", "set")
                    )
                    made[t.target.value] = made.get(t.target.value, True) and fresh
    once = {name for name in made if binding_names(func).count(name) == 1}
    return {name for name, ok in made.items() if ok and name in once}


class HoistInvariant(CstMutator):
    name = "hoist_invariant"
    risk = 0.25
    kinds = (cst.Call,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        call = loc.node
        assert isinstance(call, cst.Call)
        found = self._one(scan, loc, call)
        # the same call twice in one loop is hoisted once (the rewrite replaces both)
        if found is not None and scan.first((id(found[0]), scan.idx.code(call))):
            yield found[1]

    def _one(self, scan: Scan, loc: Located, call: cst.Call) -> tuple[cst.CSTNode, Finding] | None:
        idx = scan.idx
        callee = _callee(idx, call)
        names = _inputs(call)
        if callee is None or names is None:
            return None
        kind, weight = callee
        bounded = any(a.keyword is not None and a.keyword.value == "default" for a in call.args)
        if isinstance(call.func, cst.Name) and call.func.value in ("min", "max") and not bounded:
            return None  # min()/max() of an empty input raises; the loop might never run
        loops = enclosing_loops(loc)
        func = innermost_scope(loc.parents)
        if (
            not loops
            or not isinstance(loops[0], (cst.For, cst.While))
            or not isinstance(func, cst.FunctionDef)
        ):
            return None
        loop = loops[0]
        if block_of(idx.at(loop)) is None or not _unconditional(between(loc, loop), loop):
            return None
        if names & (set(binding_names(loop)) | mutated_roots(loop)):
            return None
        for ref, parent in name_refs(loop):
            if ref.value in names:
                grand = idx.at(parent).parent if parent is not None else None
                if _aliasing_use(ref, parent, grand):
                    return None
        if kind == "builtin" and not _only_local_effects(idx, loop, _fresh_locals(func) - names):
            return None
        return loop, self._finding(scan, loc, call, loop, weight)

    def _finding(
        self, scan: Scan, loc: Located, call: cst.Call, loop: cst.CSTNode, weight: float
    ) -> Finding:
        idx = scan.idx

        def edit() -> Edit:
            n = 0
            while f"_hoisted_{n}" in idx.all_names:
                n += 1
            alias = f"_hoisted_{n}"
            e = Edit().insert_before(loop, statement(f"{alias} = {idx.code(call)}"))
            for other in subtree(loop):
                if not (isinstance(other, cst.Call) and other.deep_equals(call)):
                    continue
                if not any(
                    isinstance(p, (*COMPS, *SCOPES)) for p in between(idx.at(other), loop)[1:-1]
                ):
                    e.replace(other, cst.Name(alias, lpar=other.lpar, rpar=other.rpar))
            return e

        loop_line = idx.at(loop).line
        detail = f"`{short(idx.code(call))}` is recomputed on every iteration of the loop at line {loop_line}"
        return scan.finding(loc, detail, weight, edit)
