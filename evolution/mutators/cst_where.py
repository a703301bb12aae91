"""Where a node sits: its function, its scope, the loops around it, its block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeGuard

import libcst as cst

from evolution.mutators.cst_index import Located
from evolution.mutators.cst_walk import COMPS, SCOPES


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


def single_assign(stmt: cst.CSTNode, name: str | None = None) -> cst.Assign | None:
    """``target = value`` alone on its line, with one plain-name target (``name``, if given)."""
    small = single_small(stmt)
    if (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and isinstance(small.targets[0].target, cst.Name)
        and (name is None or small.targets[0].target.value == name)
    ):
        return small
    return None


def plain_for(node: cst.CSTNode) -> TypeGuard[cst.For]:
    """A synchronous ``for`` without ``else``: its body is all the loop does."""
    return isinstance(node, cst.For) and node.orelse is None and node.asynchronous is None


def function_block(loc: Located) -> tuple[cst.FunctionDef, cst.CSTNode] | None:
    """The function and the block that directly hold this statement, if no ``try`` between.

    A rewrite that restructures statements (a loop into a comprehension, a ``+=`` into a
    join) is only equivalent where no handler inside the function could observe the
    state half-way.
    """
    func = innermost_scope(loc.parents)
    block = block_of(loc)
    if (
        not isinstance(func, cst.FunctionDef)
        or block is None
        or has_ancestor(loc, (cst.Try, cst.TryStar), func)
    ):
        return None
    return func, block
