"""Walking a libcst tree: the node kinds that matter and a remembered ``children``.

The lowest layer of the mutators' libcst plumbing: everything else walks trees through
:func:`subtree` and :func:`children`, so the cost of listing a node's children is paid
once per node.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import libcst as cst

LOOPS: tuple[type[cst.CSTNode], ...] = (cst.For, cst.While)
COMPS: tuple[type[cst.CSTNode], ...] = (cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
SCOPES: tuple[type[cst.CSTNode], ...] = (cst.FunctionDef, cst.Lambda, cst.ClassDef)


@functools.lru_cache(maxsize=1 << 16)
def children(node: cst.CSTNode) -> tuple[cst.CSTNode, ...]:
    """``node.children``, remembered: libcst rebuilds the node to list them (tens of µs).

    Nodes are immutable and hash by identity, so the answer per node never changes;
    ``index`` fills the cache for every node of a module, and every later walk of that
    module (``subtree``, ``name_refs``, each mutator's scan) reads it from here.
    """
    return tuple(node.children)


def subtree(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def contains(node: cst.CSTNode, kinds: tuple[type[cst.CSTNode], ...]) -> bool:
    return any(isinstance(n, kinds) for n in subtree(node))
