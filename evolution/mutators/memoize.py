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
    PURE_BUILTINS,
    PURE_METHODS,
    Edit,
    Index,
    Located,
    add_import,
    binding_names,
    can_import,
    enclosing_loops,
    is_constant,
    mutated_roots,
    name_refs,
    root_name,
    subtree,
)

#: standard modules whose functions neither do I/O nor keep state between calls
_PURE_MODULES = frozenset(
    {"math", "cmath", "re", "string", "operator", "statistics", "unicodedata", "json"}
)
#: functions that are pure when imported by name (``from urllib.parse import unquote``)
_PURE_FROM_IMPORTS = frozenset(
    {
        ("urllib.parse", n)
        for n in ("unquote", "unquote_plus", "quote", "quote_plus", "urlsplit", "urlparse")
    }
    | {
        ("math", n)
        for n in ("sqrt", "log", "log2", "log10", "exp", "floor", "ceil", "isclose", "fabs", "gcd")
    }
    | {("unicodedata", n) for n in ("normalize", "category", "name")}
    | {("os.path", n) for n in ("splitext", "basename", "dirname", "normpath", "join")}
)
#: callees whose result is immutable (or shared already without the cache)
_IMMUTABLE_CALLS = frozenset(
    {
        "len",
        "int",
        "float",
        "str",
        "bool",
        "abs",
        "round",
        "min",
        "max",
        "sum",
        "tuple",
        "frozenset",
        "ord",
        "chr",
        "hash",
        "repr",
        "divmod",
        "pow",
        "hex",
        "bin",
        "oct",
        "format",
        "isinstance",
    }
)
#: methods returning a str, bool or int
_IMMUTABLE_METHODS = frozenset(
    {
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "replace",
        "join",
        "format",
        "casefold",
        "title",
        "capitalize",
        "zfill",
        "ljust",
        "rjust",
        "center",
        "startswith",
        "endswith",
        "find",
        "rfind",
        "count",
        "index",
        "rindex",
        "isdigit",
        "isalpha",
        "isalnum",
        "isspace",
        "isupper",
        "islower",
        "isnumeric",
        "isdecimal",
        "encode",
        "decode",
        "removeprefix",
        "removesuffix",
        "get",
        "group",
    }
)
#: calls and methods that suggest their argument is a container
_CONTAINER_READERS = frozenset(
    {
        "len",
        "sorted",
        "sum",
        "min",
        "max",
        "list",
        "tuple",
        "set",
        "frozenset",
        "dict",
        "enumerate",
        "zip",
        "any",
        "all",
        "iter",
        "reversed",
        "map",
        "filter",
    }
)
_CONTAINER_METHODS = frozenset({"get", "keys", "values", "items", "copy"})
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
                                and (module, alias.name.value) in _PURE_FROM_IMPORTS
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


class _Judge:
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
        return owner in self.facts.imports and owner in _PURE_MODULES

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
                and grand.func.value in _CONTAINER_READERS
            ):
                return False
            if isinstance(parent, cst.Attribute) and parent.attr.value in _CONTAINER_METHODS:
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
                return func.value in _IMMUTABLE_CALLS or func.value in self.facts.defs
            return isinstance(func, cst.Attribute) and func.attr.value in _IMMUTABLE_METHODS
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

    judge: _Judge
    hot: set[str]


def _survey(idx: Index) -> _Survey:
    judge = _Judge(idx)
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
