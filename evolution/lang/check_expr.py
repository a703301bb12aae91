"""Expressions, statements and blocks: what type each gives, and every misuse.

The rules a script most often breaks live here: a field read on an optional (``T?``)
without a check, a field a record does not have, an argument of the wrong type, a value
where none is given.  ``if x != none { ... }`` (and ``x != none and ...``) narrows ``x``
from ``T?`` to ``T`` inside; ``x ?? default`` reads it with a fallback.
"""

from __future__ import annotations

from evolution.lang import ast as A
from evolution.lang.check_base import Scope, did_you_mean
from evolution.lang.check_call import mcp_call
from evolution.lang.check_ops import OpsChecker
from evolution.lang.types import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NEVER,
    NONE,
    STR,
    UNIT,
    FnT,
    ListT,
    MapT,
    Named,
    OptT,
    Ty,
    a,
    assignable,
    join,
    numeric,
)

#: Built-in functions: name -> (what it takes, in words; result).  len/str/int/float take
#: any one fitting value; hotspots and history are the engine's, filled by the interpreter.
BUILTINS: dict[str, FnT] = {
    "len": FnT((("value", ANY),), INT, "builtin"),
    "str": FnT((("value", ANY),), STR, "builtin"),
    "int": FnT((("value", ANY),), INT, "builtin"),
    "float": FnT((("value", ANY),), FLOAT, "builtin"),
    "hotspots": FnT((("genome", Named("Genome")),), ListT(Named("Hotspot")), "builtin"),
    "history": FnT((("genome", Named("Genome")),), ListT(Named("Verdict")), "builtin"),
}


