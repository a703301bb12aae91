"""Where inlining may look: the module's inlinable functions, a class's methods, a call's caller.

A name is only as fixed as the module keeps it: a top-level function is inlinable if the
module binds its name once, and a method if its class is final in the module and no
attribute of that name is ever assigned (see :mod:`inline_call` for the full guard).
"""

from __future__ import annotations

import libcst as cst

from evolution.mutators.cst_tools import Index, Located, binding_names, subtree
from evolution.mutators.inline_callee import Callee, callee


def module_callees(idx: Index) -> dict[str, Callee]:
    """Top-level functions bound once in the module whose body is one expression."""
    out: dict[str, Callee] = {}
    for stmt in idx.module.body:
        if isinstance(stmt, cst.FunctionDef) and idx.module_bindings.get(stmt.name.value) == 1:
            fn = callee(stmt)
            if fn is not None:
                out[fn.name] = fn
    return out


def assigned_attrs(idx: Index) -> frozenset[str]:
    key = ("inline_assigned_attrs",)
    found = idx.memo.get(key)
    if isinstance(found, frozenset):
        return found
    names: set[str] = set()
    for n in subtree(idx.module):
        targets: list[cst.CSTNode] = []
        if isinstance(n, cst.Assign):
            targets = [t.target for t in n.targets]
        elif isinstance(n, (cst.AugAssign, cst.AnnAssign, cst.Del, cst.For, cst.CompFor)):
            targets = [n.target]
        elif (
            isinstance(n, cst.Call)
            and isinstance(n.func, cst.Name)
            and n.func.value in ("setattr", "delattr")
        ):
            names.add("*")  # any attribute may be set: nothing is fixed
        for t in targets:
            names.update(p.attr.value for p in subtree(t) if isinstance(p, cst.Attribute))
    result = frozenset(names)
    idx.memo[key] = result
    return result


def final_class(idx: Index, cls: cst.ClassDef) -> bool:
    """No class in the module derives from ``cls``, and nothing changes how it looks methods up."""
    if any(kw.keyword is not None and kw.keyword.value == "metaclass" for kw in cls.bases):
        return False
    if any(a.keyword is not None for a in cls.bases):
        return False
    name = cls.name.value
    if idx.module_bindings.get(name) != 1:
        return False
    for n in subtree(idx.module):
        if isinstance(n, cst.ClassDef) and n is not cls:
            for base in n.bases:
                if any(isinstance(p, cst.Name) and p.value == name for p in subtree(base.value)):
                    return False
    return True


def class_methods(idx: Index, cls: cst.ClassDef) -> dict[str, cst.FunctionDef]:
    """Plain methods of a final class without lookup hooks, each defined once in its body.

    A method is left out when an attribute of its name is assigned anywhere in the module
    (an instance attribute would shadow it) or the name is bound or used at class level.
    """
    key = ("inline_class_methods", id(cls))
    found = idx.memo.get(key)
    if isinstance(found, dict):
        return found
    out: dict[str, cst.FunctionDef] = {}
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    defs: dict[str, int] = {}
    for stmt in body:
        if isinstance(stmt, cst.FunctionDef):
            defs[stmt.name.value] = defs.get(stmt.name.value, 0) + 1
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                for n in subtree(small):
                    if isinstance(n, cst.Name):
                        defs[n.value] = defs.get(n.value, 0) + 2  # bound or used at class level
    assigned = assigned_attrs(idx)
    lookup_hooks = {"__getattr__", "__getattribute__", "__new__"} & set(defs)
    if final_class(idx, cls) and "*" not in assigned and not lookup_hooks:
        for stmt in body:
            if (
                isinstance(stmt, cst.FunctionDef)
                and defs[stmt.name.value] == 1
                and stmt.name.value not in assigned
                and not stmt.name.value.startswith("__")
            ):
                out[stmt.name.value] = stmt
    idx.memo[key] = out
    return out


def class_callees(idx: Index, cls: cst.ClassDef) -> dict[str, Callee]:
    """Plain methods of a final class, defined once in its body, whose body is one expression."""
    key = ("inline_class_callees", id(cls))
    found = idx.memo.get(key)
    if isinstance(found, dict):
        return found
    out: dict[str, Callee] = {}
    for stmt in class_methods(idx, cls).values():
        fn = callee(stmt)
        if fn is not None:
            out[fn.name] = fn
    idx.memo[key] = out
    return out


def outer_function(loc: Located) -> cst.FunctionDef | None:
    """The outermost function whose body holds ``loc`` (the scope whose names could clash)."""
    for i, node in enumerate(loc.parents):
        if isinstance(node, cst.FunctionDef):
            below = loc.chain[i + 1]
            return node if below is node.body else None
    return None


def self_method(idx: Index, loc: Located) -> tuple[cst.ClassDef, str, cst.FunctionDef] | None:
    """``(class, receiver name, method)`` when ``loc`` is in the body of a plain method of a class."""
    chain = loc.chain
    funcs = [i for i, n in enumerate(chain) if isinstance(n, (cst.FunctionDef, cst.Lambda))]
    if len(funcs) != 1 or funcs[0] < 2:
        return None
    i = funcs[0]
    func, block, cls = chain[i], chain[i - 1], chain[i - 2]
    if not (
        isinstance(func, cst.FunctionDef)
        and isinstance(block, cst.IndentedBlock)
        and isinstance(cls, cst.ClassDef)
        and chain[i + 1] is func.body
        and not func.decorators
    ):
        return None
    ps = func.params
    first = (*ps.posonly_params, *ps.params)
    if not first:
        return None
    return cls, first[0].name.value, func


def instance_class(idx: Index, func: cst.FunctionDef, name: str) -> cst.ClassDef | None:
    """The class of ``name`` when the function binds it once, to ``C(...)`` of a module class.

    ``C(...)`` makes an instance of exactly ``C`` when ``C`` has no metaclass and no
    ``__new__`` (:func:`class_callees` refuses those), whatever a subclass would do.
    """
    if binding_names(func).count(name) != 1:
        return None
    for stmt in func.body.body if isinstance(func.body, cst.IndentedBlock) else ():
        # a binding in the function's own block: not inside a nested scope
        n = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) else None
        if (
            isinstance(n, cst.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0].target, cst.Name)
            and n.targets[0].target.value == name
            and isinstance(n.value, cst.Call)
            and isinstance(n.value.func, cst.Name)
        ):
            cls_name = n.value.func.value
            if idx.module_bindings.get(cls_name) != 1:
                return None
            for stmt in idx.module.body:
                if isinstance(stmt, cst.ClassDef) and stmt.name.value == cls_name:
                    return stmt
    return None
