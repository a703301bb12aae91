"""An attribute just stored on a receiver of known class is read back as the value stored.

``s.a = x`` (or ``if x is not s.a: s.a = x …``, or ``s.set_seq2(word)`` whose method ends
with ``self.b`` being its parameter ``b``) followed by reads of ``s.a`` in the statements
after it: each read is ``x``, one attribute lookup less, when nothing in between can make
``s.a`` another object and ``x`` is not rebound.  The receiver is ``inline_method``'s: a
local bound once to ``C(...)`` of a final class of the module that never escapes (only
``s.attr`` uses), in a module that touches no ``__dict__``/``vars``/``setattr``.  Then

- the class binds no ``a`` at class level (no property, descriptor, method, class
  attribute) and has no ``__setattr__``/``__delattr__``/``__getattr__``/``__getattribute__``;
- between the fact and the last read forwarded (the statements after the fact in its block,
  up to the last one reading ``s.a``), no attribute named ``a`` is stored or deleted on
  anything, the value's name is not rebound, no reflection (``setattr``, ``vars``,
  ``globals``, ``exec``, …) is named, and every call is harmless (``alias_guard``: pure
  builtins, read-only methods, module functions the purity judge clears, container
  mutators) or a method of the class called on ``s`` whose effects are known: it stores
  on ``self`` only attributes other than ``a`` (through the methods it calls on ``self``),
  and never hands ``self`` anywhere (``self`` is only ever ``self.x``), so nothing it
  calls can reach ``s`` either.

A method's ending fact (``self.b`` is its parameter ``b``) is read from its body, after
``inline_method``'s normalisation of a leading ``if b is self.b: return``: a top-level
``if b is not self.b:`` whose block stores ``self.b = b`` (or the store itself) with
nothing after it that could store ``b``.

Residual risk: code that finds ``s`` without being handed it (``gc.get_referrers``, a
frame's ``f_locals``); a subclass or monkeypatch of the class from another module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from evolution.mutators.alias_guard import REFLECTION, stored_attrs
from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    binding_names,
    index,
    qualname,
    short,
    subtree,
)
from evolution.mutators.inline_callee import docstring
from evolution.mutators.inline_method import _attr_only, _no_dict_tricks, known_class
from evolution.mutators.inline_procedure import guard_return
from evolution.mutators.inline_scope import (
    assigned_attrs,
    final_class,
    outer_function,
)

_HOOKS = frozenset({"__setattr__", "__delattr__", "__getattr__", "__getattribute__", "__new__"})
#: a method whose effects are unknown stores any attribute
ANY = "*"


def _class_level(cls: cst.ClassDef) -> tuple[dict[str, cst.FunctionDef], set[str]]:
    """The class's methods defined once (by their written name), and every other name it binds."""
    body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else ()
    defs: dict[str, list[cst.FunctionDef]] = {}
    other: set[str] = set()
    for stmt in body:
        if isinstance(stmt, cst.FunctionDef):
            defs.setdefault(stmt.name.value, []).append(stmt)
        else:
            other.update(n.value for n in subtree(stmt) if isinstance(n, cst.Name))
    once = {k: v[0] for k, v in defs.items() if len(v) == 1 and k not in other}
    return once, other | {k for k, v in defs.items() if len(v) != 1}


def _self_name(func: cst.FunctionDef) -> str | None:
    ps = (*func.params.posonly_params, *func.params.params)
    if func.decorators or not ps:
        return None
    name = ps[0].name.value
    return None if name in binding_names(func.body) else name


