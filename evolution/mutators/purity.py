"""Whether a top-level function is pure enough to cache: the judge behind :mod:`memoize`.

``functools.lru_cache`` is only safe when the result depends on the arguments alone and
nothing else observes the call: the function reads no changing global state, calls
nothing impure, changes none of its arguments, and returns values callers cannot mutate.
The judge answers per function from the module's own text, and says no when unsure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.cst_tools import (
    Index,
    binding_names,
    is_constant,
    mutated_roots,
    name_refs,
    root_name,
    subtree,
)
from evolution.mutators.pure_calls import (
    CONTAINER_METHODS,
    CONTAINER_READERS,
    IMMUTABLE_CALLS,
    IMMUTABLE_METHODS,
    PURE_BUILTINS,
    PURE_FROM_IMPORTS,
    PURE_METHODS,
    PURE_MODULES,
)

_MUTABLE_MAKERS = (cst.List, cst.Dict, cst.Set, cst.ListComp, cst.DictComp, cst.SetComp)


@dataclass(frozen=True)
class _Module:
    """What the module binds at top level, for judging a function's reads and calls."""

    defs: dict[str, cst.FunctionDef]
    imports: frozenset[str]
    constants: frozenset[str]
    classes: frozenset[str]
    pure_imported: frozenset[str] = frozenset()


def _facts(idx: Index) -> _Module:
    defs: dict[str, cst.FunctionDef] = {}
    imports: set[str] = set()
    pure_imported: set[str] = set()
    assigned: set[str] = set()
    classes: set[str] = set()
    for stmt in idx.module.body:
        if isinstance(stmt, cst.FunctionDef):
            defs[stmt.name.value] = stmt
        elif isinstance(stmt, cst.ClassDef):
            classes.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, (cst.Import, cst.ImportFrom)):
                    imports.update(binding_names(small))
                    if isinstance(small, cst.ImportFrom) and not isinstance(
                        small.names, cst.ImportStar
                    ):
                        module = _dotted(small.module) if small.module is not None else ""
                        for alias in small.names:
                            if (
                                alias.asname is None
                                and isinstance(alias.name, cst.Name)
                                and (module, alias.name.value) in PURE_FROM_IMPORTS
                            ):
                                pure_imported.add(alias.name.value)
                elif isinstance(small, (cst.Assign, cst.AnnAssign)):
                    assigned.update(binding_names(small))
    changed = mutated_roots(idx.module)
    constants = {n for n in assigned if idx.module_bindings.get(n, 0) == 1 and n not in changed}
    return _Module(
        defs, frozenset(imports), frozenset(constants), frozenset(classes), frozenset(pure_imported)
    )


def _dotted(node: cst.CSTNode) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _makes_container(value: cst.CSTNode) -> bool:
    return isinstance(value, _MUTABLE_MAKERS) or (
        isinstance(value, cst.Call)
        and isinstance(value.func, cst.Name)
        and value.func.value in ("list", "dict", "set", "bytearray")
    )


