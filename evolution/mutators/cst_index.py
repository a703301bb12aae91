"""One parsed module and every node in it: what the mutators scan and what their edits address.

Nodes are addressed by identity (``id``) inside one parsed module; the module is
immutable and cached per source text, so a scan and the edit built from it see the same
nodes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from evolution.mutators.cst_names import binding_names
from evolution.mutators.cst_walk import children
from evolution.mutators.pure_calls import PURE_BUILTINS, PURE_METHODS


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


def pure_call(idx: Index, call: cst.Call) -> bool:
    """A call to a pure builtin this module does not rebind, or to a read-only method."""
    func = call.func
    if isinstance(func, cst.Name):
        return func.value in PURE_BUILTINS and not shadowed(idx, func.value)
    return isinstance(func, cst.Attribute) and func.attr.value in PURE_METHODS
