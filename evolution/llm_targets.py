"""Which functions a model is asked about this cycle.

The planner ranks opportunities found by the offline rewrites, and names an offline
mutator for each; no plan says "llm".  So the model is asked about the functions of the
top ``k`` plans, whatever their kind: the analyzer's profile says they are where the
time goes, and a model can try there what no rewrite knows (inlining, restructuring).
When the analysis finds fewer sites than ``k`` (real code often gives none at all,
which is where a model is most worth asking), the largest functions of the source files
fill the rest: size is the one signal left without a site.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence

from evolution.llm_prompt import Target
from evolution.manifest import Manifest
from evolution.planner import Plan


def choose_targets(
    plans: Sequence[Plan], tree: Mapping[str, str], manifest: Manifest, k: int
) -> list[Target]:
    """Up to ``k`` distinct (file, function) targets: plan order first, then by size."""
    out: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for item in plans:
        opp = item.opportunity
        key = (opp.file, opp.function)
        if len(out) >= k or key in seen or not _askable(opp.file, manifest, tree):
            continue
        seen.add(key)
        out.append(Target(opp.file, opp.function, opp.line, opp.kind, opp.evidence))
    for size, file, name, line in sorted(_functions(tree, manifest), reverse=True):
        if len(out) >= k:
            break
        if (file, name) not in seen:
            seen.add((file, name))
            out.append(Target(file, name, line, "size", f"no site found; {size} lines long"))
    return out


def _askable(path: str, manifest: Manifest, tree: Mapping[str, str]) -> bool:
    return path.endswith(".py") and path in tree and manifest.is_source(path)


def _functions(tree: Mapping[str, str], manifest: Manifest) -> list[tuple[int, str, str, int]]:
    """(lines, file, qualified name, first line) of every function and method of the sources."""
    found: list[tuple[int, str, str, int]] = []
    for path in sorted(tree):
        if not _askable(path, manifest, tree):
            continue
        try:
            module = ast.parse(tree[path])
        except (SyntaxError, ValueError):
            continue
        stack: list[tuple[str, ast.stmt]] = [("", node) for node in module.body]
        while stack:
            prefix, node = stack.pop()
            if isinstance(node, ast.ClassDef):
                stack += [(f"{prefix}{node.name}.", child) for child in node.body]
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append((size, path, f"{prefix}{node.name}", node.lineno))
    return found