class PurityJudge:
    """Decides purity of one module's top-level functions (memoised, cycles count as pure)."""

    def __init__(self, idx: Index) -> None:
        self.idx = idx
        self.facts = _facts(idx)
        self.verdicts: dict[str, bool] = {}

    def pure(self, name: str) -> bool:
        if name not in self.verdicts:
            self.verdicts[name] = True  # optimistic while in progress: recursion is fine
            self.verdicts[name] = self._pure(self.facts.defs[name])
        return self.verdicts[name]

    def _pure(self, f: cst.FunctionDef) -> bool:
        if (
            f.asynchronous is not None
            or f.decorators
            or self.idx.module_bindings.get(f.name.value, 0) != 1
        ):
            return False
        params = [*f.params.posonly_params, *f.params.params, *f.params.kwonly_params]
        for p in params:
            if p.default is not None and not _constant_default(p.default):
                return False
        pnames = set(binding_names(f.params))
        body = list(subtree(f.body))
        banned = (
            cst.Global,
            cst.Nonlocal,
            cst.Yield,
            cst.Await,
            cst.FunctionDef,
            cst.ClassDef,
            cst.Lambda,
        )
        if any(isinstance(n, banned) for n in body):
            return False
        local = set(binding_names(f.body))
        # Rebinding a parameter (``path = path.strip()``) changes no caller's object; it
        # is only never taken for a fresh container, since it may still be the caller's.
        fresh = _fresh(f, local) - pnames
        local -= pnames
        return (
            self._stores_ok(body, fresh)
            and all(self._call_ok(n, pnames, local, fresh) for n in body if isinstance(n, cst.Call))
            and self._reads_ok(f, pnames, local)
            and self._params_scalar(f, pnames)
            and self._returns_ok(f, body, pnames, local, fresh)
        )

    def _stores_ok(self, body: list[cst.CSTNode], fresh: set[str]) -> bool:
        for n in body:
            targets: list[cst.CSTNode] = []
            if isinstance(n, cst.Assign):
                targets = [t.target for t in n.targets]
            elif isinstance(n, (cst.AugAssign, cst.AnnAssign, cst.Del, cst.For, cst.CompFor)):
                targets = [n.target]
            for t in targets:
                for part in subtree(t):
                    if (
                        isinstance(part, (cst.Attribute, cst.Subscript))
                        and root_name(part) not in fresh
                    ):
                        return False
        return True

    def _call_ok(self, call: cst.Call, pnames: set[str], local: set[str], fresh: set[str]) -> bool:
        func = call.func
        if isinstance(func, cst.Name):
            name = func.value
            if name in pnames or name in local:
                return False
            if name in self.facts.defs:
                return self.pure(name)
            if name in self.facts.pure_imported:
                return True
            if self.idx.module_bindings.get(name, 0):
                return False
            return name in PURE_BUILTINS
        if not isinstance(func, cst.Attribute):
            return False
        method = func.attr.value
        receiver = func.value
        if not isinstance(receiver, cst.Name):
            return method in PURE_METHODS
        owner = receiver.value
        if owner in fresh:
            return True
        if owner in pnames or owner in local or owner in self.facts.constants:
            return method in PURE_METHODS
        return owner in self.facts.imports and owner in PURE_MODULES

    def _params_scalar(self, f: cst.FunctionDef, pnames: set[str]) -> bool:
        """No parameter is used like a container: lists and dicts are unhashable cache keys."""
        for ref, parent in name_refs(f.body):
            if ref.value not in pnames or parent is None:
                continue
            grand = self.idx.at(parent).parent
            if isinstance(parent, (cst.Subscript, cst.StarredElement)) and parent.value is ref:
                return False
            if isinstance(parent, (cst.For, cst.CompFor)) and parent.iter is ref:
                return False
            if isinstance(parent, cst.ComparisonTarget) and isinstance(
                parent.operator, (cst.In, cst.NotIn)
            ):
                return False
            if (
                isinstance(parent, cst.Arg)
                and isinstance(grand, cst.Call)
                and isinstance(grand.func, cst.Name)
                and grand.func.value in CONTAINER_READERS
            ):
                return False
            if isinstance(parent, cst.Attribute) and parent.attr.value in CONTAINER_METHODS:
                return False
        return True

    def _reads_ok(self, f: cst.FunctionDef, pnames: set[str], local: set[str]) -> bool:
        """Globals read must never change; parameters' attributes (object state) are not read."""
        allowed = (
            self.facts.constants | self.facts.imports | self.facts.classes | set(self.facts.defs)
        )
        for ref, parent in name_refs(f.body):
            name = ref.value
            if name in pnames:
                if isinstance(parent, cst.Attribute) and parent.value is ref:
                    grand = self.idx.at(parent).parent
                    if not (isinstance(grand, cst.Call) and grand.func is parent):
                        return False
                continue
            if name in local:
                continue
            if self.idx.module_bindings.get(name, 0) and name not in allowed:
                return False
        return True

    def _returns_ok(
        self,
        f: cst.FunctionDef,
        body: list[cst.CSTNode],
        pnames: set[str],
        local: set[str],
        fresh: set[str],
    ) -> bool:
        returns = [n for n in body if isinstance(n, cst.Return)]
        if not returns or any(r.value is None for r in returns):
            return False
        return all(
            r.value is not None and self._immutable(r.value, f, pnames, local, fresh, 0)
            for r in returns
        )

    def _immutable(
        self,
        e: cst.CSTNode,
        f: cst.FunctionDef,
        pnames: set[str],
        local: set[str],
        fresh: set[str],
        depth: int,
    ) -> bool:
        if depth > 4:
            return False

        def again(x: cst.CSTNode) -> bool:
            return self._immutable(x, f, pnames, local, fresh, depth + 1)

        if is_constant(e) or isinstance(e, (cst.FormattedString, cst.Comparison)):
            return True
        if isinstance(e, cst.Name):
            if e.value in pnames or e.value not in local:
                return True
            return e.value not in fresh and self._local_immutable(e.value, f, again)
        if isinstance(e, cst.BinaryOperation):
            return again(e.left) and again(e.right)
        if isinstance(e, cst.UnaryOperation):
            return again(e.expression)
        if isinstance(e, cst.BooleanOperation):
            return again(e.left) and again(e.right)
        if isinstance(e, cst.IfExp):
            return again(e.body) and again(e.orelse)
        if isinstance(e, cst.Tuple):
            return all(again(el.value) for el in e.elements)
        if isinstance(e, cst.Subscript):
            root = root_name(e)
            return root is not None and (root in pnames or root in self.facts.constants)
        if isinstance(e, cst.Call):
            func = e.func
            if isinstance(func, cst.Name):
                return func.value in IMMUTABLE_CALLS or func.value in self.facts.defs
            return isinstance(func, cst.Attribute) and func.attr.value in IMMUTABLE_METHODS
        if isinstance(e, cst.Attribute):
            return root_name(e) in self.facts.imports
        return False

    def _local_immutable(
        self, name: str, f: cst.FunctionDef, check: Callable[[cst.CSTNode], bool]
    ) -> bool:
        for n in subtree(f.body):
            if isinstance(n, cst.Assign) and any(name in binding_names(t) for t in n.targets):
                if not all(isinstance(t.target, cst.Name) for t in n.targets) or not check(n.value):
                    return False
            elif (
                isinstance(n, cst.AugAssign)
                and isinstance(n.target, cst.Name)
                and n.target.value == name
            ):
                if not check(n.value):
                    return False
            elif isinstance(
                n, (cst.AnnAssign, cst.NamedExpr, cst.AsName, cst.Del)
            ) and name in binding_names(n):
                return False
        return True


def _constant_default(expr: cst.CSTNode) -> bool:
    if isinstance(expr, cst.Tuple):
        return all(_constant_default(el.value) for el in expr.elements)
    return is_constant(expr)


def _fresh(f: cst.FunctionDef, local: set[str]) -> set[str]:
    """Locals that only ever hold a container made in this call."""
    fresh = set(local)
    for n in subtree(f.body):
        if isinstance(n, cst.Assign):
            for t in n.targets:
                for name in binding_names(t):
                    if not _makes_container(n.value):
                        fresh.discard(name)
        elif isinstance(
            n, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.NamedExpr, cst.AsName)
        ):
            for name in target_names_of(n):
                fresh.discard(name)
    return fresh


def target_names_of(n: cst.CSTNode) -> list[str]:
    if isinstance(n, cst.AsName):
        return binding_names(n)
    target = getattr(n, "target", None)
    return binding_names(target) if isinstance(target, cst.CSTNode) else []
