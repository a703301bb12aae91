"""The checker's rules for MCP servers and calls: ``server NAME = "…"`` and ``call ops.tool(…)``.

A server declared with its tools (``server ops(status, approve) = "…"``) is known when the
script is checked, so a call of an unknown server or of a tool it does not list is a
check-time error at the name; a server held in a ``str`` (a ``let``, a parameter) is
found only when run, and so are its tools.  A call's result is ``call<T>`` (or the type
of the ``let`` it is bound to), else ``any``: what the server answers is held to ``T``
when run, like a data source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from evolution.lang import ast as A
from evolution.lang.check_base import Scope, did_you_mean, literal
from evolution.lang.types import ANY, STR, UNIT, FnT, Ty, a, assignable

if TYPE_CHECKING:
    from evolution.lang.check_expr import ExprChecker

SERVER_HINT = (
    'declare it: `server NAME = "tars mcp --store store.db"` (a command) or an http(s) URL'
)


def server_decl(checker: ExprChecker, decl: A.ServerDecl) -> None:
    """A server's location is a str; its listed tools are named once."""
    got = checker.expr(decl.location, checker.globals)
    if not assignable(got, STR):
        checker.error(
            decl.location.pos, f"a server is a command or a URL (a str), not {got}", SERVER_HINT
        )
    tools = decl.tools or ()
    twice = sorted({t for t in tools if tools.count(t) > 1})
    if twice:
        checker.error(decl.pos, f"tool `{twice[0]}` is listed twice", "list each tool once")


def mcp_call(checker: ExprChecker, e: A.McpCall, scope: Scope) -> Ty:
    """The type of ``call[<T>] SERVER.TOOL(name=value, …)``: ``T``, else ``any``."""
    _server(checker, e, scope)
    seen: set[str] = set()
    for arg in e.args:
        if arg.name is None:
            checker.error(
                arg.pos,
                "an MCP tool's arguments are named",
                "write `name=value` (the names of the tool's input schema)",
            )
        elif arg.name in seen:
            checker.error(arg.pos, f"argument `{arg.name}` is given twice", "give it once")
        seen.add(arg.name or "")
        got = checker.expr(arg.value, scope)
        if isinstance(got, FnT) or got == UNIT:
            checker.error(arg.value.pos, f"a tool's argument is data, not {got}", "pass a value")
    return ANY if e.type is None else checker.resolve(e.type)


def _server(checker: ExprChecker, e: A.McpCall, scope: Scope) -> None:
    name = e.server.name
    decl = checker.servers.get(name)
    if name not in scope and decl is not None:
        if decl.tools is not None and e.tool not in decl.tools:
            checker.error(
                e.tool_pos,
                f"server `{name}` has no tool `{e.tool}`{did_you_mean(e.tool, decl.tools)}",
                f"its tools (line {decl.pos.line}): {', '.join(decl.tools) or 'none'}",
            )
        return
    ty = scope.get(name, checker.globals.get(name))
    if ty is None:
        checker.error(
            e.server.pos,
            f"unknown MCP server `{name}`{did_you_mean(name, checker.servers)}",
            SERVER_HINT,
        )
    elif not assignable(ty, STR):
        checker.error(
            e.server.pos,
            f"`{name}` is {a(ty)}, not a server",
            "call a `server` declaration's tools, or a str holding a command or a URL",
        )


def calls_in(node: Any) -> Iterator[A.McpCall]:
    """Every ``call`` in a node of the tree (a declaration, a block), in the order written."""
    if isinstance(node, A.McpCall):
        yield node
    if isinstance(node, tuple):
        for item in node:
            yield from calls_in(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, A.Pos | A.TypeRef):
        for field in dataclasses.fields(node):
            yield from calls_in(getattr(node, field.name))


def no_calls_when_improving(checker: ExprChecker, decls: tuple[A.Decl, ...]) -> None:
    """A script that improves itself may not `call`: each tune trial runs the campaign
    (and the top-level declarations) again, so a call would act once per trial, against
    the real server, from a run that only measures values."""
    improving = [
        item
        for decl in decls
        if isinstance(decl, A.EvolveDecl)
        for item in decl.settings
        if isinstance(item, A.Setting)
        and item.name == "improve_self"
        and literal(item.value) is not False
    ]
    if not improving:
        return
    for call in calls_in(decls):
        checker.error(
            call.pos,
            f"`call {call.server.name}.{call.tool}` in a script that improves itself "
            f"(improve_self, line {improving[0].pos.line}): every tune trial would call it again",
            "move the calls to a script without improve_self, or drop improve_self",
        )