class ExprChecker(OpsChecker):
    """Types of expressions and statements; ``ret`` is the enclosing function's result."""

    ret: Ty | None = None

    # ------------------------------------------------------------ statements and blocks

    def block(self, block: A.Block, scope: Scope) -> Ty:
        """Check each statement in order; the block's value is its last expression's."""
        scope = dict(scope)
        value: Ty = UNIT
        for stmt in block.stmts:
            value = self.stmt(stmt, scope)
        return value

    def stmt(self, stmt: A.Stmt, scope: Scope) -> Ty:
        """One statement; a ``let`` adds its name to ``scope`` (which the caller owns)."""
        if isinstance(stmt, A.Let):
            scope[stmt.name] = self.let(stmt, scope)
            return UNIT
        if isinstance(stmt, A.Return):
            return self.return_(stmt, scope)
        if isinstance(stmt, A.Deploy | A.Notify | A.Stop):
            return self.action(stmt, scope)
        return self.expr(stmt, scope)

    def let(self, stmt: A.Let, scope: Scope) -> Ty:
        """The type a ``let`` gives its name: the declared one, or the value's."""
        value = self.expr(stmt.value, scope)
        if value == UNIT:
            self.error(
                stmt.value.pos,
                f"`{stmt.name}` is given no value",
                "the right side is an action or a match whose arms give different types",
            )
            value = ANY
        if stmt.type is None:
            return value
        declared = self.resolve(stmt.type)
        if not assignable(value, declared):
            self.error(
                stmt.value.pos,
                f"`{stmt.name}` is declared {declared} but given {value}",
                f"give it {a(declared)}, or change its declared type",
            )
        return declared

    def return_(self, stmt: A.Return, scope: Scope) -> Ty:
        value = NONE if stmt.value is None else self.expr(stmt.value, scope)
        if self.ret is None:
            self.error(stmt.pos, "`return` outside a function", "return only inside `fn`")
        elif not assignable(value, self.ret):
            pos = stmt.value.pos if stmt.value is not None else stmt.pos
            self.error(
                pos, f"returns {value}, the function gives {self.ret}", "return a fitting value"
            )
        return NEVER

    def action(self, stmt: A.Deploy | A.Notify | A.Stop, scope: Scope) -> Ty:
        """``deploy``, ``notify`` and ``stop``: what they take."""
        if isinstance(stmt, A.Deploy):
            self.deploy(stmt.strategy, scope)
            return UNIT
        value = stmt.message if isinstance(stmt, A.Notify) else stmt.reason
        if value is not None:
            got = self.expr(value, scope)
            if not assignable(got, STR):
                self.error(value.pos, f"a message is text, not {got}", 'write "… {value} …"')
        return UNIT

    def deploy(self, call: A.Call, scope: Scope) -> None:
        """``canary(steps=[...], interval=...)`` or ``blue_green()``."""
        name = call.func.name if isinstance(call.func, A.Name) else ""
        if name == "blue_green":
            if call.args:
                self.error(
                    call.args[0].pos, "blue_green takes no arguments", "write `blue_green()`"
                )
            return
        if name != "canary":
            self.error(
                call.pos,
                f"unknown deploy strategy `{name or '?'}`{did_you_mean(name, ['canary', 'blue_green'])}",
                "write `deploy canary(steps=[1, 10, 50, 100])` or `deploy blue_green()`",
            )
            return
        allowed: dict[str, Ty] = {"steps": ListT(INT), "interval": FLOAT, "mirror": BOOL}
        for arg in call.args:
            want = allowed.get(arg.name or "")
            if want is None:
                self.error(
                    arg.pos, "canary takes steps=, interval= and mirror=", "name each argument"
                )
                continue
            got = self.expr(arg.value, scope)
            if not assignable(got, want):
                self.error(arg.value.pos, f"{arg.name} is {want}, not {got}", f"give {a(want)}")
            elif arg.name == "steps":
                self.steps(arg.value)

    def steps(self, value: A.Expr) -> None:
        """A literal step list: percentages in 1..100, rising, ending at 100."""
        if not isinstance(value, A.ListLit):
            return
        numbers = [i.value for i in value.items if isinstance(i, A.IntLit)]
        if len(numbers) != len(value.items) or not numbers:
            return
        bad = [n for n in numbers if not 1 <= n <= 100]
        rising = all(a < b for a, b in zip(numbers, numbers[1:], strict=False))
        if bad or not rising or numbers[-1] != 100:
            self.error(
                value.pos,
                f"canary steps {numbers} are not rising percentages ending at 100",
                "write shares of traffic in 1..100, each larger, the last 100: [1, 10, 50, 100]",
            )

    # ------------------------------------------------------------ expressions

    def expr(self, e: A.Expr, scope: Scope) -> Ty:
        """The type of an expression (``any`` after an error)."""
        if isinstance(e, A.IntLit):
            return INT
        if isinstance(e, A.FloatLit):
            return FLOAT
        if isinstance(e, A.BoolLit):
            return BOOL
        if isinstance(e, A.NoneLit):
            return NONE
        if isinstance(e, A.Str):
            return self.string(e, scope)
        if isinstance(e, A.Name):
            return self.name(e, scope)
        if isinstance(e, A.Field):
            return self.field(e, scope)
        if isinstance(e, A.Call):
            return self.call(e, scope)
        if isinstance(e, A.Index):
            return self.index(e, scope)
        if isinstance(e, A.ListLit):
            return self.list_(e, scope)
        if isinstance(e, A.MapLit):
            return self.map_(e, scope)
        if isinstance(e, A.BinOp):
            return self.binop(e, scope)
        if isinstance(e, A.UnOp):
            return self.unop(e, scope)
        if isinstance(e, A.If):
            return self.if_(e, scope)
        if isinstance(e, A.McpCall):
            return mcp_call(self, e, scope)
        return self.match(e, scope)

    def string(self, e: A.Str, scope: Scope) -> Ty:
        for hole in e.holes:
            got = self.expr(hole, scope)
            if isinstance(got, FnT) or got == UNIT:
                self.error(hole.pos, f"a hole shows a value, not {got}", "put a value in `{…}`")
        return STR

    def name(self, e: A.Name, scope: Scope) -> Ty:
        if e.name in scope:
            return scope[e.name]
        if e.name in self.globals:
            return self.globals[e.name]
        if e.name in self.table.ctors:
            fields = self.table.ctor_fields(e.name)
            if fields:
                need = ", ".join(f"{n}: {t}" for n, t in fields)
                return self.error(
                    e.pos, f"`{e.name}` needs its fields ({need})", f"write `{e.name}(…)`"
                )
            return Named(self.table.ctors[e.name])
        if e.name in BUILTINS:
            return BUILTINS[e.name]
        known = [*scope, *self.globals, *self.table.ctors, *BUILTINS]
        return self.error(
            e.pos,
            f"unknown name `{e.name}`{did_you_mean(e.name, known)}",
            "declare it first (`let`, a parameter, or a top-level declaration)",
        )

    def field(self, e: A.Field, scope: Scope) -> Ty:
        obj = self.expr(e.obj, scope)
        if obj == ANY:
            return ANY
        if isinstance(obj, OptT):
            return self.error(
                e.pos,
                f"`.{e.name}` read on {a(obj)}, which may be none",
                "check it first (`if x != none { x.field }`), or give a fallback (`x ?? other`)",
            )
        if isinstance(obj, Named) and obj.name in self.table.records:
            record = self.table.records[obj.name]
            found = record.field(e.name)
            if found is None:
                names = [n for n, _ in record.fields]
                return self.error(
                    e.pos,
                    f"{obj} has no field `{e.name}`{did_you_mean(e.name, names)}",
                    f"{obj}'s fields: {', '.join(names) or 'none'}",
                )
            return found
        if isinstance(obj, Named):
            return self.error(
                e.pos, f"{obj} is a union: its fields are read by `match`", f"match on the {obj}"
            )
        return self.error(e.pos, f"{a(obj)} has no fields", f"`.{e.name}` reads a record's field")

    def index(self, e: A.Index, scope: Scope) -> Ty:
        obj, key = self.expr(e.obj, scope), self.expr(e.index, scope)
        if isinstance(obj, ListT) or obj == STR:
            if not assignable(key, INT):
                self.error(e.index.pos, f"an index is an int, not {key}", "index with an int")
            return obj.elem if isinstance(obj, ListT) else STR
        if isinstance(obj, MapT):
            if not assignable(key, obj.key):
                self.error(e.index.pos, f"this map's keys are {obj.key}, not {key}", "use a key")
            return obj.value
        if obj == ANY:
            return ANY
        return self.error(e.pos, f"{a(obj)} cannot be indexed", "index a list, a map or a str")

    def list_(self, e: A.ListLit, scope: Scope) -> Ty:
        elem: Ty = ANY
        for i, item in enumerate(e.items):
            got = self.expr(item, scope)
            if i == 0:
                elem = got
                continue
            joined = join(elem, got)
            if joined is None:
                return self.error(
                    item.pos, f"a list of {elem} holds {a(got)}", "keep one type in a list"
                )
            elem = joined
        return ListT(elem)

    def map_(self, e: A.MapLit, scope: Scope) -> Ty:
        key: Ty = ANY
        value: Ty = ANY
        for i, (k, v) in enumerate(e.entries):
            got_k, got_v = self.expr(k, scope), self.expr(v, scope)
            if i == 0:
                key, value = got_k, got_v
                continue
            if join(key, got_k) is None or join(value, got_v) is None:
                return self.error(
                    k.pos, "a map's entries differ in type", "keep one key and one value type"
                )
            key, value = join(key, got_k) or key, join(value, got_v) or value
        return MapT(key, value)

    def unop(self, e: A.UnOp, scope: Scope) -> Ty:
        got = self.expr(e.operand, scope)
        if e.op == "not":
            if not assignable(got, BOOL):
                self.error(e.operand.pos, f"`not` takes a bool, not {got}", "compare first")
            return BOOL
        if not numeric(got):
            return self.error(e.operand.pos, f"`-` takes a number, not {got}", "negate a number")
        return got

    def if_(self, e: A.If, scope: Scope) -> Ty:
        cond = self.expr(e.cond, scope)
        if not assignable(cond, BOOL):
            self.error(e.cond.pos, f"a condition is a bool, not {cond}", "compare it (`x > 1`)")
        then = self.block(e.then, self.narrowed(e.cond, scope, True))
        if e.orelse is None:
            return UNIT
        rest = self.narrowed(e.cond, scope, False)
        other = (
            self.block(e.orelse, rest)
            if isinstance(e.orelse, A.Block)
            else self.if_(e.orelse, rest)
        )
        return join(then, other) or UNIT

    def narrowed(self, cond: A.Expr, scope: Scope, truth: bool) -> Scope:
        """``scope`` with ``x: T`` where ``cond`` being ``truth`` proves an ``x: T?`` is not none."""
        if isinstance(cond, A.BinOp) and cond.op == "and" and truth:
            return self.narrowed(cond.right, self.narrowed(cond.left, scope, True), True)
        if not (isinstance(cond, A.BinOp) and cond.op in ("!=", "==")):
            return scope
        name, other = cond.left, cond.right
        if isinstance(name, A.NoneLit):
            name, other = other, name
        if not (isinstance(name, A.Name) and isinstance(other, A.NoneLit)):
            return scope
        current = scope.get(name.name, self.globals.get(name.name))
        if isinstance(current, OptT) and (cond.op == "!=") == truth:
            return {**scope, name.name: current.inner}
        return scope
