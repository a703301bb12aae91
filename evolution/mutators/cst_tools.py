"""libcst plumbing shared by the mutators: where a node sits, what a region binds, how to splice.

The mutators work on libcst rather than :mod:`ast` because a concrete tree prints back
byte-for-byte, so comments and layout survive everywhere a rewrite does not touch.
Nodes are addressed by identity (``id``) inside one parsed module; the module is immutable
and cached per source text, so a scan and the edit built from it see the same nodes.

Cost: a version's files are parsed once (``index`` is cached per source text), each
mutator's findings are kept on the :class:`Index` (the analyzer's scan and the
generator's ``apply`` on the same version share them), and an :class:`Edit` rebuilds only
the path from the module down to the nodes it changes instead of re-visiting every node.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

LOOPS: tuple[type[cst.CSTNode], ...] = (cst.For, cst.While)
COMPS: tuple[type[cst.CSTNode], ...] = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
SCOPES: tuple[type[cst.CSTNode], ...] = (cst.FunctionDef, cst.Lambda, cst.ClassDef)

#: builtins that only read their arguments and return a fresh value
PURE_BUILTINS = frozenset(
    {
        "abs",
        "all",
        "any",
        "bool",
        "chr",
        "divmod",
        "enumerate",
        "float",
        "format",
        "frozenset",
        "hash",
        "int",
        "isinstance",
        "len",
        "list",
        "max",
        "min",
        "ord",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
        "dict",
        "bin",
        "hex",
        "oct",
        "issubclass",
    }
)

#: methods that read their receiver and never change it (str, dict reads, re patterns/matches)
PURE_METHODS = frozenset(
    {
        "lower",
        "upper",
        "strip",
        "lstrip",
        "rstrip",
        "split",
        "rsplit",
        "splitlines",
        "startswith",
        "endswith",
        "find",
        "rfind",
        "index",
        "rindex",
        "count",
        "replace",
        "join",
        "isdigit",
        "isalpha",
        "isalnum",
        "isspace",
        "isupper",
        "islower",
        "isnumeric",
        "isdecimal",
        "format",
        "encode",
        "decode",
        "partition",
        "rpartition",
        "casefold",
        "title",
        "capitalize",
        "zfill",
        "ljust",
        "rjust",
        "center",
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "group",
        "groups",
        "groupdict",
        "start",
        "end",
        "span",
        "match",
        "search",
        "fullmatch",
        "findall",
        "finditer",
        "sub",
        "subn",
        "removeprefix",
        "removesuffix",
        "expandtabs",
        "translate",
        # bisect's searches read their list and change nothing (its insort* mutate: not here)
        "bisect_left",
        "bisect_right",
    }
)


@dataclass(frozen=True, eq=False)
class Located:
    """A node with its ancestors (outermost first) and its first source line."""

    node: cst.CSTNode
    parents: tuple[cst.CSTNode, ...]
    line: int

    @property
    def chain(self) -> tuple[cst.CSTNode, ...]:
        return (*self.parents, self.node)

    @property
    def parent(self) -> cst.CSTNode | None:
        return self.parents[-1] if self.parents else None


@dataclass(frozen=True, eq=False)
class Index:
    """One parsed module and every node in it, in source order.

    ``memo`` holds what is derived from this module alone (each mutator's findings, the
    text of a rewrite already made), so it lives exactly as long as the parse it is about.
    """

    module: cst.Module
    nodes: tuple[Located, ...]
    by_id: Mapping[int, Located]
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def at(self, node: cst.CSTNode) -> Located:
        return self.by_id[id(node)]

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    @functools.cached_property
    def module_bindings(self) -> dict[str, int]:
        """How many times each name is bound anywhere in the module (any scope)."""
        counts: dict[str, int] = {}
        for name in binding_names(self.module):
            counts[name] = counts.get(name, 0) + 1
        return counts

    @functools.cached_property
    def all_names(self) -> frozenset[str]:
        return frozenset(n.node.value for n in self.nodes if isinstance(n.node, cst.Name))

    def fresh(self, base: str, taken: Iterable[str] = ()) -> str:
        """A name not used anywhere in the module (nor in ``taken``)."""
        used = self.all_names | set(taken)
        if base not in used:
            return base
        n = 2
        while f"{base}_{n}" in used:
            n += 1
        return f"{base}_{n}"


@functools.lru_cache(maxsize=1 << 16)
def children(node: cst.CSTNode) -> tuple[cst.CSTNode, ...]:
    """``node.children``, remembered: libcst rebuilds the node to list them (tens of µs).

    Nodes are immutable and hash by identity, so the answer per node never changes;
    ``index`` fills the cache for every node of a module, and every later walk of that
    module (``subtree``, ``name_refs``, each mutator's scan) reads it from here.
    """
    return tuple(node.children)


@functools.lru_cache(maxsize=64)
def index(source: str) -> Index | None:
    """Parse once per source text; ``None`` when libcst (or Python) cannot parse it."""
    try:
        compile(source, "<genome>", "exec", dont_inherit=True)
        module = cst.parse_module(source)
    except (SyntaxError, ValueError, cst.ParserSyntaxError):
        return None
    positions = _positions(module)
    out: list[Located] = []
    stack: list[tuple[cst.CSTNode, tuple[cst.CSTNode, ...]]] = [(module, ())]
    while stack:
        node, parents = stack.pop()
        pos = positions.get(node)
        out.append(Located(node, parents, pos.start.line if pos is not None else 0))
        below = (*parents, node)
        stack.extend((child, below) for child in reversed(children(node)))
    return Index(module, tuple(out), {id(loc.node): loc for loc in out})


def _positions(module: cst.Module) -> Mapping[cst.CSTNode, CodeRange]:
    """Every node's source range.

    ``MetadataWrapper.resolve`` would also run an empty batched visit of every node after
    the provider's own code-generation pass (a third of ``index``); the provider alone
    gives the same ranges.
    """
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    try:
        return cast(Mapping[cst.CSTNode, CodeRange], PositionProvider()._gen(wrapper))
    except AttributeError:  # a libcst without the private entry point: the public way
        return wrapper.resolve(PositionProvider)


# ---------------------------------------------------------------- where a node sits


def qualname(chain: Sequence[cst.CSTNode]) -> str:
    """Dotted class/function path of the innermost definition in ``chain``."""
    names = [n.name.value for n in chain if isinstance(n, (cst.FunctionDef, cst.ClassDef))]
    return ".".join(names) or "<module>"


def innermost_scope(chain: Sequence[cst.CSTNode]) -> cst.CSTNode | None:
    """The innermost def/lambda/class in ``chain`` (``None`` at module level)."""
    for node in reversed(chain):
        if isinstance(node, SCOPES):
            return node
    return None


def enclosing_loops(loc: Located) -> list[cst.CSTNode]:
    """Loops whose repeated part holds ``loc``, innermost first, within its scope.

    A ``for`` iterable and the first iterable of a comprehension run once, so they do
    not count; a ``while`` test runs every time, so it does.
    """
    chain = loc.chain
    found: list[cst.CSTNode] = []
    for i in range(len(chain) - 2, -1, -1):
        p, c = chain[i], chain[i + 1]
        if isinstance(p, SCOPES):
            break
        if (
            isinstance(p, (cst.For, cst.While))
            and c is p.body
            or isinstance(p, cst.While)
            and c is p.test
        ):
            found.append(p)
        elif isinstance(p, COMPS):
            first: cst.CompFor = p.for_in  # type: ignore[attr-defined]
            grand = chain[i + 2] if i + 2 < len(chain) else None
            if not (c is first and grand is first.iter):
                found.append(p)
    return found


def has_ancestor(
    loc: Located, kinds: tuple[type[cst.CSTNode], ...], stop: cst.CSTNode | None = None
) -> bool:
    """Whether an ancestor of one of ``kinds`` sits between ``stop`` (exclusive) and ``loc``."""
    for node in reversed(loc.parents):
        if node is stop:
            return False
        if isinstance(node, kinds):
            return True
    return False


def between(loc: Located, top: cst.CSTNode) -> list[cst.CSTNode]:
    """The chain from ``top`` (inclusive) down to ``loc`` (inclusive); empty if not below."""
    chain = loc.chain
    for i, node in enumerate(chain):
        if node is top:
            return list(chain[i:])
    return []


def block_of(loc: Located) -> cst.CSTNode | None:
    """The Module/IndentedBlock whose body directly holds this statement, if any."""
    parent = loc.parent
    if isinstance(parent, (cst.Module, cst.IndentedBlock)):
        return parent
    return None


def single_small(stmt: cst.CSTNode) -> cst.BaseSmallStatement | None:
    """The only small statement of a one-statement line, else ``None``."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def subtree(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def contains(node: cst.CSTNode, kinds: tuple[type[cst.CSTNode], ...]) -> bool:
    return any(isinstance(n, kinds) for n in subtree(node))


# ---------------------------------------------------------------- names


def target_names(expr: cst.CSTNode) -> list[str]:
    """Plain names an assignment target binds (attributes and subscripts bind none)."""
    if isinstance(expr, cst.Name):
        return [expr.value]
    if isinstance(expr, (cst.Tuple, cst.List)):
        return [n for el in expr.elements for n in target_names(el.value)]
    if isinstance(expr, cst.StarredElement):
        return target_names(expr.value)
    return []


def binding_names(node: cst.CSTNode) -> list[str]:
    """Every name bound anywhere under ``node`` (one entry per binding; globals count too)."""
    return list(_bindings(node))


@functools.lru_cache(maxsize=8192)
def _bindings(node: cst.CSTNode) -> tuple[str, ...]:
    # nodes hash by identity and are immutable, so the answer per node never changes
    out: list[str] = []
    for n in subtree(node):
        if isinstance(n, cst.Assign):
            for t in n.targets:
                out.extend(target_names(t.target))
        elif isinstance(
            n, (cst.AnnAssign, cst.AugAssign, cst.NamedExpr, cst.For, cst.CompFor, cst.Del)
        ):
            out.extend(target_names(n.target))
        elif isinstance(n, cst.AsName):
            out.extend(target_names(n.name))
        elif isinstance(n, cst.Import):
            out.extend(
                a.name.value.split(".")[0] if isinstance(a.name, cst.Name) else _dotted_head(a.name)
                for a in n.names
                if a.asname is None
            )
        elif isinstance(n, cst.ImportFrom):
            if not isinstance(n.names, cst.ImportStar):
                out.extend(_alias_value(a.name) for a in n.names if a.asname is None)
        elif isinstance(n, (cst.FunctionDef, cst.ClassDef, cst.Param)):
            out.append(n.name.value)
        elif isinstance(n, (cst.Global, cst.Nonlocal)):
            out.extend(item.name.value for item in n.names)
    return tuple(out)


def _dotted_head(name: cst.BaseExpression) -> str:
    while isinstance(name, cst.Attribute):
        name = name.value
    return name.value if isinstance(name, cst.Name) else ""


def _alias_value(name: cst.BaseExpression) -> str:
    return name.value if isinstance(name, cst.Name) else _dotted_head(name)


def root_name(expr: cst.CSTNode) -> str | None:
    """The base name of an attribute/subscript/call chain: ``a`` for ``a.b[c].d()``."""
    while True:
        if isinstance(expr, (cst.Attribute, cst.Subscript)):
            expr = expr.value
        elif isinstance(expr, cst.Call):
            expr = expr.func
        else:
            break
    return expr.value if isinstance(expr, cst.Name) else None


def mutated_roots(node: cst.CSTNode) -> set[str]:
    """Names whose object may change under ``node``: item/attribute stores, impure method calls."""
    out: set[str] = set()
    targets: list[cst.CSTNode] = []
    for n in subtree(node):
        if isinstance(n, cst.Assign):
            targets.extend(t.target for t in n.targets)
        elif isinstance(n, (cst.AnnAssign, cst.AugAssign, cst.Del, cst.For)):
            targets.append(n.target)
        elif (
            isinstance(n, cst.Call)
            and isinstance(n.func, cst.Attribute)
            and n.func.attr.value not in PURE_METHODS
        ):
            root = root_name(n.func.value)
            if root is not None:
                out.add(root)
    for t in targets:
        for part in subtree(t):
            if isinstance(part, (cst.Attribute, cst.Subscript)):
                root = root_name(part)
                if root is not None:
                    out.add(root)
    return out


def name_refs(node: cst.CSTNode) -> list[tuple[cst.Name, cst.CSTNode | None]]:
    """Every Name that refers to a variable under ``node``, with its parent node."""
    out: list[tuple[cst.Name, cst.CSTNode | None]] = []
    stack: list[tuple[cst.CSTNode, cst.CSTNode | None]] = [(node, None)]
    while stack:
        n, parent = stack.pop()
        if isinstance(n, cst.Name):
            skip = (
                (isinstance(parent, cst.Attribute) and parent.attr is n)
                or (isinstance(parent, cst.Arg) and parent.keyword is n)
                or (isinstance(parent, (cst.FunctionDef, cst.ClassDef)) and parent.name is n)
                or isinstance(parent, (cst.ImportAlias, cst.Param))
            )
            if not skip:
                out.append((n, parent))
        stack.extend((child, n) for child in children(n))
    return out


# ---------------------------------------------------------------- literals


def is_constant(expr: cst.CSTNode) -> bool:
    """A hashable literal: string, number, True/False/None, or a signed number."""
    if isinstance(expr, (cst.SimpleString, cst.Integer, cst.Float, cst.Imaginary)):
        return True
    if isinstance(expr, cst.ConcatenatedString):
        return all(
            isinstance(p, cst.SimpleString) for p in subtree(expr) if isinstance(p, cst.BaseString)
        )
    if isinstance(expr, cst.Name):
        return expr.value in ("True", "False", "None")
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, (cst.Minus, cst.Plus)):
        return isinstance(expr.expression, (cst.Integer, cst.Float))
    return False


