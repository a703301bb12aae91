"""libcst plumbing shared by the mutators: where a node sits, what a region binds, how to splice.

The mutators work on libcst rather than :mod:`ast` because a concrete tree prints back
byte-for-byte, so comments and layout survive everywhere a rewrite does not touch.
Nodes are addressed by identity (``id``) inside one parsed module; the module is immutable
and cached per source text, so a scan and the edit built from it see the same nodes.

Cost: a version's files are parsed once (``index`` is cached per source text), each
mutator's findings are kept on the :class:`Index` (the analyzer's scan and the
generator's ``apply`` on the same version share them), and an :class:`Edit` rebuilds only
the path from the module down to the nodes it changes instead of re-visiting every node.

The plumbing lives in one small module per concept, re-exported here so a mutator
imports it from one place: :mod:`~evolution.mutators.cst_walk` (walking),
:mod:`~evolution.mutators.cst_names` (names and literals),
:mod:`~evolution.mutators.cst_index` (the parsed module), :mod:`~evolution.mutators.cst_where`
(where a node sits), :mod:`~evolution.mutators.cst_edit` (splicing) and
:mod:`~evolution.mutators.pure_calls` (which callees are pure).
"""

from __future__ import annotations

from evolution.mutators.cst_edit import Edit, add_import, can_import, import_anchor, statement
from evolution.mutators.cst_index import (
    Index,
    Located,
    imports_module,
    index,
    pure_call,
    shadowed,
)
from evolution.mutators.cst_names import (
    binding_names,
    constant_sequence,
    is_constant,
    mutated_roots,
    name_refs,
    root_name,
    target_names,
)
from evolution.mutators.cst_walk import COMPS, LOOPS, SCOPES, children, contains, subtree
from evolution.mutators.cst_where import (
    between,
    block_of,
    enclosing_loops,
    function_block,
    has_ancestor,
    innermost_scope,
    plain_for,
    qualname,
    single_assign,
    single_small,
)
from evolution.mutators.pure_calls import PURE_BUILTINS, PURE_METHODS


def short(code: str, limit: int = 40) -> str:
    """One-line, bounded rendering of code for a site's evidence text."""
    flat = " ".join(code.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = [
    "COMPS",
    "LOOPS",
    "PURE_BUILTINS",
    "PURE_METHODS",
    "SCOPES",
    "Edit",
    "Index",
    "Located",
    "add_import",
    "between",
    "binding_names",
    "block_of",
    "can_import",
    "children",
    "constant_sequence",
    "contains",
    "enclosing_loops",
    "function_block",
    "has_ancestor",
    "import_anchor",
    "imports_module",
    "index",
    "innermost_scope",
    "is_constant",
    "mutated_roots",
    "name_refs",
    "plain_for",
    "pure_call",
    "qualname",
    "root_name",
    "shadowed",
    "short",
    "single_assign",
    "single_small",
    "statement",
    "subtree",
    "target_names",
]
