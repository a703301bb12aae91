"""Calls and operators: arguments against parameters and fields, operands against operators.

A call is to a function, a prompt block, a built-in, or a constructor (a record's name or
a union's variant): arguments are positional or ``name=value``, each checked against the
parameter's or field's type; an optional field may be left out (it is ``none``).
"""

from __future__ import annotations

from evolution.lang import ast as A
from evolution.lang.check_base import Scope
from evolution.lang.check_match import MatchChecker
from evolution.lang.types import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NONE,
    SCALARS,
    STR,
    Fields,
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

_COMPARE = ("<", "<=", ">", ">=")
_ARITH = ("-", "*", "/", "%")


class OpsChecker(MatchChecker):
    """Calls and binary operators."""

    def call(self, e: A.Call, scope: Scope) -> Ty:
        """A call's result type, after checking its arguments."""
        func = e.func
        if isinstance(func, A.Name) and func.name not in scope and func.name not in self.globals:
            if func.name in self.table.ctors:
                fields = self.table.ctor_fields(func.name)
                self.arguments(e, func.name, fields, scope, constructor=True)
                return Named(self.table.ctors[func.name])
            record = self.table.records.get(func.name)
            if record is not None and not record.builtin:
                self.arguments(e, func.name, record.fields, scope, constructor=True)
                return Named(func.name)
        target = self.expr(func, scope)
        if target == ANY:
            for arg in e.args:
                self.expr(arg.value, scope)
            return ANY
        if not isinstance(target, FnT):
            for arg in e.args:
                self.expr(arg.value, scope)
            return self.error(
                e.pos, f"{a(target)} cannot be called", "call a function, a prompt or a constructor"
            )
        name = func.name if isinstance(func, A.Name) else "this function"
        self.arguments(e, name, target.params, scope, constructor=False)
        if target.kind == "builtin" and name in ("int", "float") and e.args:
            got = self.expr(e.args[0].value, scope)
            if got not in (INT, FLOAT, STR, BOOL, ANY):
                self.error(
                    e.args[0].pos,
                    f"{name}() takes a number or a str, not {got}",
                    "convert a scalar",
                )
        if target.kind == "builtin" and name == "len" and e.args:
            got = self.expr(e.args[0].value, scope)
            if not (isinstance(got, ListT | MapT) or got in (STR, ANY)):
                self.error(
                    e.args[0].pos,
                    f"len() takes a list, a map or a str, not {got}",
                    "measure a collection",
                )
        return target.result

    def arguments(
        self, e: A.Call, name: str, params: Fields, scope: Scope, *, constructor: bool
    ) -> None:
        """Each argument against its parameter; missing, extra and repeated ones are errors."""
        given: dict[str, A.Arg] = {}
        names = [n for n, _ in params]
        for i, arg in enumerate(e.args):
            key = arg.name if arg.name is not None else (names[i] if i < len(names) else None)
            if key is None or key not in names:
                self.expr(arg.value, scope)
                what = f"`{arg.name}`" if arg.name else f"{i + 1} arguments"
                self.error(
                    arg.pos,
                    f"{name} takes no {what}",
                    f"{name} takes ({', '.join(f'{n}: {t}' for n, t in params)})",
                )
                continue
            if key in given:
                self.error(arg.pos, f"`{key}` is given twice", "give each argument once")
            given[key] = arg
        for pname, ptype in params:
            found = given.get(pname)
            if found is None:
                if not (constructor and isinstance(ptype, OptT)):
                    self.error(e.pos, f"{name} needs `{pname}` ({ptype})", f"pass {pname}=…")
                continue
            got = self.expr(found.value, scope)
            if not assignable(got, ptype):
                self.error(
                    found.value.pos,
                    f"{name}'s `{pname}` is {ptype}, not {got}",
                    f"pass {a(ptype)}",
                )

    def binop(self, e: A.BinOp, scope: Scope) -> Ty:
        """The type an operator gives, after checking both sides."""
        op = e.op
        left = self.expr(e.left, scope)
        if op in ("and", "or"):
            right_scope = self.narrowed(e.left, scope, op == "and")
            right = self.expr(e.right, right_scope)
            for side, ty in ((e.left, left), (e.right, right)):
                if not assignable(ty, BOOL):
                    self.error(side.pos, f"`{op}` takes bools, not {ty}", "compare first (`x > 1`)")
            return BOOL
        right = self.expr(e.right, scope)
        if op in ("==", "!="):
            if join(left, right) is None and NONE not in (left, right):
                self.error(
                    e.pos, f"{a(left)} is never equal to {a(right)}", "compare values of one type"
                )
            return BOOL
        if op in _COMPARE:
            if not (
                (numeric(left) and numeric(right)) or (left in (STR, ANY) and right in (STR, ANY))
            ):
                self.error(
                    e.pos,
                    f"`{op}` compares numbers or strs, not {left} and {right}",
                    "compare like with like",
                )
            return BOOL
        if op == "in":
            return self.membership(e, left, right)
        if op == "??":
            if not isinstance(left, OptT):
                return join(left, right) or left
            if not assignable(right, left.inner):
                self.error(
                    e.right.pos,
                    f"the fallback of {a(left)} is {a(left.inner)}, not {right}",
                    "give a fitting default",
                )
            return left.inner
        return self.arithmetic(e, left, right)

    def membership(self, e: A.BinOp, left: Ty, right: Ty) -> Ty:
        elem: Ty | None = (
            right.elem
            if isinstance(right, ListT)
            else right.key
            if isinstance(right, MapT)
            else STR
            if right == STR
            else ANY
            if right == ANY
            else None
        )
        if elem is None:
            self.error(
                e.right.pos,
                f"`in` looks into a list, a map or a str, not {right}",
                "look into a collection",
            )
        elif not assignable(left, elem):
            self.error(
                e.left.pos,
                f"{a(left)} is never in a collection of {elem}",
                "look for a fitting value",
            )
        return BOOL

    def arithmetic(self, e: A.BinOp, left: Ty, right: Ty) -> Ty:
        op = e.op
        if op == "+" and left == STR and right == STR:
            return STR
        if op == "+" and isinstance(left, ListT) and isinstance(right, ListT):
            return join(left, right) or self.error(
                e.pos, f"cannot add {left} and {right}", "join lists of one type"
            )
        if numeric(left) and numeric(right):
            if ANY in (left, right):
                return ANY
            return FLOAT if op == "/" or FLOAT in (left, right) else INT
        if op == "+" and STR in (left, right) and (left in SCALARS and right in SCALARS):
            return self.error(
                e.pos, f"cannot add {left} and {right}", 'interpolate instead: "… {x} …"'
            )
        kinds = "numbers" if op in _ARITH else "numbers, strs or lists"
        return self.error(
            e.pos, f"`{op}` takes {kinds}, not {left} and {right}", "convert one side"
        )