def method_stores(
    idx: Index, cls: cst.ClassDef, name: str, seen: frozenset[str] = frozenset()
) -> frozenset[str]:
    """Attribute names method ``name`` may store on ``self`` (through ``self.m()`` calls too).

    ``{ANY}`` when unknown: the method hands ``self`` somewhere (a use that is not
    ``self.x``), calls ``self.x(...)`` for an ``x`` that is not a method of the class, or
    names reflection.
    """
    key = ("forward_stores", id(cls), name, seen)
    found = idx.memo.get(key)
    if isinstance(found, frozenset):
        return found
    methods, _ = _class_level(cls)
    func = methods.get(name)
    me = _self_name(func) if func is not None else None
    out: set[str] = set()
    if func is None or me is None or not _only_receiver(func, me):
        out.add(ANY)
    else:
        for n in subtree(func.body):
            if isinstance(n, cst.Name) and n.value in REFLECTION:
                out.add(ANY)
            if isinstance(n, cst.Attribute) and n.attr.value == "__dict__":
                out.add(ANY)
        out |= stored_attrs(func.body)  # on anything: conservative
        for n in subtree(func.body):
            if (
                isinstance(n, cst.Call)
                and isinstance(n.func, cst.Attribute)
                and isinstance(n.func.value, cst.Name)
                and n.func.value.value == me
            ):
                called = n.func.attr.value
                if called not in methods:
                    out.add(ANY)
                elif called not in seen and called != name:
                    out |= method_stores(idx, cls, called, seen | {name})
    result = frozenset(out)
    idx.memo[key] = result
    return result


def _only_receiver(func: cst.FunctionDef, me: str) -> bool:
    """Every use of ``me`` in the body is ``me.x`` (the parameter itself is not in the body)."""
    uses = sum(1 for n in subtree(func.body) if isinstance(n, cst.Name) and n.value == me)
    attrs = sum(
        1
        for n in subtree(func.body)
        if isinstance(n, cst.Attribute) and isinstance(n.value, cst.Name) and n.value.value == me
    )
    return uses == attrs


