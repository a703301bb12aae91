"""Names and literals: what a piece of code binds, refers to, changes, or is a constant of."""

from __future__ import annotations

import functools

import libcst as cst

from evolution.mutators.cst_walk import children, subtree
from evolution.mutators.pure_calls import PURE_METHODS


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
