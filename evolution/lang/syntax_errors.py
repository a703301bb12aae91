"""Syntax errors in words: Lark's exceptions turned into :class:`ScriptError` at the edge.

Lark says what it expected as terminal names (``RPAR``, ``_NL``); a user reads "`)`" and
"the end of the line".  Positions inside a string's hole are moved to where the hole is
in the script, so the caret lands on the script's own line.
"""

from __future__ import annotations

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr

from evolution.errors import ScriptError
from evolution.lang import ast as A


def line_of(text: str, line: int) -> str:
    """The text of a 1-based line (empty past the end)."""
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def error_at(text: str, pos: A.Pos, message: str, hint: str) -> ScriptError:
    """A :class:`ScriptError` at ``pos``, carrying the line's text for the caret."""
    return ScriptError(
        message,
        file=pos.file,
        line=pos.line,
        column=pos.column,
        hint=hint,
        line_text=line_of(text, pos.line),
    )


_WORDS = {
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "LONG_STRING": 'a """text""" block',
    "_NL": "the end of the line",
    "$END": "the end of the script",
    "MUL": "`*`, `/` or `%`",
    "QMARK": "`?`",
}


def _word(name: str) -> str:
    from evolution.lang.parser import _lark

    if name in _WORDS:
        return _WORDS[name]
    try:
        pattern = _lark().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"`{pattern.value}`" if isinstance(pattern, PatternStr) else name.lower()


#: Shown first when expected: what closes a bracket or ends a line is the likely fix.
_FIRST = ("RPAR", "RSQB", "RBRACE", "_NL", "$END")


def _expected(names: set[str] | frozenset[str]) -> str:
    first = [_word(n) for n in _FIRST if n in names]
    words = first + sorted({_word(n) for n in names if n not in _FIRST})
    if len(words) > 8:
        return ", ".join(words[:8]) + ", …"
    return ", ".join(words) or "nothing"


def translate(
    exc: UnexpectedInput, text: str, file: str, at: tuple[int, int], part: str | None = None
) -> ScriptError:
    """Lark's error as a :class:`ScriptError`: position, what was found, what was expected.

    ``part`` is the text parsed when it is a string's hole (starting at ``at``), not the script.
    """
    end = "the hole" if part is not None else "the script"
    part = text if part is None else part
    line, column = shift(at, getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text_char(text, line, column)
        message = f"unexpected character {char!r}"
        hint = f"expected {_expected(exc.allowed or set())} here"
        if char == '"':
            hint = (
                'a string ends on its line: close it with `"`, or use """…""" for text over lines'
            )
    elif isinstance(exc, UnexpectedToken):
        found = _found(exc.token).replace("the script", end)
        if exc.token.type == "$END":
            line, column = _end(part, at)
        message = f"unexpected {found}"
        hint = f"expected {_expected(exc.expected)} here"
    elif isinstance(exc, UnexpectedEOF):
        line, column = _end(part, at)
        message = f"{end} ends in the middle of a declaration"
        hint = f"expected {_expected(set(exc.expected))}; close what is open"
    else:  # pragma: no cover - Lark raises only the three above
        message, hint = str(exc), "fix the syntax"
    return ScriptError(
        message, file=file, line=line, column=column, hint=hint, line_text=line_of(text, line)
    )


def _found(tok: Token) -> str:
    if tok.type == "$END":
        return "end of the script"
    if tok.type == "_NL":
        return "end of the line"
    return f"{_word(tok.type)} {str(tok)!r}" if tok.type in _WORDS else f"`{tok}`"


def text_char(text: str, line: int, column: int) -> str:
    """The character at a 1-based line and column (empty past the end)."""
    row = line_of(text, line)
    return row[column - 1] if 0 < column <= len(row) else ""


def _end(part: str, at: tuple[int, int]) -> tuple[int, int]:
    """Where the parsed text ends (past its last character), in the script."""
    lines = part.rstrip().splitlines() or [""]
    return shift(at, len(lines), len(lines[-1]) + 1)


def shift(at: tuple[int, int], line: int, column: int) -> tuple[int, int]:
    """A position inside a hole's text moved to where the hole is in the script."""
    return at[0] + line - 1, column + (at[1] - 1 if line == 1 else 0)