def constant_sequence(expr: cst.CSTNode) -> int | None:
    """Element count of a non-empty list/tuple display of constants, else ``None``."""
    if not isinstance(expr, (cst.List, cst.Tuple)) or not expr.elements:
        return None
    if all(isinstance(el, cst.Element) and is_constant(el.value) for el in expr.elements):
        return len(expr.elements)
    return None


def shadowed(idx: Index, name: str) -> bool:
    """Whether the module binds ``name`` anywhere (so a builtin of that name may not be one)."""
    return idx.module_bindings.get(name, 0) > 0


def imports_module(idx: Index, name: str) -> bool:
    """A plain top-level ``import name`` that is the only binding of ``name`` in the module."""
    if idx.module_bindings.get(name, 0) != 1:
        return False
    for stmt in idx.module.body:
        small = stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ()
        for s in small:
            if isinstance(s, cst.Import) and any(
                isinstance(a.name, cst.Name) and a.name.value == name and a.asname is None
                for a in s.names
            ):
                return True
    return False


# ---------------------------------------------------------------- editing


@dataclass
class Edit:
    """A set of changes to one module, applied in a single pass."""

    nodes: dict[int, cst.CSTNode] = field(default_factory=dict)
    before: dict[int, list[cst.BaseStatement]] = field(default_factory=dict)
    after: dict[int, list[cst.BaseStatement]] = field(default_factory=dict)
    drop: set[int] = field(default_factory=set)

    def replace(self, old: cst.CSTNode, new: cst.CSTNode) -> Edit:
        self.nodes[id(old)] = new
        return self

    def insert_before(self, stmt: cst.CSTNode, new: cst.BaseStatement) -> Edit:
        self.before.setdefault(id(stmt), []).append(new)
        return self

    def insert_after(self, stmt: cst.CSTNode, new: cst.BaseStatement) -> Edit:
        self.after.setdefault(id(stmt), []).append(new)
        return self

    def remove(self, stmt: cst.CSTNode) -> Edit:
        self.drop.add(id(stmt))
        return self

    def targets(self) -> set[int]:
        """Ids of the original nodes this edit replaces, removes or inserts beside."""
        return {*self.nodes, *self.before, *self.after, *self.drop}

    def run(self, module: cst.Module, idx: Index | None = None) -> str:
        """The module's code with the edit applied.

        With the module's ``idx`` only the ancestors of the changed nodes are visited
        (every other subtree is kept as it is, which is what a full visit would give it
        back anyway); without it, or if a target is not a node of ``idx``, every node is.
        """
        path: set[int] | None = None
        if idx is not None and idx.module is module:
            targets = self.targets()
            if all(t in idx.by_id for t in targets):
                path = set()
                for t in targets:
                    located = idx.by_id[t]
                    path.add(t)
                    path.update(id(p) for p in located.parents)
        return module.visit(_Apply(self, path)).code


