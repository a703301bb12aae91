"""The script's own structure, as data: its blocks, parameters, prompt texts, tune parameters.

The checker builds a :class:`ScriptInfo` from the AST; the interpreter hands it to the
script as the built-in ``script`` (a ``Script`` record, see
:data:`evolution.lang.types.DOMAIN`) and the engine reads the tune parameters from it to
evolve them.  Values are written as in the script (``"2"``, ``"1.5"``, ``"short"``) so
they print and diff as the reader wrote them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from evolution.lang import ast as A
from evolution.lang.check_base import literal

_HOLE = re.compile(r"(?<!\{)\{(?!\{)([^{}\n]+)\}")


class BlockInfo(NamedTuple):
    """One top-level declaration: its kind (``fn``, ``prompt``, ``record``, …), name and line."""

    kind: str
    name: str
    line: int
    params: tuple[tuple[str, str], ...]
    result: str


class PromptInfo(NamedTuple):
    """A prompt block's text as written, and its holes' expressions as written."""

    name: str
    text: str
    holes: tuple[str, ...]
    result: str
    line: int


class TuneInfo(NamedTuple):
    """A tune parameter: its type, its range (``low``/``high``) or ``choices``, its default."""

    name: str
    type: str
    low: str | None
    high: str | None
    choices: tuple[str, ...]
    default: str
    line: int


class ScriptInfo(NamedTuple):
    """The whole script's structure."""

    file: str
    blocks: tuple[BlockInfo, ...]
    prompts: tuple[PromptInfo, ...]
    tunes: tuple[TuneInfo, ...]


def _text(expr: A.Expr) -> str:
    value = literal(expr)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _block(decl: A.Decl) -> BlockInfo:
    kind = {
        A.GenomeDecl: "genome",
        A.RecordDecl: "record",
        A.UnionDecl: "type",
        A.FnDecl: "fn",
        A.PromptDecl: "prompt",
        A.SourceDecl: "source",
        A.TuneDecl: "tune",
        A.EvolveDecl: "evolve",
        A.Let: "let",
        A.ServerDecl: "server",
        A.McpCall: "call",
    }[type(decl)]
    params: tuple[tuple[str, str], ...] = ()
    result = ""
    if isinstance(decl, A.FnDecl | A.PromptDecl):
        params = tuple((p.name, str(p.type)) for p in decl.params)
    elif isinstance(decl, A.RecordDecl):
        params = tuple((p.name, str(p.type)) for p in decl.fields)
    if isinstance(decl, A.FnDecl | A.PromptDecl):
        result = str(decl.result)
    elif isinstance(decl, A.SourceDecl | A.TuneDecl):
        result = str(decl.type)
    if isinstance(decl, A.McpCall):
        name = f"{decl.server.name}.{decl.tool}"
    else:
        name = decl.genome if isinstance(decl, A.EvolveDecl) else decl.name
    return BlockInfo(kind, name, decl.pos.line, params, result)


def _tune(decl: A.TuneDecl) -> TuneInfo:
    low: str | None
    high: str | None
    if isinstance(decl.domain, A.Range):
        low, high = _text(decl.domain.low), _text(decl.domain.high)
        choices: tuple[str, ...] = ()
    else:
        low = high = None
        choices = tuple(_text(i) for i in decl.domain.items)
    return TuneInfo(
        decl.name, str(decl.type), low, high, choices, _text(decl.default), decl.pos.line
    )


def describe(program: A.Program) -> ScriptInfo:
    """The structure of a parsed script (the checker calls it; it does not need types)."""
    decls = program.decls
    prompts = tuple(
        PromptInfo(
            d.name,
            d.raw,
            tuple(h.strip() for h in _HOLE.findall(d.raw)),
            str(d.result),
            d.pos.line,
        )
        for d in decls
        if isinstance(d, A.PromptDecl)
    )
    tunes = tuple(_tune(d) for d in decls if isinstance(d, A.TuneDecl))
    return ScriptInfo(program.file, tuple(_block(d) for d in decls), prompts, tunes)
