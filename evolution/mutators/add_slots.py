"""``__slots__`` on a small class whose instances always have the same attributes.

A class without ``__slots__`` gives every instance a ``__dict__``: making one allocates
it, and every attribute lives in it.  With ``__slots__`` naming the attributes, an
instance holds them in fixed places: it is smaller and quicker to make, which pays on a
class the benchmark instantiates many times (the site is the class's ``__init__``, so
the analyzer weighs it by the constructor's own cost).

Behaviour stays the same only while nothing needs the ``__dict__``, so the class must be
plain and its shape known from its own code:

- a top-level class with no decorator (not a dataclass or attrs class), no base but
  ``object``, no keyword (no metaclass), no ``__slots__`` yet, an ``__init__`` of its own,
  no ``__setattr__``/``__getattribute__``/``__delattr__``/``__getstate__``/
  ``__setstate__``/``__reduce__``/``__reduce_ex__``, and no subclass in the module;
- every attribute set through ``self`` (``self.x = …``, ``self.x += …``, ``self.x: T = …``,
  in any method) is set in ``__init__``: the instances never get an attribute outside it;
  none is a dunder, and none is also a class attribute or method (a slot may not shadow
  one);
- at most :data:`MAX_SLOTS` attributes (a small class);
- the module assigns no attribute on anything else whose name no class of it sets
  through ``self`` (an instance given a new attribute from outside), and it does not use
  ``vars``, ``setattr``, ``delattr``, ``__dict__``, ``__weakref__``, ``weakref``,
  ``pickle``, ``copy``, ``copyreg``, ``shelve`` or ``dataclasses``.

Code in other files can still reach an instance's ``__dict__``; the genome's tests,
which every candidate must pass, are the check on that.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import Edit, Index, Located, statement, subtree

#: the most attributes a class may have to be given slots
MAX_SLOTS = 12
#: names whose use anywhere in the module means an instance's __dict__ may be needed
_MODULE_NAMES = frozenset(
    {"vars", "setattr", "delattr", "__dict__", "__weakref__", "weakref", "pickle", "copy",
     "copyreg", "shelve", "dataclass", "dataclasses"}
)  # fmt: skip
#: methods that replace how attributes are stored, copied or pickled
_OWN_STORAGE = frozenset(
    {"__setattr__", "__getattribute__", "__delattr__", "__getstate__", "__setstate__",
     "__reduce__", "__reduce_ex__", "__slots__", "__dict__", "__weakref__"}
)  # fmt: skip


class _Module:
    """What every class of one module is judged against (computed once per scan)."""

    def __init__(self, idx: Index) -> None:
        self.blocked = bool(_MODULE_NAMES & idx.all_names) or any(
            isinstance(loc.node, cst.Attribute) and loc.node.attr.value in _MODULE_NAMES
            for loc in idx.nodes
        )
        self_set: set[str] = set()
        outside: set[str] = set()
        for loc in idx.nodes:
            for target in _targets(loc.node):
                if isinstance(target, cst.Attribute):
                    is_self = isinstance(target.value, cst.Name) and target.value.value == "self"
                    (self_set if is_self else outside).add(target.attr.value)
        #: attribute names assigned on something not ``self`` that no class sets on ``self``
        self.unknown = outside - self_set
        #: the names of every class another class of the module derives from
        self.bases = {
            name
            for loc in idx.nodes
            if isinstance(loc.node, cst.ClassDef)
            for arg in loc.node.bases
            for name in _names(arg.value)
        }


def _names(expr: cst.BaseExpression) -> Iterator[str]:
    """``A`` of ``A``, ``m.A``, ``A[int]``: the names a base expression may stand for."""
    for node in subtree(expr):
        if isinstance(node, cst.Name):
            yield node.value


def _targets(node: cst.CSTNode) -> Iterator[cst.BaseExpression]:
    """Every expression ``node`` assigns to (tuples and starred targets unpacked)."""
    found: list[cst.BaseExpression] = []
    if isinstance(node, cst.Assign):
        found = [t.target for t in node.targets]
    elif isinstance(node, cst.AnnAssign | cst.AugAssign | cst.For):
        found = [node.target]
    elif isinstance(node, cst.WithItem) and node.asname is not None:
        found = [node.asname.name]
    while found:  # in source order
        target = found.pop(0)
        if isinstance(target, cst.Tuple | cst.List):
            found[:0] = [e.value for e in target.elements]
        elif isinstance(target, cst.StarredElement):
            found.insert(0, target.value)
        else:
            yield target


def _self_attributes(method: cst.FunctionDef) -> list[str] | None:
    """The attributes ``method`` sets on its first parameter, in order; None if unsure.

    Unsure: a static or class method's first parameter is not an instance; a nested
    function or lambda that rebinds the parameter's name hides which object is meant.
    """
    if any(
        isinstance(d.decorator, cst.Name) and d.decorator.value in ("staticmethod", "classmethod")
        for d in method.decorators
    ):
        return []
    params = method.params.posonly_params or method.params.params
    if not params:
        return None
    me = params[0].name.value
    out: list[str] = []
    for node in subtree(method.body):
        if isinstance(node, cst.FunctionDef | cst.Lambda) and any(
            p.name.value == me for p in (*node.params.params, *node.params.posonly_params)
        ):
            return None
        for target in _targets(node):
            if (
                isinstance(target, cst.Attribute)
                and isinstance(target.value, cst.Name)
                and target.value.value == me
                and target.attr.value not in out
            ):
                out.append(target.attr.value)
    return out


def _class_names(body: cst.IndentedBlock) -> set[str]:
    """Names the class body binds: methods, nested classes, class attributes with a value."""
    names: set[str] = set()
    for stmt in body.body:
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef):
            names.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.AnnAssign) and small.value is None:
                    continue  # an annotation alone binds nothing
                names.update(t.value for t in _targets(small) if isinstance(t, cst.Name))
    return names


def _slots(cls: cst.ClassDef) -> list[str] | None:
    """The class's slots (its ``__init__``'s attributes), or None if it does not qualify."""
    if (
        cls.decorators
        or cls.keywords
        or any(not (isinstance(a.value, cst.Name) and a.value.value == "object") for a in cls.bases)
        or not isinstance(cls.body, cst.IndentedBlock)
    ):
        return None
    methods = {s.name.value: s for s in cls.body.body if isinstance(s, cst.FunctionDef)}
    if "__init__" not in methods or _OWN_STORAGE & _class_names(cls.body):
        return None
    slots = _self_attributes(methods["__init__"])
    if not slots or len(slots) > MAX_SLOTS:
        return None
    for name, method in methods.items():
        seen = _self_attributes(method) if name != "__init__" else slots
        if seen is None or not set(seen) <= set(slots):
            return None
    if any(s.startswith("__") and s.endswith("__") for s in slots):
        return None
    return None if set(slots) & _class_names(cls.body) else slots


class AddSlots(CstMutator):
    name = "add_slots"
    risk = 0.2
    kinds = (cst.ClassDef,)

    def applies(self, idx: Index) -> bool:
        return any(isinstance(stmt, cst.ClassDef) for stmt in idx.module.body)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        cls = loc.node
        if not isinstance(cls, cst.ClassDef) or len(loc.parents) != 1:
            return  # a top-level class only
        module = scan.derived(_Module)
        if module.blocked or cls.name.value in module.bases:
            return
        slots = _slots(cls)
        if slots is None or module.unknown:
            return
        body = cls.body
        assert isinstance(body, cst.IndentedBlock)

        def edit() -> Edit:
            line = statement(f"__slots__ = {tuple(slots)!r}")
            first = body.body[0]
            if _is_docstring(first):
                return Edit().insert_after(first, line)
            return Edit().insert_before(first, line)

        detail = (
            f"class {cls.name.value}: its {len(slots)} attribute{'s' if len(slots) != 1 else ''} all set in __init__; "
            "__slots__ drops each instance's __dict__"
        )
        yield scan.finding(loc, detail, 1.05, edit, function=f"{cls.name.value}.__init__")


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return (
        isinstance(stmt, cst.SimpleStatementLine)
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], cst.Expr)
        and isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )
