"""Evaluate a checked script: expressions, statements, functions, `match`, string holes.

Pure: everything that touches the world (reading a source, asking a model, deploying,
notifying, the engine's analysis and the log's history) goes through the :class:`Host`
the runner hands in (``runtime.lang``), so this module is tested on its own and a script's
meaning does not depend on where it runs.  The script was type-checked first, so the
evaluator trusts the types; what only running can find (an index out of range, a division
by zero, a map without the key, a model's reply) is a :class:`ScriptError` at the node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from evolution.errors import ScriptError
from evolution.lang import ast as A
from evolution.lang.check_base import Base
from evolution.lang.checker import Checked
from evolution.lang.introspect import ScriptInfo
from evolution.lang.parser import error_at
from evolution.lang.types import OptT, Ty
from evolution.lang.values import Rec, rec, show

Scope = dict[str, Any]


class Host(Protocol):
    """What a script asks of the world; ``runtime.lang.host`` is the real one."""

    def source(self, decl: A.SourceDecl, ty: Ty, location: Any, args: list[Any]) -> Any:
        """A data source's records, read and validated against ``ty``."""

    def genome(self, decl: A.GenomeDecl) -> Rec:
        """A declared genome as a ``Genome`` record."""

    def prompt(self, decl: A.PromptDecl, text: str, result: Ty) -> Any:
        """Ask a model with ``text``; the reply read into ``result``."""

    def action(self, kind: str, value: Any, pos: A.Pos) -> None:
        """``deploy`` (value: strategy name and arguments), ``notify`` (text) or ``stop``."""

    def builtin(self, name: str, arg: Rec) -> Any:
        """``hotspots(g)`` and ``history(g)``: the engine's analysis and the log's history."""

    def call(self, server: Server, tool: str, args: dict[str, Any], ty: Ty, pos: A.Pos) -> Any:
        """``call ops.tool(…)``: the MCP tool called, its result held to ``ty`` (``any``: as is)."""


class Server(NamedTuple):
    """An MCP server as a call names it: its name in the script, its command or URL, and
    the tools its declaration lists (None: not listed, or a server held in a str)."""

    name: str
    location: str
    tools: tuple[str, ...] | None


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class Fn:
    """A script's function or prompt block, as a value (``prompt = improve`` hands one over)."""

    def __init__(self, decl: A.FnDecl | A.PromptDecl) -> None:
        self.decl = decl

    def __repr__(self) -> str:
        return f"<{type(self.decl).__name__} {self.decl.name}>"


def script_value(info: ScriptInfo, history: list[Rec] | None = None) -> Rec:
    """The built-in ``script``: the script's own structure as a ``Script`` record."""
    blocks = [
        rec(
            "BlockInfo",
            kind=b.kind,
            name=b.name,
            line=b.line,
            params=[rec("Param", name=n, type=t) for n, t in b.params],
            result=b.result,
        )
        for b in info.blocks
    ]
    prompts = [
        rec(
            "PromptText",
            name=p.name,
            text=p.text,
            holes=list(p.holes),
            result=p.result,
            line=p.line,
        )
        for p in info.prompts
    ]
    tunes = [
        rec("TuneParam", name=t.name, type=t.type, low=t.low, high=t.high,
            choices=list(t.choices), default=t.default)
        for t in info.tunes
    ]  # fmt: skip
    return rec(
        "Script", file=info.file, blocks=blocks, prompts=prompts, tunes=tunes, history=history or []
    )