def _stores_self(stmt: cst.CSTNode, me: str, attr: str, value: str) -> bool:
    """``me.attr = value`` as a whole statement line."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
        return False
    a = stmt.body[0]
    return (
        isinstance(a, cst.Assign)
        and len(a.targets) == 1
        and _is_attr(a.targets[0].target, me, attr)
        and isinstance(a.value, cst.Name)
        and a.value.value == value
    )


def _is_attr(node: cst.CSTNode, owner: str, attr: str | None = None) -> bool:
    return (
        isinstance(node, cst.Attribute)
        and isinstance(node.value, cst.Name)
        and node.value.value == owner
        and (attr is None or node.attr.value == attr)
    )


def _kills(
    idx: Index, cls: cst.ClassDef, node: cst.CSTNode, owner: str, attr: str, value: str
) -> bool:
    """Whether running ``node`` could leave ``owner.attr`` another object, or rebind ``value``.

    ``owner`` is sealed (see :func:`sealed`): only its own methods can reach it.
    """
    if attr in stored_attrs(node) or value in binding_names(node):
        return True
    for n in subtree(node):
        if isinstance(n, cst.Name) and n.value in REFLECTION:
            return True
        if isinstance(n, cst.Call) and _is_attr(n.func, owner):
            assert isinstance(n.func, cst.Attribute)
            stores = method_stores(idx, cls, n.func.attr.value)
            if ANY in stores or attr in stores:
                return True
    return False


def establishes(
    idx: Index, cls: cst.ClassDef, stmt: cst.CSTNode, owner: str, attr: str, value: str
) -> bool:
    """After ``stmt`` runs to its end, ``owner.attr`` is ``value``: a store, or the guarded store.

    ``if value is not owner.attr:`` with the store in its block: on the other path the
    test itself found ``owner.attr`` to be ``value``.
    """
    if _stores_self(stmt, owner, attr, value):
        return True
    if not (isinstance(stmt, cst.If) and stmt.orelse is None):
        return False
    test = stmt.test
    if not (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and isinstance(test.comparisons[0].operator, cst.IsNot)
        and isinstance(test.left, cst.Name)
        and test.left.value == value
        and _is_attr(test.comparisons[0].comparator, owner, attr)
    ):
        return False
    block = stmt.body.body if isinstance(stmt.body, cst.IndentedBlock) else ()
    for i, s in enumerate(block):
        if _stores_self(s, owner, attr, value):
            return not any(_kills(idx, cls, a, owner, attr, value) for a in block[i + 1 :])
    return False


def method_post(idx: Index, cls: cst.ClassDef, name: str) -> dict[str, str]:
    """``{attr: parameter}``: when method ``name`` returns, ``self.attr`` is that parameter."""
    key = ("forward_post", id(cls), name)
    found = idx.memo.get(key)
    if isinstance(found, dict):
        return found
    out: dict[str, str] = {}
    func = _class_level(cls)[0].get(name)
    me = _self_name(func) if func is not None else None
    if func is not None and me is not None and ANY not in method_stores(idx, cls, name):
        norm = guard_return(func)
        body = norm.body.body if isinstance(norm.body, cst.IndentedBlock) else ()
        stmts = [b for b in body if not docstring(b)]
        params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)][1:]
        returns = any(isinstance(n, cst.Return) for n in subtree(norm.body))
        bound = set(binding_names(func.body))
        for i, stmt in enumerate(stmts):
            for attr in _self_stores(stmt, me):
                for param in params:
                    if (
                        not returns
                        and param not in bound
                        and establishes(idx, cls, stmt, me, attr, param)
                        and not any(_kills(idx, cls, a, me, attr, param) for a in stmts[i + 1 :])
                    ):
                        out[attr] = param
    idx.memo[key] = out
    return out


def _self_stores(stmt: cst.CSTNode, me: str) -> set[str]:
    return {
        t.target.attr.value
        for n in subtree(stmt)
        if isinstance(n, cst.Assign)
        for t in n.targets
        if isinstance(t.target, cst.Attribute) and _is_attr(t.target, me)
    }


def sealed(idx: Index, cls: cst.ClassDef, outer: cst.FunctionDef, recv: str) -> bool:
    """Nothing but ``recv``'s own methods can reach it: it never escapes, nor do they leak it.

    ``recv`` is only ever ``recv.x`` in ``outer``; a method's name is only ever called
    (a bound method would carry ``recv``); every method called on it, and ``__init__``,
    hands ``self`` nowhere (:func:`method_stores` is not ``{ANY}``); the class has no
    hook that runs on attribute access and binds nothing at class level but methods.
    """
    methods, other = _class_level(cls)
    if (_HOOKS & (set(methods) | other)) or not final_class(idx, cls):
        return False
    if "*" in assigned_attrs(idx) or not _no_dict_tricks(idx) or not _attr_only(outer, recv):
        return False
    called: set[int] = set()
    for n in subtree(outer.body):
        if isinstance(n, cst.Call) and _is_attr(n.func, recv):
            called.add(id(n.func))
            assert isinstance(n.func, cst.Attribute)
            if ANY in method_stores(idx, cls, n.func.attr.value):
                return False
    for n in subtree(outer.body):
        if _is_attr(n, recv) and id(n) not in called:
            assert isinstance(n, cst.Attribute)
            if n.attr.value in methods or n.attr.value in other:
                return False  # a bound method, or a class-level name (property, descriptor)
    return "__init__" not in methods or ANY not in method_stores(idx, cls, "__init__")


@dataclass(frozen=True)
class _Forward:
    """Reads of ``recv.attr`` after one fact, each to become ``value``."""

    attr: str
    value: str
    reads: tuple[cst.Attribute, ...]
    line: int


def _facts(stmt: cst.CSTNode, idx: Index, cls: cst.ClassDef, recv: str) -> list[tuple[str, str]]:
    """``(attr, value name)`` that hold once ``stmt`` has run."""
    out: list[tuple[str, str]] = []
    small = (
        stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
    )
    if (
        isinstance(small, cst.Expr)
        and isinstance(small.value, cst.Call)
        and _is_attr(small.value.func, recv)
    ):
        call = small.value
        assert isinstance(call.func, cst.Attribute)
        func = _class_level(cls)[0].get(call.func.attr.value)
        if func is None or any(a.star or a.keyword is not None for a in call.args):
            return out
        params = [p.name.value for p in (*func.params.posonly_params, *func.params.params)][1:]
        args = dict(zip(params, (a.value for a in call.args), strict=False))
        for attr, param in method_post(idx, cls, call.func.attr.value).items():
            value = args.get(param)
            if isinstance(value, cst.Name):
                out.append((attr, value.value))
        return out
    for attr in _self_stores(stmt, recv):
        for n in subtree(stmt):
            if isinstance(n, cst.Name) and establishes(idx, cls, stmt, recv, attr, n.value):
                out.append((attr, n.value))
                break
    return out


def forwards(idx: Index, outer: cst.FunctionDef, recv: str, cls: cst.ClassDef) -> list[_Forward]:
    """Every fact about ``recv`` in ``outer``'s blocks and the reads it forwards."""
    out: list[_Forward] = []
    # a global could be rebound by any call in between: only the function's own names
    local = set(binding_names(outer)) - {outer.name.value}
    for block in subtree(outer.body):
        if not isinstance(block, cst.IndentedBlock):
            continue
        stmts = list(block.body)
        for i, stmt in enumerate(stmts):
            for attr, value in _facts(stmt, idx, cls, recv):
                if value not in local:
                    continue
                reads: list[cst.Attribute] = []
                for later in stmts[i + 1 :]:
                    if _kills(idx, cls, later, recv, attr, value):
                        break
                    reads += [n for n in subtree(later) if _is_attr(n, recv, attr)]  # type: ignore[misc]
                if reads:
                    loc = idx.by_id.get(id(stmt))
                    out.append(_Forward(attr, value, tuple(reads), loc.line if loc else 0))
    return out