class _Apply(cst.CSTTransformer):
    def __init__(self, edit: Edit, path: set[int] | None = None) -> None:
        super().__init__()
        self.edit = edit
        self.path = path

    def on_visit(self, node: cst.CSTNode) -> bool:
        # Below a node that holds no target a transformer would rebuild identical nodes.
        return self.path is None or id(node) in self.path

    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> cst.CSTNode:
        result = updated_node
        if isinstance(original_node, (cst.Module, cst.IndentedBlock)) and isinstance(
            updated_node, (cst.Module, cst.IndentedBlock)
        ):
            body = self._splice(original_node.body, updated_node.body)
            if body is not None:
                result = updated_node.with_changes(body=body)
        return self.edit.nodes.get(id(original_node), result)

    def _splice(
        self, originals: Sequence[cst.CSTNode], updated: Sequence[cst.CSTNode]
    ) -> list[cst.CSTNode] | None:
        e = self.edit
        if not any(id(o) in e.before or id(o) in e.after or id(o) in e.drop for o in originals):
            return None
        out: list[cst.CSTNode] = []
        for orig, upd in zip(originals, updated, strict=True):
            pre: list[cst.CSTNode] = list(e.before.get(id(orig), []))
            if pre:
                pre[0] = pre[0].with_changes(leading_lines=getattr(upd, "leading_lines", ()))
                upd = upd.with_changes(leading_lines=())
            out.extend(pre)
            if id(orig) not in e.drop:
                out.append(upd)
            out.extend(e.after.get(id(orig), []))
        return out