class Interpreter:
    """One script's values: its globals (computed on first use, top-level lets in order)."""

    def __init__(
        self,
        checked: Checked,
        host: Host,
        tunes: dict[str, Any] | None = None,
        history: list[Rec] | None = None,
    ) -> None:
        assert checked.program is not None and checked.info is not None
        self.program = checked.program
        self.table = checked.table
        self.host = host
        self.types = Base(self.program, self.table)
        self.decls: dict[str, A.Decl] = {}
        for decl in self.program.decls:
            if not isinstance(decl, A.EvolveDecl | A.RecordDecl | A.UnionDecl | A.McpCall):
                self.decls[decl.name] = decl
        self.values: Scope = {"script": script_value(checked.info, history)}
        self.tunes = tunes or {}
        self._busy: set[str] = set()

    # -- errors and types ----------------------------------------------------------

    def error(self, pos: A.Pos, message: str, hint: str) -> ScriptError:
        """A runtime :class:`ScriptError` at ``pos``, with the line and caret."""
        return error_at(self.program.text, pos, message, hint)

    def resolve(self, ref: A.TypeRef) -> Ty:
        """A type as written, resolved against the script's records and unions."""
        return self.types.resolve(ref)

    def source_type(self, decl: A.SourceDecl) -> Ty:
        """The type of a source's data: ``file<jsonl, T>`` is ``list<T>``, ``file<json, T>`` is ``T``."""
        ref = decl.type
        if ref.name == "any":
            return self.types.resolve(ref)
        inner = self.resolve(ref.args[-1])
        many = ref.name in ("sql", "csv") or (
            ref.name in ("file", "http") and ref.args[0].name in ("jsonl", "csv")
        )
        from evolution.lang.types import ListT

        return ListT(inner) if many else inner

    # -- globals -------------------------------------------------------------------

    def start(self) -> None:
        """Compute the top-level ``let``s and run the top-level ``call``s, in order."""
        for decl in self.program.decls:
            if isinstance(decl, A.Let):
                self.glob(decl.name, decl.pos)
            elif isinstance(decl, A.McpCall):
                self.expr(decl, {})

    def glob(self, name: str, pos: A.Pos) -> Any:
        """A top-level name's value, computed once."""
        if name in self.values:
            return self.values[name]
        decl = self.decls[name]
        if name in self._busy:
            raise self.error(pos, f"`{name}` needs its own value", "break the cycle of lets")
        self._busy.add(name)
        try:
            value = self._compute(decl)
        finally:
            self._busy.discard(name)
        self.values[name] = value
        return value

    def _compute(self, decl: A.Decl) -> Any:
        if isinstance(decl, A.FnDecl | A.PromptDecl):
            return Fn(decl)
        if isinstance(decl, A.TuneDecl):
            if decl.name in self.tunes:
                return self.tunes[decl.name]
            return self.expr(decl.default, {})
        if isinstance(decl, A.Let):
            return self.expr(decl.value, {})
        if isinstance(decl, A.SourceDecl):
            where = None if decl.location is None else self.expr(decl.location, {})
            args = [self.expr(a.value, {}) for a in decl.args]
            return self.host.source(decl, self.source_type(decl), where, args)
        if isinstance(decl, A.GenomeDecl):
            return self.host.genome(decl)
        if isinstance(decl, A.ServerDecl):
            return self.expr(decl.location, {})
        raise AssertionError(f"not a value: {decl}")  # records and unions are types

    # -- statements ----------------------------------------------------------------

    def block(self, block: A.Block, scope: Scope) -> Any:
        """Run a block's statements; its value is the last one's (an expression) or None."""
        inner = dict(scope)
        value: Any = None
        for stmt in block.stmts:
            value = self.stmt(stmt, inner)
        return value

    def stmt(self, stmt: A.Stmt, scope: Scope) -> Any:
        """Run one statement; gives its value when it is an expression."""
        if isinstance(stmt, A.Let):
            scope[stmt.name] = self.expr(stmt.value, scope)
            return None
        if isinstance(stmt, A.Return):
            raise _Return(None if stmt.value is None else self.expr(stmt.value, scope))
        if isinstance(stmt, A.Deploy):
            call = stmt.strategy
            assert isinstance(call.func, A.Name)
            args = {a.name or "steps": self.expr(a.value, scope) for a in call.args}
            self.host.action("deploy", (call.func.name, args), stmt.pos)
            return None
        if isinstance(stmt, A.Notify):
            self.host.action("notify", show(self.expr(stmt.message, scope)), stmt.pos)
            return None
        if isinstance(stmt, A.Stop):
            reason = "stopped by the script" if stmt.reason is None else None
            text = reason or show(self.expr(stmt.reason, scope))  # type: ignore[arg-type]
            self.host.action("stop", text, stmt.pos)
            return None
        return self.expr(stmt, scope)

    def call_fn(self, fn: Fn, args: list[Any], pos: A.Pos) -> Any:
        """Call a function or a prompt block with its arguments in parameter order."""
        decl = fn.decl
        scope = {p.name: v for p, v in zip(decl.params, args, strict=True)}
        if isinstance(decl, A.PromptDecl):
            text = self.string(decl.text, scope)
            return self.host.prompt(decl, text, self.resolve(decl.result))
        try:
            if isinstance(decl.body, A.Block):
                return self.block(decl.body, scope)
            return self.expr(decl.body, scope)
        except _Return as ret:
            return ret.value
        except RecursionError:
            raise self.error(
                pos, f"`{decl.name}` calls itself too deeply", "end the recursion sooner"
            ) from None

    def handler(self, handler: A.Handler, value: Any) -> None:
        """Run an ``on EVENT(x)`` handler with ``x`` bound to the event's value."""
        scope = {handler.params[0].name: value} if handler.params else {}
        with contextlib.suppress(_Return):  # a `return` leaves the handler
            self.block(handler.body, scope)

    # -- expressions ---------------------------------------------------------------

    def expr(self, e: A.Expr, scope: Scope) -> Any:
        """An expression's value."""
        method: Callable[[Any, Scope], Any] = getattr(self, "_" + type(e).__name__)
        return method(e, scope)

    def _IntLit(self, e: A.IntLit, scope: Scope) -> Any:
        return e.value

    _FloatLit = _IntLit
    _BoolLit = _IntLit

    def _NoneLit(self, e: A.NoneLit, scope: Scope) -> Any:
        return None

    def _Str(self, e: A.Str, scope: Scope) -> str:
        return self.string(e, scope)

    def string(self, e: A.Str, scope: Scope) -> str:
        """A string with its holes filled (values shown as :func:`show` writes them)."""
        return "".join(p if isinstance(p, str) else show(self.expr(p, scope)) for p in e.parts)

    def _Name(self, e: A.Name, scope: Scope) -> Any:
        if e.name in scope:
            return scope[e.name]
        if e.name in self.decls or e.name in self.values:
            return self.glob(e.name, e.pos)
        if e.name in self.table.ctors and not self.table.ctor_fields(e.name):
            return Rec(e.name, ())
        return e.name  # a built-in or a constructor, called by _Call

    def _Field(self, e: A.Field, scope: Scope) -> Any:
        obj = self.expr(e.obj, scope)
        if isinstance(obj, Rec):
            return obj.get(e.name)
        if isinstance(obj, dict) and e.name in obj:  # loose data (`any`)
            return obj[e.name]
        raise self.error(
            e.pos, f"{show(obj)[:60]} has no field `{e.name}`", "check the loose data's shape"
        )

    def _Index(self, e: A.Index, scope: Scope) -> Any:
        obj, key = self.expr(e.obj, scope), self.expr(e.index, scope)
        try:
            return obj[key]
        except (IndexError, KeyError, TypeError):
            size = f"{len(obj)} item(s)" if isinstance(obj, list | dict | str) else "no items"
            raise self.error(
                e.index.pos,
                f"no item {show(key)!s} (the value has {size})",
                "check the length first (`len(x)`) or use `k in m` before `m[k]`",
            ) from None

    def _ListLit(self, e: A.ListLit, scope: Scope) -> Any:
        return [self.expr(i, scope) for i in e.items]

    def _MapLit(self, e: A.MapLit, scope: Scope) -> Any:
        return {self.expr(k, scope): self.expr(v, scope) for k, v in e.entries}

    def _If(self, e: A.If, scope: Scope) -> Any:
        if self.expr(e.cond, scope):
            return self.block(e.then, scope)
        if isinstance(e.orelse, A.Block):
            return self.block(e.orelse, scope)
        if isinstance(e.orelse, A.If):
            return self._If(e.orelse, scope)
        return None

    def _Match(self, e: A.Match, scope: Scope) -> Any:
        from evolution.lang.eval_ops import bind

        subject = self.expr(e.subject, scope)
        for arm in e.arms:
            bound = bind(arm.pattern, subject, self.table)
            if bound is None:
                continue
            inner = {**scope, **bound}
            if arm.guard is not None and not self.expr(arm.guard, inner):
                continue
            if isinstance(arm.body, A.Block):
                return self.block(arm.body, inner)
            return self.stmt(arm.body, inner)
        raise self.error(e.pos, f"no arm matches {show(subject)[:80]}", "add an arm `_ -> ...`")

    def _BinOp(self, e: A.BinOp, scope: Scope) -> Any:
        from evolution.lang.eval_ops import binop

        return binop(self, e, scope)

    def _UnOp(self, e: A.UnOp, scope: Scope) -> Any:
        value = self.expr(e.operand, scope)
        return (not value) if e.op == "not" else -value

    def _McpCall(self, e: A.McpCall, scope: Scope) -> Any:
        from evolution.lang.eval_ops import mcp_call

        return mcp_call(self, e, scope)

    def _Call(self, e: A.Call, scope: Scope) -> Any:
        from evolution.lang.eval_ops import call

        return call(self, e, scope)


def optional_default(ty: Ty) -> bool:
    """A field that may be left out of a constructor call (its value is then ``none``)."""
    return isinstance(ty, OptT)
