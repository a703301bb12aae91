"""What every part of the checker shares: the error list, the type table, scopes, types as written.

The checker never stops at the first error: each rule records a :class:`ScriptError` and
gives ``any`` for the broken part, so one mistake is reported once and the rest of the
script is still checked (``any`` fits everywhere, so it does not cascade).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from evolution.errors import ScriptError
from evolution.lang import ast as A
from evolution.lang.parser import error_at
from evolution.lang.types import (
    ANY,
    FLOAT,
    INT,
    PRIMS,
    SCALARS,
    ListT,
    MapT,
    Named,
    OptT,
    Ty,
    TypeTable,
)

Scope = dict[str, Ty]

#: Type constructors that only a `source` declaration may use.
SOURCE_KINDS = ("file", "csv", "http", "sql", "mcp")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean `x`?)`` when a known name is close to ``name``, else nothing."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def literal(expr: A.Expr | None) -> int | float | str | bool | None:
    """The value of a literal (``-3`` included), or None when ``expr`` is not one."""
    if isinstance(expr, A.IntLit | A.FloatLit | A.BoolLit):
        return expr.value
    if isinstance(expr, A.Str) and not expr.holes:
        return "".join(p for p in expr.parts if isinstance(p, str))
    if isinstance(expr, A.UnOp) and expr.op == "-":
        inner = literal(expr.operand)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner
    return None


class Base:
    """The checker's state: the script's text, the type table, the globals, the errors."""

    def __init__(self, program: A.Program, table: TypeTable) -> None:
        self.program = program
        self.table = table
        self.errors: list[ScriptError] = []
        self.globals: Scope = {}
        self.sources: set[str] = set()
        self.servers: dict[str, A.ServerDecl] = {}

    def error(self, pos: A.Pos, message: str, hint: str) -> Ty:
        """Record an error at ``pos``; give ``any`` so the caller can carry on."""
        self.errors.append(error_at(self.program.text, pos, message, hint))
        return ANY

    def type_names(self) -> list[str]:
        """Every type name a script may write."""
        return [*PRIMS, "list", "map", *self.table.records, *self.table.unions]

    def resolve(self, ref: A.TypeRef) -> Ty:
        """A type as written to a type; an unknown or malformed one is an error (``any``)."""
        ty = self._resolve_bare(ref)
        return OptT(ty) if ref.optional and ty != ANY else ty

    def _resolve_bare(self, ref: A.TypeRef) -> Ty:
        name, args = ref.name, ref.args
        if name in SOURCE_KINDS:
            return self.error(
                ref.pos,
                f"`{ref}` is a data source's type",
                f"declare it with `source NAME: {ref} = ...` and use the source's name",
            )
        if name == "list" or name == "map":
            want = 1 if name == "list" else 2
            if len(args) != want:
                form = "list<T>" if name == "list" else "map<K, V>"
                return self.error(ref.pos, f"`{name}` takes {want} type(s)", f"write `{form}`")
            if name == "list":
                return ListT(self.resolve(args[0]))
            key = self.resolve(args[0])
            if key not in (*SCALARS, ANY):
                self.error(args[0].pos, f"a map's key is {key}", "use str, int, float or bool keys")
            return MapT(key, self.resolve(args[1]))
        if args:
            return self.error(ref.pos, f"`{name}` takes no type arguments", f"write `{name}` alone")
        if name in PRIMS:
            return PRIMS[name]
        if name in self.table.records or name in self.table.unions:
            return Named(name)
        return self.error(
            ref.pos,
            f"unknown type `{name}`{did_you_mean(name, self.type_names())}",
            "declare it (`record NAME(...)` or `type NAME = A | B`) or use a built-in type",
        )

    def numeric_literal(self, expr: A.Expr, want: Ty) -> int | float | None:
        """A number written in a `tune` range or default, checked against its type."""
        value = literal(expr)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(expr.pos, "a tune bound is a number written out", "write a literal: `1..8`")
            return None
        if want == INT and isinstance(value, float):
            self.error(expr.pos, f"{value} is not an int", "write a whole number, or declare float")
            return None
        return float(value) if want == FLOAT else value
