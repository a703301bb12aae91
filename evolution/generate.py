"""Turning a plan into a candidate: a patch against the parent, nothing run yet.

Pure: the mutator rewrites one file's text, the patch is the diff of the two trees, and
the candidate id is a hash of parent and patch, so two nodes that generate the same
change name it the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from evolution.errors import MutationError
from evolution.patch import make_patch
from evolution.tree import Tree


@dataclass(frozen=True)
class Candidate:
    """A patch proposed against a version, not yet proven."""

    id: str
    parent: str
    patch: str
    mutator: str
    kind: str
    file: str
    function: str
    line: int
    description: str


def candidate_id(parent: str, patch: str) -> str:
    """Content address of a candidate: same parent and patch, same id on every node."""
    return hashlib.sha256(f"{parent}\n{patch}".encode()).hexdigest()[:16]


def from_rewrite(
    tree: Mapping[str, str],
    parent: str,
    file: str,
    rewrite: Callable[[str], str],
    *,
    mutator: str,
    kind: str,
    function: str = "<module>",
    line: int = 0,
    description: str = "",
) -> Candidate:
    """Apply ``rewrite`` to one file of the tree and wrap the result as a candidate."""
    if file not in tree:
        raise MutationError(
            f"{mutator}: file {file} is not in version {parent[:12]}",
            hint="re-run the analysis on the current head",
        )
    new_source = rewrite(tree[file])
    if new_source == tree[file]:
        raise MutationError(
            f"{mutator}: no change at {file}:{line}", hint="the opportunity is already taken"
        )
    try:
        compile(new_source, file, "exec")
    except SyntaxError as exc:
        raise MutationError(
            f"{mutator}: rewrite of {file}:{line} does not compile ({exc.msg})",
            hint="report this mutator bug",
        ) from exc
    return from_files(
        tree,
        parent,
        {file: new_source},
        mutator=mutator,
        kind=kind,
        file=file,
        function=function,
        line=line,
        description=description,
    )


def from_files(
    tree: Mapping[str, str],
    parent: str,
    files: Mapping[str, str],
    *,
    mutator: str,
    kind: str,
    file: str,
    function: str = "<module>",
    line: int = 0,
    description: str = "",
) -> Candidate:
    """Wrap already-rewritten files (path → new text, e.g. a model's edits) as a candidate.

    The caller checked the files may evolve and still parse; this only refuses a no-op
    and names the result by its patch, like :func:`from_rewrite`.
    """
    new_tree: Tree = dict(tree)
    new_tree.update(files)
    patch = make_patch(tree, new_tree)
    if not patch:
        raise MutationError(f"{mutator}: no change at {file}:{line}", hint="propose a real change")
    return Candidate(
        id=candidate_id(parent, patch),
        parent=parent,
        patch=patch,
        mutator=mutator,
        kind=kind,
        file=file,
        function=function,
        line=line,
        description=description or f"{mutator} at {file}:{line} ({function})",
    )
