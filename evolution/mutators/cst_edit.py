"""Changing a parsed module: an :class:`Edit` collects replacements and insertions, one pass applies them.

An edit rebuilds only the path from the module down to the nodes it changes instead of
re-visiting every node, so a rewrite costs what it touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from evolution.mutators.cst_index import Index, imports_module, shadowed


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
