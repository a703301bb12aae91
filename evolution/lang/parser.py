"""Text of a `.tars` script in, :class:`~evolution.lang.ast.Program` out (pure: no file).

Lark's LALR parser builds a parse tree; :class:`_Builder` turns it into the frozen AST of
:mod:`evolution.lang.ast`, giving every node its file, line and column.  Lark's own
errors never leave this module: they become :class:`ScriptError` with the position, what
was found, what was expected in words, and a fix.  String holes (``"gain {g}"``, prompt
text) are parsed here too, with positions in the script, not in the string.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import (
    UnexpectedInput,
)

from evolution.errors import ScriptError
from evolution.lang import ast as A
from evolution.lang.grammar import GRAMMAR
from evolution.lang.syntax_errors import error_at, shift, translate


class _Newlines:
    """Post-lexer: drops line ends inside ``( )`` and ``[ ]`` and before ``|`` or ``else``.

    So a call, a list or a union may span lines while a line end still ends a statement.
    """

    always_accept = ("_NL",)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        """Filter the lexer's tokens (Lark's post-lexer protocol)."""
        return _keyword_args(self._lines(stream))

    def _lines(self, stream: Iterator[Token]) -> Iterator[Token]:
        stack: list[str] = []
        pending: Token | None = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if stack and stack[-1] != "LBRACE":
                    continue
                pending = pending or tok
                continue
            if pending is not None:
                if kind not in ("VBAR", "ELSE"):
                    yield pending
                pending = None
            if kind in ("LPAR", "LSQB", "LBRACE"):
                stack.append(kind)
            elif kind in ("RPAR", "RSQB", "RBRACE") and stack:
                stack.pop()
            yield tok
        if pending is not None:
            yield pending


def _keyword_args(stream: Iterator[Token]) -> Iterator[Token]:
    """A keyword used as a field's or an argument's name is that name.

    Data a script reads is named by others (an MCP tool's ``genome`` argument, a result's
    ``type`` field), so after ``.``, and after ``(`` or ``,`` when ``=`` or ``:`` follows
    (``call ops.approve(genome="x")``, ``record Row(type: str)``), a keyword is a name;
    anywhere else it stays a keyword (``let type = 1`` is an error).
    """
    before = ""
    held: Token | None = None
    for tok in stream:
        if held is not None:
            named = tok.type in ("EQUAL", "COLON")
            yield Token.new_borrow_pos("NAME", str(held), held) if named else held
            before, held = held.type, None
        word = tok.type != "NAME" and tok.isidentifier()
        if word and before == "DOT":
            tok = Token.new_borrow_pos("NAME", str(tok), tok)
        elif word and before in ("LPAR", "COMMA"):
            held = tok
            continue
        before = tok.type
        yield tok
    if held is not None:
        yield held


@cache
def _lark() -> Lark:
    return Lark(
        GRAMMAR,
        parser="lalr",
        lexer="basic",  # the post-lexer looks one token ahead, past the contextual lexer's state
        start=["start", "expr"],
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_Newlines(),
    )


def parse(text: str, file: str = "<script>") -> A.Program:
    """Parse a whole script; raise :class:`ScriptError` at the first syntax error."""
    try:
        tree = _lark().parse(text, start="start")
        decls = _build(_Builder(file, text, (1, 1)), tree)
    except UnexpectedInput as exc:
        raise translate(exc, text, file, (1, 1)) from None
    except RecursionError:
        raise too_deep(text, file) from None
    return A.Program(file=file, decls=tuple(decls), text=text)


def too_deep(text: str, file: str) -> ScriptError:
    """A script nested deeper than Python's stack allows: an error, never a crash."""
    return error_at(
        text,
        A.Pos(file, 1, 1),
        "the script nests too deeply to be read (thousands of levels)",
        "split the long expression or the nested lists into `let` steps",
    )


def parse_expr(text: str, file: str, text_all: str, at: tuple[int, int]) -> A.Expr:
    """Parse one expression (a string's hole) whose first character is at ``at`` in the file."""
    try:
        tree = _lark().parse(text, start="expr")
    except UnexpectedInput as exc:
        raise translate(exc, text_all, file, at, part=text) from None
    result: A.Expr = _build(_Builder(file, text_all, at), tree)
    return result


def _build(builder: _Builder, tree: Any) -> Any:
    """Run the builder over Lark's tree, bottom-up (one method per rule, named after it).

    A plain walk rather than Lark's ``Transformer``: its per-call wrappers cost a third of
    the whole check on a large script (bench/bench_lang.py).
    """
    rules = builder.rules

    def walk(node: Tree[Token]) -> Any:
        children = [walk(c) if isinstance(c, Tree) else c for c in node.children]
        return rules[node.data](node.meta, children)

    return walk(tree)


class _Builder:
    """Lark's tree to the AST; one method per grammar rule, named after it."""

    def __init__(self, file: str, text: str, at: tuple[int, int]) -> None:
        self.file = file
        self.text = text
        self.at = at
        self.rules: dict[str, Callable[[Any, list[Any]], Any]] = {
            name: getattr(self, name) for name in _RULES
        }

    def _pos(self, line: int, column: int) -> A.Pos:
        if self.at == (1, 1):
            return A.Pos(self.file, line, column)
        return A.Pos(self.file, *shift(self.at, line, column))

    def _int(self, tok: Token) -> int:
        if len(tok) > 100:  # Python refuses over 4,300 digits; no script needs 100
            raise error_at(
                self.text, self._t(tok), "a number of over 100 digits", "write a smaller number"
            )
        return int(tok)

    def _m(self, meta: Any) -> A.Pos:
        return self._pos(meta.line, meta.column)

    def _t(self, tok: Token) -> A.Pos:
        return self._pos(tok.line or 1, tok.column or 1)

    # --- declarations

    def start(self, meta: Any, children: list[Any]) -> list[Any]:
        return children

    def genome_from(self, meta: Any, c: list[Any]) -> A.GenomeDecl:
        path = self.string(meta, [c[1]])
        text = "".join(p for p in path.parts if isinstance(p, str))
        if path.holes:
            raise error_at(
                self.text, path.pos, "a genome's path has no {holes}", "write the path as it is"
            )
        return A.GenomeDecl(self._m(meta), str(c[0]), text)

    def genome_inline(self, meta: Any, c: list[Any]) -> A.GenomeDecl:
        return A.GenomeDecl(self._m(meta), str(c[0]), None, c[1])

    def settings(self, meta: Any, c: list[Any]) -> tuple[Any, ...]:
        return tuple(c)

    def setting(self, meta: Any, c: list[Any]) -> A.Setting:
        return A.Setting(self._t(c[0]), str(c[0]), c[1])

    def setting_group(self, meta: Any, c: list[Any]) -> A.SettingGroup:
        return A.SettingGroup(self._t(c[0]), str(c[0]), c[1])

    def handler(self, meta: Any, c: list[Any]) -> A.Handler:
        return A.Handler(self._m(meta), str(c[0]), c[1] or (), c[2])

    def record_decl(self, meta: Any, c: list[Any]) -> A.RecordDecl:
        return A.RecordDecl(self._m(meta), str(c[0]), c[1] or ())

    def union_decl(self, meta: Any, c: list[Any]) -> A.UnionDecl:
        return A.UnionDecl(self._m(meta), str(c[0]), tuple(c[1:]))

    def variant(self, meta: Any, c: list[Any]) -> A.Variant:
        return A.Variant(self._m(meta), str(c[0]), c[1] or ())

    def params(self, meta: Any, c: list[Any]) -> tuple[A.FieldDecl, ...]:
        return tuple(c)

    def param(self, meta: Any, c: list[Any]) -> A.FieldDecl:
        return A.FieldDecl(self._m(meta), str(c[0]), c[1])

    def fn_decl(self, meta: Any, c: list[Any]) -> A.FnDecl:
        return A.FnDecl(self._m(meta), str(c[0]), c[1] or (), c[2], c[3])

    def prompt_decl(self, meta: Any, c: list[Any]) -> A.PromptDecl:
        c = c[1:]
        text = self.string(meta, [c[3]])
        raw = str(c[3])
        raw = raw[3:-3] if raw.startswith('"""') else raw[1:-1]
        return A.PromptDecl(self._m(meta), str(c[0]), c[1] or (), c[2], text, raw)

    def source_decl(self, meta: Any, c: list[Any]) -> A.SourceDecl:
        rest = c[2]
        if isinstance(rest, tuple) or rest is None:
            return A.SourceDecl(self._m(meta), str(c[0]), c[1], None, rest or ())
        return A.SourceDecl(self._m(meta), str(c[0]), c[1], rest, ())

    def tune_decl(self, meta: Any, c: list[Any]) -> A.TuneDecl:
        rest = [x for x in c[1:] if not isinstance(x, Token)]
        return A.TuneDecl(self._m(meta), str(c[0]), rest[0], rest[1], rest[2])

    def range_lit(self, meta: Any, c: list[Any]) -> A.Range:
        return A.Range(self._m(meta), c[0], c[1])

    def evolve_decl(self, meta: Any, c: list[Any]) -> A.EvolveDecl:
        return A.EvolveDecl(self._m(meta), str(c[0]), c[1])

    def server_decl(self, meta: Any, c: list[Any]) -> A.ServerDecl:
        return A.ServerDecl(self._m(meta), str(c[0]), c[1], c[2])

    def names(self, meta: Any, c: list[Token]) -> tuple[str, ...]:
        return tuple(str(t) for t in c)

    def call_expr(self, meta: Any, c: list[Any]) -> A.McpCall:
        ty, server, tool, args = c
        name = A.Name(self._t(server), str(server))
        return A.McpCall(self._m(meta), ty, name, str(tool), self._t(tool), args or ())

    def type_ref(self, meta: Any, c: list[Any]) -> A.TypeRef:
        name, *rest = c
        optional = bool(rest) and isinstance(rest[-1], Token) and rest[-1].type == "QMARK"
        args = tuple(r for r in rest if isinstance(r, A.TypeRef))
        return A.TypeRef(self._t(name), str(name), args, optional)

    # --- statements

    def block(self, meta: Any, c: list[Any]) -> A.Block:
        return A.Block(self._m(meta), tuple(c))

    def let_stmt(self, meta: Any, c: list[Any]) -> A.Let:
        value = c[2]
        if isinstance(value, A.McpCall) and value.type is None and c[1] is not None:
            # `let s: Status = call ops.status()` is `call<Status>`: the result is held to it
            value = dataclasses.replace(value, type=c[1])
        return A.Let(self._m(meta), str(c[0]), c[1], value)

    def return_stmt(self, meta: Any, c: list[Any]) -> A.Return:
        return A.Return(self._m(meta), c[0])

    def deploy(self, meta: Any, c: list[Any]) -> A.Deploy:
        target = c[0]
        if not isinstance(target, A.Call):
            raise error_at(
                self.text,
                self._m(meta),
                "deploy needs a strategy",
                "write `deploy canary(steps=[1, 10, 50, 100])` or `deploy blue_green()`",
            )
        return A.Deploy(self._m(meta), target)

    def notify(self, meta: Any, c: list[Any]) -> A.Notify:
        return A.Notify(self._m(meta), c[0])

    def stop(self, meta: Any, c: list[Any]) -> A.Stop:
        return A.Stop(self._m(meta), c[0])

    # --- expressions

    def if_expr(self, meta: Any, c: list[Any]) -> A.If:
        return A.If(self._m(meta), c[0], c[1], c[2])

    def match_expr(self, meta: Any, c: list[Any]) -> A.Match:
        return A.Match(self._m(meta), c[0], tuple(c[1:]))

    def arm(self, meta: Any, c: list[Any]) -> A.Arm:
        return A.Arm(self._m(meta), c[0], c[1], c[2])

    def ctor_pattern(self, meta: Any, c: list[Any]) -> A.CtorPat:
        args = tuple(x for x in c[1:] if x is not None)
        return A.CtorPat(self._t(c[0]), str(c[0]), args)

    def name_pattern(self, meta: Any, c: list[Any]) -> A.WildcardPat | A.NamePat:
        if str(c[0]) == "_":
            return A.WildcardPat(self._t(c[0]))
        return A.NamePat(self._t(c[0]), str(c[0]))

    def literal_pattern(self, meta: Any, c: list[Any]) -> A.LitPat:
        lit = c[0]
        if isinstance(lit, A.Str):
            if lit.holes:
                raise error_at(
                    self.text, lit.pos, "a pattern's string has no {holes}", "match a fixed text"
                )
            return A.LitPat(lit.pos, "".join(p for p in lit.parts if isinstance(p, str)))
        value = None if isinstance(lit, A.NoneLit) else lit.value
        return A.LitPat(lit.pos, value)

    def negative_pattern(self, meta: Any, c: list[Any]) -> A.LitPat:
        tok = c[1]
        value = -float(tok) if tok.type == "FLOAT" else -self._int(tok)
        return A.LitPat(self._t(c[0]), value)

    def binop(self, meta: Any, c: list[Any]) -> A.BinOp:
        return A.BinOp(self._m(meta), str(c[1]), c[0], c[2])

    def unop(self, meta: Any, c: list[Any]) -> A.UnOp:
        return A.UnOp(self._m(meta), str(c[0]), c[1])

    def field(self, meta: Any, c: list[Any]) -> A.Field:
        return A.Field(self._t(c[1]), c[0], str(c[1]))

    def call(self, meta: Any, c: list[Any]) -> A.Call:
        return A.Call(self._m(meta), c[0], c[1] or ())

    def index(self, meta: Any, c: list[Any]) -> A.Index:
        return A.Index(self._m(meta), c[0], c[1])

    def args(self, meta: Any, c: list[Any]) -> tuple[A.Arg, ...]:
        return tuple(c)

    def positional(self, meta: Any, c: list[Any]) -> A.Arg:
        return A.Arg(self._m(meta), None, c[0])

    def keyword(self, meta: Any, c: list[Any]) -> A.Arg:
        return A.Arg(self._m(meta), str(c[0]), c[1])

    def name(self, meta: Any, c: list[Any]) -> A.Name:
        return A.Name(self._t(c[0]), str(c[0]))

    def list_lit(self, meta: Any, c: list[Any]) -> A.ListLit:
        return A.ListLit(self._m(meta), tuple(x for x in c if x is not None))

    def map_lit(self, meta: Any, c: list[Any]) -> A.MapLit:
        return A.MapLit(self._m(meta), tuple(c))

    def entry(self, meta: Any, c: list[Any]) -> tuple[A.Expr, A.Expr]:
        return (c[0], c[1])

    def literal(self, meta: Any, c: list[Token]) -> A.Expr:
        tok = c[0]
        pos = self._t(tok)
        kind = tok.type
        if kind == "INT":
            return A.IntLit(pos, self._int(tok))
        if kind == "FLOAT":
            return A.FloatLit(pos, float(tok))
        if kind in ("TRUE", "FALSE"):
            return A.BoolLit(pos, kind == "TRUE")
        if kind == "NONE":
            return A.NoneLit(pos)
        return self.string(meta, [tok])

    def string(self, meta: Any, c: list[Token]) -> A.Str:
        from evolution.lang.strings import split_holes

        tok = c[0]
        pos = self._t(tok)
        return A.Str(pos, split_holes(str(tok), pos, self.text))


#: The grammar's rules that build a node (the names of :class:`_Builder`'s methods).
_RULES = tuple(
    name
    for name in vars(_Builder)
    if not name.startswith("_") and callable(getattr(_Builder, name))
)
