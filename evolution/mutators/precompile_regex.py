"""``re.match(r"...", s)`` inside a function looks the pattern up in re's cache on every call.

A module-level ``re.compile`` does that once; the compiled pattern's methods take the
same arguments minus the pattern and flags, so the call keeps its meaning.  Only literal
patterns that compile now, with constant flags, are moved (an invalid pattern would
otherwise fail at import instead of at the call).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import libcst as cst

from evolution.mutators.base import CstMutator, Finding, Scan
from evolution.mutators.cst_tools import (
    Edit,
    Index,
    Located,
    enclosing_loops,
    import_anchor,
    imports_module,
    qualname,
    short,
    single_small,
    statement,
)

#: re function → how many positional arguments it takes after the pattern, before flags
_METHODS = {
    "match": 1,
    "search": 1,
    "fullmatch": 1,
    "findall": 1,
    "finditer": 1,
    "sub": 3,
    "subn": 3,
    "split": 2,
}


def _flags_value(expr: cst.CSTNode) -> int | None:
    """The value of a constant flags expression such as ``re.I | re.M``, else ``None``."""
    if isinstance(expr, cst.Integer):
        return int(expr.evaluated_value)
    if (
        isinstance(expr, cst.Attribute)
        and isinstance(expr.value, cst.Name)
        and expr.value.value == "re"
    ):
        value = getattr(re, expr.attr.value, None)
        return int(value) if isinstance(value, (int, re.RegexFlag)) else None
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.BitOr):
        left, right = _flags_value(expr.left), _flags_value(expr.right)
        return None if left is None or right is None else left | right
    return None


def _pattern_ok(idx: Index, pattern: cst.CSTNode, flags: int) -> bool:
    if not isinstance(pattern, (cst.SimpleString, cst.ConcatenatedString)):
        return False
    try:
        value = ast.literal_eval("(" + idx.code(pattern).strip() + ")")
        re.compile(value, flags)
    except (ValueError, SyntaxError, re.error, TypeError):
        return False
    return True


def _imports_re(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and any(
        isinstance(small, cst.Import)
        and any(
            isinstance(a.name, cst.Name) and a.name.value == "re" and a.asname is None
            for a in small.names
        )
        for small in stmt.body
    )


def _is_regex_const(stmt: cst.CSTNode) -> bool:
    small = single_small(stmt)
    return (
        isinstance(small, cst.Assign)
        and isinstance(small.value, cst.Call)
        and isinstance(small.value.func, cst.Attribute)
        and isinstance(small.value.func.value, cst.Name)
        and small.value.func.value.value == "re"
        and small.value.func.attr.value == "compile"
    )


class PrecompileRegex(CstMutator):
    name = "precompile_regex"
    risk = 0.05
    kinds = (cst.Call,)

    def applies(self, idx: Index) -> bool:
        return imports_module(idx, "re") and _anchor(idx) is not None

    def match(self, scan: Scan, loc: Located) -> Iterator[Finding]:
        idx, call = scan.idx, loc.node
        anchor = scan.derived(_anchor)
        assert isinstance(call, cst.Call) and anchor is not None
        func = call.func
        if not (
            isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "re"
            and func.attr.value in _METHODS
        ):
            return
        if not any(isinstance(p, cst.FunctionDef) for p in loc.parents):
            return
        method = func.attr.value
        positional = [a for a in call.args if a.keyword is None]
        if (
            not positional
            or any(a.star for a in call.args)
            or len(positional) - 1 > _METHODS[method]
        ):
            return
        if any(a.keyword is None for a in call.args[len(positional) :]):
            return
        flags_arg = [a for a in call.args if a.keyword is not None and a.keyword.value == "flags"]
        if any(a.keyword is not None and a.keyword.value == "pattern" for a in call.args):
            return
        flags = _flags_value(flags_arg[0].value) if flags_arg else 0
        pattern = positional[0].value
        if flags is None or not _pattern_ok(idx, pattern, flags):
            return
        function = qualname(loc.parents)
        in_loop = bool(enclosing_loops(loc))

        def edit() -> Edit:
            simple = function.split(".")[-1].upper().strip("_") or "MODULE"
            n = 1
            while f"_RE_{simple}_{n}" in idx.all_names:
                n += 1
            const = f"_RE_{simple}_{n}"
            flags_code = f", {idx.code(flags_arg[0].value)}" if flags_arg else ""
            pattern_code = " ".join(idx.code(p).strip() for p in _parts(pattern))
            e = Edit().insert_after(
                anchor, statement(f"{const} = re.compile({pattern_code}{flags_code})")
            )
            kept = [
                a
                for a in call.args
                if a is not positional[0] and all(a is not f for f in flags_arg)
            ]
            if kept and call.args and kept[-1] is not call.args[-1]:
                kept[-1] = kept[-1].with_changes(comma=call.args[-1].comma)
            new = call.with_changes(
                func=cst.Attribute(cst.Name(const), cst.Name(method)), args=kept
            )
            return e.replace(call, new)

        detail = f"`{short(idx.code(call))}` compiles (or looks up) its pattern on every call"
        yield scan.finding(loc, detail, 1.3 if in_loop else 1.15, edit)


def _anchor(idx: Index) -> cst.BaseStatement | None:
    """After the imports (and after earlier precompiled patterns), once ``re`` is imported."""
    anchor = import_anchor(idx)
    if anchor is None:
        return None
    body: list[cst.BaseStatement] = list(idx.module.body)
    at = next(i for i, s in enumerate(body) if s is anchor)
    if not any(_imports_re(s) for s in body[: at + 1]):
        return None
    while at + 1 < len(body) and _is_regex_const(body[at + 1]):
        at += 1
    return body[at]


def _parts(pattern: cst.CSTNode) -> list[cst.CSTNode]:
    """The literal pieces of an implicitly concatenated string, in order."""
    if isinstance(pattern, cst.ConcatenatedString):
        return [*_parts(pattern.left), *_parts(pattern.right)]
    return [pattern]
