"""Near-duplicate candidates: two patches that make the same program are judged once.

Candidate ids are content addresses of (parent, patch), so the coordinator already
skips an identical patch.  But two mutators, or one mutator on two routes, can write
the same program differently: other spacing or comments, or a helper name numbered
``_hoisted_1`` in one and ``_hoisted_2`` in the other.  The incubator would measure the
same program twice (with an exact measure, the same numbers; with a timed one, noise a
second chance).

The key of a candidate is a hash of its whole tree in a normal form: every Python file
as its syntax tree without positions (comments and layout gone), with the names the
candidate introduced (bound in it, absent from the parent's file) renamed in order of first
appearance; other files as their text.  Only names the candidate binds itself
(assigned, defined, parameters) count as introduced: a builtin or import it starts
reading is a real difference (``set`` against ``frozenset``).  Two candidates with the
same key are the same program up to those renamings.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache


class _Rename(ast.NodeTransformer):
    """Renames the given identifiers, in order of first appearance."""

    def __init__(self, fresh: frozenset[str]) -> None:
        self.fresh = fresh
        self.names: dict[str, str] = {}

    def _new(self, name: str) -> str:
        if name not in self.fresh:
            return name
        return self.names.setdefault(name, f"_n{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._new(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._new(node.arg)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        node.name = self._new(node.name)
        self.generic_visit(node)
        return node


def _bound(tree: ast.AST) -> frozenset[str]:
    """Names ``tree`` binds itself: assigned, defined, or parameters (not builtins it reads)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return frozenset(names)


def _identifiers(tree: ast.AST) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return frozenset(names)


@lru_cache(maxsize=512)
def normal_form(source: str, parent: str | None = None) -> str:
    """``source`` as the dump of its syntax tree, names new since ``parent`` renamed.

    A file that does not parse is its own text (it is judged as written, and fails).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    if parent is not None and parent != source:
        try:
            known = _identifiers(ast.parse(parent))
        except (SyntaxError, ValueError):
            known = frozenset()
        tree = _Rename(_bound(tree) - known).visit(tree)
    return ast.dump(tree)


def tree_key(tree: Mapping[str, str], parent: Mapping[str, str] | None = None) -> str:
    """The normal-form hash of a whole tree (a candidate's, given its parent's tree)."""
    digest = hashlib.sha256()
    for path in sorted(tree):
        source = tree[path]
        before = parent.get(path) if parent is not None else None
        text = normal_form(source, before) if path.endswith(".py") else source
        digest.update(f"{len(path)}:{path}\0{len(text)}:".encode())
        digest.update(text.encode())
    return digest.hexdigest()[:32]


def already_judged(key: str, judged: Iterable[str] | set[str]) -> bool:
    """Whether a candidate whose tree has ``key`` is one already judged (``judged``: their keys)."""
    return key in (judged if isinstance(judged, (set, frozenset)) else set(judged))
