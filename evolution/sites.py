"""Where each function of a module lives, and a fingerprint of its code.

Two questions need the same map.  The analyzer asks which profile row is a site's
function: cProfile names a function by its bare name and the line of its first decorator
or ``def``, so the line tells ``Index.add`` from ``Store.add`` where the name cannot.  The
planner asks whether a function changed since a rewrite of it failed: the fingerprint is
the hash of the function's syntax tree without positions, so an edit elsewhere in the
file (which shifts every line below it) leaves it alone, and any edit of the function
itself changes it.

Qualified names are built as the mutators build theirs (``cst_where.qualname``): the
enclosing classes and functions joined by dots.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from evolution.errors import TarsError
from evolution.patch import apply_patch

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class FunctionSpan:
    """One function of a module: its lines (first decorator to last line) and fingerprint."""

    qualname: str
    first_line: int
    def_line: int
    end_line: int
    fingerprint: str


def _walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.AST]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _DEFS):
            name = f"{prefix}.{child.name}" if prefix else child.name
            yield name, child
            yield from _walk(child, name)
        else:
            yield from _walk(child, prefix)


def fingerprint(node: ast.AST) -> str:
    """A short hash of a node's tree without positions: the same code anywhere, the same print."""
    return hashlib.sha256(ast.dump(node).encode()).hexdigest()[:16]


@lru_cache(maxsize=256)
def functions(source: str) -> Mapping[str, FunctionSpan]:
    """Every function and method of ``source`` by qualified name ({} if it does not parse).

    Cached: the analyzer, the planner and the coordinator ask about the same few files.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    spans: dict[str, FunctionSpan] = {}
    for name, node in _walk(tree, ""):
        if isinstance(node, ast.ClassDef):
            continue
        assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = getattr(node, "end_lineno", None) or node.lineno
        spans.setdefault(name, FunctionSpan(name, first, node.lineno, end, fingerprint(node)))
    return spans


def function_fingerprint(tree: Mapping[str, str], file: str, function: str) -> str:
    """The fingerprint of ``function`` in ``file`` of ``tree``; "" when there is no such function.

    Module-level sites (``<module>``) are fingerprinted by the whole file.
    """
    source = tree.get(file)
    if source is None:
        return ""
    if function == "<module>":
        return hashlib.sha256(source.encode()).hexdigest()[:16]
    span = functions(source).get(function)
    return span.fingerprint if span is not None else ""


def changed_functions(parent: Mapping[str, str], patch: str) -> list[tuple[str, str, str]]:
    """(file, function, fingerprint in the parent) of every function a patch changes or removes.

    How the log's candidates are tied back to the functions they rewrote: the log keeps a
    candidate's parent and patch, not the function it aimed at.  A patch that does not
    apply to the parent changes nothing this can see, so it returns [].
    """
    try:
        child = apply_patch(parent, patch)
    except TarsError:  # a log entry this parent cannot take: nothing to learn from it
        return []
    out: list[tuple[str, str, str]] = []
    for file in sorted(parent):
        before, after = parent[file], child.get(file)
        if after == before or not file.endswith(".py"):
            continue
        new = functions(after) if after is not None else {}
        for name, span in sorted(functions(before).items()):
            other = new.get(name)
            if other is None or other.fingerprint != span.fingerprint:
                out.append((file, name, span.fingerprint))
    return out
