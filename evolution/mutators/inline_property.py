"""A read of a plain property costs a call of its getter; the attribute it returns does not.

``self.chars`` where the class says ``@property def chars(self): return self._chars``
becomes ``self._chars``: the same lookup the getter would make, on the same object, without
the descriptor call and the getter's frame (on CPython 3.11 a property read is not
specialised: it is a full Python call).  shlex reads its ``punctuation_chars`` property
once or twice per character it lexes.

That is the same value when ``self.chars`` reaches this getter, which the guard shared
with :mod:`inline_call`'s methods makes sure of within the module: the receiver is ``self``
in a plain method of the class ``C`` (not rebound there), or a local the function binds
once to ``C(...)``; ``C`` has no base but ``object``, no class decorator, no metaclass, no ``__getattr__``/
``__getattribute__``/``__new__``, defines ``chars`` once (as this getter: decorated only
with the builtin ``property``, its body ``return <first parameter>.<attribute>``), **no
class in the module derives from** ``C``, and no attribute named ``chars`` is assigned or
deleted anywhere in the module (no setter, no ``setattr``).  A property is a data
descriptor, so an instance's ``__dict__`` cannot shadow it.  The residual risk is the one
of inlined methods: a subclass in another module that overrides ``chars``, or a
monkeypatch of the class from outside, is bypassed at the rewritten reads.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    binding_names,
    enclosing_loops,
    innermost_scope,
    shadowed,
    short,
    subtree,
)
from evolution.mutators.inline_callee import docstring
from evolution.mutators.inline_scope import (
    assigned_attrs,
    final_class,
    instance_class,
    outer_function,
    self_method,
)

#: class-level names that change how an instance's attributes are looked up
_LOOKUP_HOOKS = frozenset({"__getattr__", "__getattribute__", "__new__"})


def _getter_target(func: cst.FunctionDef) -> str | None:
    """The attribute a ``@property`` getter returns from its first parameter, or ``None``."""
    if len(func.decorators) != 1:
        return None
    deco = func.decorators[0].decorator
    if not (isinstance(deco, cst.Name) and deco.value == "property"):
        return None
    ps = func.params
    params = (*ps.posonly_params, *ps.params)
    if len(params) != 1 or ps.star_arg is not cst.MaybeSentinel.DEFAULT or ps.kwonly_params:
        return None
    if ps.star_kwarg is not None or func.asynchronous is not None:
        return None
    body = func.body
    stmts = list(body.body) if isinstance(body, cst.IndentedBlock) else []
    if stmts and docstring(stmts[0]):
        stmts = stmts[1:]
    if len(stmts) != 1 or not isinstance(stmts[0], cst.SimpleStatementLine):
        return None
    line = stmts[0]
    ret = line.body[0] if len(line.body) == 1 else None
    value = ret.value if isinstance(ret, cst.Return) else None
    if (
        isinstance(value, cst.Attribute)
        and isinstance(value.value, cst.Name)
        and value.value.value == params[0].name.value
    ):
        return value.attr.value
    return None


def class_properties(idx: Index, cls: cst.ClassDef) -> dict[str, str]:
    """``{property: attribute it returns}`` for the plain properties of a final, base-less class."""
    key = ("inline_property", id(cls))
    found = idx.memo.get(key)
    if isinstance(found, dict):
        return found
    out: dict[str, str] = {}
    bases_ok = all(
        a.keyword is None and isinstance(a.value, cst.Name) and a.value.value == "object"
        for a in cls.bases
    )
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    counts: dict[str, int] = {}
    for stmt in body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            counts[stmt.name.value] = counts.get(stmt.name.value, 0) + 1
        else:
            for n in subtree(stmt):
                if isinstance(n, cst.Name):
                    counts[n.value] = counts.get(n.value, 0) + 2  # bound or used at class level
    assigned = assigned_attrs(idx)
    if (
        bases_ok
        and not cls.decorators  # a class decorator may return another class
        and not cls.keywords
        and final_class(idx, cls)
        and "*" not in assigned
        and not (_LOOKUP_HOOKS & set(counts))
        and not shadowed(idx, "property")
    ):
        for stmt in body:
            if isinstance(stmt, cst.FunctionDef) and counts[stmt.name.value] == 1:
                name = stmt.name.value
                target = _getter_target(stmt)
                if target is not None and target != name and name not in assigned:
                    out[name] = target
    idx.memo[key] = out
    return out


class InlineProperty(CstMutator):
    name = "inline_property"
    risk = 0.3
    kinds = (cst.Attribute,)

    def applies(self, idx: Index) -> bool:
        return "property" in idx.all_names

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        first = self._qualify(scan, loc)
        if first is None or not scan.first(("inline_property", id(first[0]), first[1])):
            return
        # one candidate rewrites every qualifying read of the property in the module
        sites = [
            other
            for other in scan.idx.nodes
            if isinstance(other.node, cst.Attribute)
            and (found := self._qualify(scan, other)) is not None
            and found[0] is first[0]
            and found[1] == first[1]
        ]
        yield self._finding(scan, loc, first[0], first[1], first[2], sites)

    def _qualify(self, scan: Scan, loc: Located) -> tuple[cst.ClassDef, str, str] | None:
        """``(class, property, attribute)`` when this read of ``x.prop`` can read the attribute."""
        node = loc.node
        if not (isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name)):
            return None
        idx = scan.idx
        if outer_function(loc) is None or not isinstance(
            innermost_scope(loc.parents), cst.FunctionDef
        ):
            return None
        cls = self._receiver_class(idx, loc, node.value.value)
        if cls is None:
            return None
        target = class_properties(idx, cls).get(node.attr.value)
        if target is None:
            return None
        return cls, node.attr.value, target

    def _receiver_class(self, idx: Index, loc: Located, receiver: str) -> cst.ClassDef | None:
        """The class ``receiver`` is an instance of: ``self`` in a method, or ``x = C(...)``."""
        method = self_method(idx, loc)
        if method is not None and method[1] == receiver:
            cls, _, method_def = method
            return None if receiver in binding_names(method_def.body) else cls
        func = innermost_scope(loc.parents)
        if not isinstance(func, cst.FunctionDef) or func is not outer_function(loc):
            return None
        # ``C(...)`` is exactly a ``C`` only without ``__new__``: class_properties checks it
        return instance_class(idx, func, receiver)

    def _finding(
        self,
        scan: Scan,
        loc: Located,
        cls: cst.ClassDef,
        prop: str,
        target: str,
        sites: list[Located],
    ) -> Finding:
        def edit() -> Edit:
            e = Edit()
            for site in sites:
                node = site.node
                assert isinstance(node, cst.Attribute)
                e.replace(node, node.with_changes(attr=cst.Name(target)))
            return e

        loops = max(len(enclosing_loops(site)) for site in sites)
        weight = (1.1 if loops else 1.03) + 0.01 * min(len(sites) - 1, 10)
        detail = (
            f"{len(sites)} read(s) of `{cls.name.value}.{prop}`, a property returning"
            f" `.{target}`, each a call of its getter"
            f" (first: `{short(scan.idx.code(loc.node))}`)"
        )
        return scan.finding(loc, detail, weight, edit)
