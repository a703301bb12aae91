"""Strings with holes: ``"gain {v.gain}"`` and prompt text split into text and expressions.

A hole is ``{expression}``; ``{{`` and ``}}`` are literal braces; ``\\n``, ``\\t``,
``\\"`` and ``\\\\`` are escapes.  Each hole is parsed as an expression whose positions
are those in the script, so an error in ``{h.cod}`` points at ``h`` on its own line.
"""

from __future__ import annotations

import re

from evolution.lang import ast as A

_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "{": "{", "}": "}"}


def split_holes(token: str, pos: A.Pos, text: str) -> tuple[str | A.Expr, ...]:
    """The parts of a string token (quotes included) starting at ``pos`` in ``text``."""
    from evolution.lang.parser import error_at

    quote = 3 if token.startswith('"""') else 1
    body = token[quote:-quote]
    parts: list[str | A.Expr] = []
    chunk: list[str] = []
    line, column = pos.line, pos.column + quote
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
            chunk.append(_ESCAPES[body[i + 1]])
            i, column = i + 2, column + 2
            continue
        if ch in "{}" and body[i + 1 : i + 2] == ch:
            chunk.append(ch)
            i, column = i + 2, column + 2
            continue
        if ch == "}":
            raise error_at(
                text,
                A.Pos(pos.file, line, column),
                "a `}` closes no hole",
                "write `}}` for a literal brace, or open the hole with `{`",
            )
        if ch == "{":
            end = _hole_end(body, i)
            if end < 0:
                raise error_at(
                    text,
                    A.Pos(pos.file, line, column),
                    "a `{` hole is not closed",
                    "close it with `}` on the same line, or write `{{` for a literal brace",
                )
            inner = body[i + 1 : end]
            if not inner.strip():
                raise error_at(
                    text,
                    A.Pos(pos.file, line, column),
                    "an empty hole `{}`",
                    "put an expression in it (`{h.code}`), or write `{{}}` for literal braces",
                )
            if chunk:
                parts.append("".join(chunk))
                chunk = []
            parts.append(_hole(inner, pos.file, text, (line, column + 1)))
            column += end - i + 1
            i = end + 1
            continue
        chunk.append(ch)
        if ch == "\n":
            line, column = line + 1, 1
        else:
            column += 1
        i += 1
    if chunk or not parts:
        parts.append("".join(chunk))
    return tuple(parts)


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_KEYWORDS = frozenset({"true", "false", "none", "not", "and", "or", "in", "if", "match"})


def _hole(inner: str, file: str, text: str, at: tuple[int, int]) -> A.Expr:
    """A hole's expression; ``{h.code}`` (names and fields, the common case) without Lark."""
    from evolution.lang.parser import parse_expr

    stripped = inner.strip()
    if _DOTTED.fullmatch(stripped) and not set(stripped.split(".")) & _KEYWORDS:
        line, column = at[0], at[1] + len(inner) - len(inner.lstrip())
        first, *rest = stripped.split(".")
        expr: A.Expr = A.Name(A.Pos(file, line, column), first)
        column += len(first) + 1
        for name in rest:
            expr = A.Field(A.Pos(file, line, column), expr, name)
            column += len(name) + 1
        return expr
    return parse_expr(inner, file, text, at)


def _hole_end(body: str, start: int) -> int:
    """The index of the ``}`` closing the hole opened at ``start``, or -1 (never over a line)."""
    depth = 0
    in_string = False
    for j in range(start, len(body)):
        ch = body[j]
        if ch == "\n":
            return -1
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch in "([{":
            depth += 1
        elif not in_string and ch in ")]}":
            depth -= 1
            if depth == 0:
                return j if ch == "}" else -1
    return -1
