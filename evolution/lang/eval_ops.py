"""The evaluator's operators, calls and patterns (split from :mod:`evolution.lang.eval` for size).

Pure like the evaluator: a built-in that needs the world (``hotspots``, ``history``) goes
to the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evolution.errors import ScriptError, TarsError
from evolution.lang import ast as A
from evolution.lang.types import ANY, OptT, TypeTable
from evolution.lang.values import Rec, plain, show

if TYPE_CHECKING:
    from evolution.lang.eval import Interpreter, Scope


def bind(pattern: A.Pattern, value: Any, table: TypeTable) -> dict[str, Any] | None:
    """The names a pattern binds when it matches ``value``, or None when it does not match."""
    if isinstance(pattern, A.WildcardPat):
        return {}
    if isinstance(pattern, A.LitPat):
        same = value == pattern.value and isinstance(value, bool) == isinstance(pattern.value, bool)
        return {} if same else None
    if isinstance(pattern, A.NamePat):
        if pattern.name in table.ctors:
            return {} if isinstance(value, Rec) and value.name == pattern.name else None
        return {pattern.name: value}
    if not (isinstance(value, Rec) and value.name == pattern.name):
        return None
    out: dict[str, Any] = {}
    for sub, (_, field) in zip(pattern.args, value.fields, strict=False):
        got = bind(sub, field, table)
        if got is None:
            return None
        out.update(got)
    return out


def binop(interp: Interpreter, e: A.BinOp, scope: Scope) -> Any:
    """``left op right``; ``and``/``or``/``??`` evaluate the right side only when needed."""
    op = e.op
    left = interp.expr(e.left, scope)
    if op == "and":
        return left and interp.expr(e.right, scope)
    if op == "or":
        return left or interp.expr(e.right, scope)
    if op == "??":
        return interp.expr(e.right, scope) if left is None else left
    right = interp.expr(e.right, scope)
    try:
        return _arith(op, left, right)
    except ZeroDivisionError:
        raise interp.error(e.right.pos, "division by zero", "check the divisor first") from None
    except TypeError:
        raise interp.error(
            e.pos,
            f"`{op}` cannot combine {show(left)[:40]} and {show(right)[:40]}",
            "convert with int(), float() or str() first (loose data is checked only when run)",
        ) from None


def _arith(op: str, left: Any, right: Any) -> Any:
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "in":
        return left in right
    if op == "/":
        return left / right
    ops = {
        "<": lambda: left < right,
        "<=": lambda: left <= right,
        ">": lambda: left > right,
        ">=": lambda: left >= right,
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "%": lambda: left % right,
    }
    return ops[op]()


def _args(
    interp: Interpreter, e: A.Call, params: tuple[tuple[str, bool], ...], scope: Scope
) -> list[Any]:
    """The call's arguments in parameter order (``params``: name, may be left out)."""
    values: dict[str, Any] = {}
    for i, arg in enumerate(e.args):
        name = arg.name if arg.name is not None else params[i][0]
        values[name] = interp.expr(arg.value, scope)
    return [values.get(name) for name, _ in params]


def call(interp: Interpreter, e: A.Call, scope: Scope) -> Any:
    """A call of a function, a prompt, a constructor, a record or a built-in."""
    from evolution.lang.eval import Fn

    assert isinstance(e.func, A.Name), "the checker allows calls of names only"
    name = e.func.name
    target = scope.get(name)
    if target is None and name in interp.decls:
        target = interp.glob(name, e.pos)
    if isinstance(target, Fn):
        params = tuple((p.name, False) for p in target.decl.params)
        return interp.call_fn(target, _args(interp, e, params, scope), e.pos)
    table = interp.table
    if name in table.ctors or name in table.records:
        fields = table.ctor_fields(name) if name in table.ctors else table.records[name].fields
        params = tuple((f, isinstance(t, OptT)) for f, t in fields)
        values = _args(interp, e, params, scope)
        return Rec(name, tuple((f, v) for (f, _), v in zip(fields, values, strict=True)))
    (value,) = [interp.expr(a.value, scope) for a in e.args]
    return _builtin(interp, e, name, value)


def _builtin(interp: Interpreter, e: A.Call, name: str, value: Any) -> Any:
    try:
        if name == "len":
            return len(value)
        if name == "str":
            return show(value)
        if name == "int":
            return int(value)
        if name == "float":
            return float(value)
    except (TypeError, ValueError):
        raise interp.error(
            e.args[0].pos,
            f"{name}() cannot take {show(value)[:60]}",
            f"give {name}() a number or a numeric text",
        ) from None
    try:
        return interp.host.builtin(name, value)
    except ScriptError:
        raise
    except TarsError as exc:  # the engine could not answer: said at the call
        raise interp.error(e.pos, f"{name}(): {exc.message}", exc.hint or "") from None


def mcp_call(interp: Interpreter, e: A.McpCall, scope: Scope) -> Any:
    """``call[<T>] SERVER.TOOL(…)``: the server found (a declaration, or a str held in a
    name), the arguments as JSON data, the host calls and holds the result to ``T``."""
    from evolution.lang.eval import Server

    name = e.server.name
    decl = None if name in scope else interp.decls.get(name)
    location = scope[name] if name in scope else interp.glob(name, e.server.pos)
    if not isinstance(location, str) or not location.strip():
        raise interp.error(
            e.server.pos,
            f"`{name}` holds {show(location)[:60]}, not an MCP server",
            'give it a command ("tars mcp --store store.db") or an http(s)://…/mcp URL',
        )
    tools = decl.tools if isinstance(decl, A.ServerDecl) else None
    args = {arg.name or "": plain(interp.expr(arg.value, scope)) for arg in e.args}
    ty = ANY if e.type is None else interp.resolve(e.type)
    return interp.host.call(Server(name, location, tools), e.tool, args, ty, e.pos)