class ForwardAttr(CstMutator):
    name = "forward_attr"
    risk = 0.2
    kinds = (cst.FunctionDef,)

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        outer = loc.node
        if not isinstance(outer, cst.FunctionDef) or outer_function(loc) is not None:
            return
        if any(isinstance(n, (cst.Global, cst.Nonlocal)) for n in subtree(outer)):
            return
        idx = scan.idx
        for recv in dict.fromkeys(binding_names(outer.body)):
            cls = known_class(idx, outer, recv)
            if cls is None or not sealed(idx, cls, outer, recv):
                continue
            found = forwards(idx, outer, recv, cls)
            if not found:
                continue
            yield self._finding(scan, loc, recv, found)

    def _finding(self, scan: Scan, loc: Located, recv: str, found: list[_Forward]) -> Finding:
        def edit() -> Edit:
            e = Edit()
            for f in found:
                for read in f.reads:
                    e.replace(read, cst.Name(f.value))
            return e

        pairs = ", ".join(dict.fromkeys(f"`{recv}.{f.attr}` → `{f.value}`" for f in found))
        count = sum(len(f.reads) for f in found)
        detail = f"{count} read(s) of what was just stored: {short(pairs, 80)}"
        line = min(f.line for f in found)
        weight = 1.02 + 0.005 * min(count, 10)
        return scan.finding(loc, detail, weight, edit, function=qualname(loc.chain), line=line)


def forwarded(text: str, function: str, receiver: str) -> str:
    """``text`` with :class:`ForwardAttr`'s rewrite of ``receiver`` in top-level ``function``."""
    idx = index(text) if function else None
    if idx is None:
        return text
    for stmt in idx.module.body:
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == function:
            cls = known_class(idx, stmt, receiver)
            if cls is None or not sealed(idx, cls, stmt, receiver):
                return text
            found = forwards(idx, stmt, receiver, cls)
            if not found:
                return text
            e = Edit()
            for f in found:
                for read in f.reads:
                    e.replace(read, cst.Name(f.value))
            return e.run(idx.module, idx)
    return text
