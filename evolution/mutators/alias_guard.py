"""What a loop can change behind a value read once before it: the guard of ``alias_data``.

Reading ``self.items`` or ``len`` once before a loop instead of on every iteration gives
the same object as long as nothing in the loop rebinds it.  Python can rebind an
attribute or a global from almost anywhere, so the guard is strict about calls: every
call in the loop must be

- a pure builtin the module does not shadow, a read-only method (``get``, ``startswith``,
  …), or a module function the purity judge of :mod:`purity` clears;
- a method that changes a builtin container in place (``append``, ``add``, ``setdefault``,
  ``pop``, …): it changes the list or dict, never which object an attribute names;
- or inside a ``raise`` statement (the loop ends there, and the alias with it).

Anything else (a call of a user method, a constructor, ``setattr``) may rebind anything,
so the loop is refused.  The residual risk is named in ``docs/mutators.md``: a user type
whose method is named like a container's and rebinds attributes, and a property or
``__getattr__`` whose value changes between reads with no call in the loop.
"""

from __future__ import annotations

import libcst as cst

from evolution.mutators.cst_tools import Index, binding_names, subtree
from evolution.mutators.inline_args import pure_callee

#: methods of list/dict/set/deque that change the container, never an attribute binding
CONTAINER_MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "add",
        "update",
        "setdefault",
        "pop",
        "popitem",
        "remove",
        "discard",
        "clear",
        "appendleft",
        "popleft",
        "extendleft",
        "sort",
        "reverse",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
    }
)
#: names that reach attributes or globals by name
REFLECTION = frozenset(
    {"setattr", "delattr", "vars", "globals", "locals", "exec", "eval", "__dict__", "__import__"}
)


def harmless_calls(idx: Index, loop: cst.CSTNode) -> bool:
    """No call in ``loop`` can rebind an attribute or a global (see the module's rules)."""
    raised = {id(n) for r in subtree(loop) if isinstance(r, cst.Raise) for n in subtree(r)}
    for n in subtree(loop):
        if isinstance(n, cst.Name) and n.value in REFLECTION:
            return False
        if not isinstance(n, cst.Call) or id(n) in raised or pure_callee(idx, n):
            continue
        if isinstance(n.func, cst.Attribute) and n.func.attr.value in CONTAINER_MUTATORS:
            continue
        return False
    return True


def stored_attrs(node: cst.CSTNode) -> set[str]:
    """Attribute names assigned, augmented or deleted under ``node`` (``x.a = …`` stores ``a``)."""
    out: set[str] = set()
    for n in subtree(node):
        targets: list[cst.CSTNode] = []
        if isinstance(n, cst.Assign):
            targets = [t.target for t in n.targets]
        elif isinstance(
            n, (cst.AugAssign, cst.AnnAssign, cst.For, cst.CompFor, cst.NamedExpr, cst.Del)
        ):
            targets = [n.target]
        for t in targets:
            out.update(_attr_targets(t))
    return out


def _attr_targets(target: cst.CSTNode) -> set[str]:
    if isinstance(target, cst.Attribute):
        return {target.attr.value}
    if isinstance(target, (cst.Tuple, cst.List)):
        return {a for el in target.elements for a in _attr_targets(el.value)}
    if isinstance(target, cst.StarredElement):
        return _attr_targets(target.value)
    return set()


def rebinds(node: cst.CSTNode, name: str) -> bool:
    """Whether ``name`` is bound (assigned, imported, declared global, …) under ``node``."""
    return name in binding_names(node)