def statement(code: str) -> cst.BaseStatement:
    return cst.parse_statement(code if code.endswith("\n") else code + "\n")


def import_anchor(idx: Index) -> cst.BaseStatement | None:
    """The last top-level import before the first def/class (or the docstring), to insert after."""
    anchor: cst.BaseStatement | None = None
    for i, stmt in enumerate(idx.module.body):
        if isinstance(stmt, cst.SimpleStatementLine):
            if (
                any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body)
                or i == 0
                and isinstance(stmt.body[0], cst.Expr)
                and isinstance(stmt.body[0].value, cst.BaseString)
            ):
                anchor = stmt
        elif isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            break
    return anchor


def can_import(idx: Index, name: str) -> bool:
    """Whether ``name`` is, or can become, a plain top-level module import."""
    return imports_module(idx, name) or not (shadowed(idx, name) or name in idx.all_names)


def add_import(idx: Index, edit: Edit, name: str) -> bool:
    """Schedule ``import name`` unless present; ``False`` if the name is taken by something else."""
    if imports_module(idx, name):
        return True
    if shadowed(idx, name) or name in idx.all_names:
        return False
    new = statement(f"import {name}")
    anchor = import_anchor(idx)
    if anchor is not None:
        edit.insert_after(anchor, new)
    elif idx.module.body:
        edit.insert_before(idx.module.body[0], new)
    else:
        return False
    return True


def short(code: str, limit: int = 40) -> str:
    """One-line, bounded rendering of code for a site's evidence text."""
    flat = " ".join(code.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
