"""Checking a msgpack map against a NamedTuple's or a dataclass's declared field types.

The ledger's entries (:mod:`consensus.entries`) declare their fields once, as types; this
module turns those declarations into checks when the module loads, so decoding an entry
is a walk over prepared tables (a scalar is one exact ``type()`` test: msgpack gives
exactly ``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict`` or ``bytes``),
cheap next to storing the entry's events.  A bad value is reported by its path
(``evaluated[0].ratio``) and what was expected; the path is only built on failure.
Only the shapes ledger entries use are supported (str, int, float, bool, None, unions
with None, list, dict, Any, dataclasses); any other declared type fails at import, not
on a peer's entry.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Union

#: A check returns the value to keep, or raises :class:`Bad`.
Check = Callable[[Any], Any]
#: How to make the value of a field left out (a factory, so no two entries share a list).
Defaults = Mapping[str, Callable[[], Any]]


class Bad(Exception):
    """A value failed its check; ``steps`` is its path (``.field``, ``[0]``), built outward."""

    def __init__(self, problem: str, *steps: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.steps = list(steps)

    @property
    def path(self) -> str:
        return "".join(reversed(self.steps)).lstrip(".")


def name_of(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


class Shape(NamedTuple):
    """How to check one declared type: exact scalar types, a nested check, or nothing (Any)."""

    exact: frozenset[type] | None
    what: str
    check: Check | None


#: Scalars by declared type: the exact msgpack types accepted and how to name them.
SCALARS: dict[Any, tuple[frozenset[type], str]] = {
    str: (frozenset({str}), "a string"),
    int: (frozenset({int}), "an integer"),
    float: (frozenset({int, float}), "a number"),
    bool: (frozenset({bool}), "a boolean"),
    type(None): (frozenset({type(None)}), "nil"),
}


def check_value(shape: Shape, value: Any, step: str) -> Any:
    """``value`` checked against ``shape``; a failure names ``step`` in its path."""
    if shape.exact is not None:
        if type(value) not in shape.exact:
            raise Bad(f"should be {shape.what}, not {name_of(value)}", step)
        return value
    if shape.check is None:
        return value
    try:
        return shape.check(value)
    except Bad as bad:
        bad.steps.append(step)
        raise


class Schema:
    """The fields of one record type, each with its shape, for reading it from a map."""

    def __init__(self, fields: dict[str, Shape], build: Callable[[dict[str, Any]], Any]) -> None:
        self.fields = fields
        self.build = build

    def read(self, raw: Mapping[str, Any], optional: Defaults, *, strict: bool) -> dict[str, Any]:
        """The checked values by field name; ``strict`` refuses fields not declared.

        A field in ``optional`` may be left out or nil and then takes its default.
        """
        if strict:
            for key in raw:
                if key not in self.fields:
                    raise Bad(f"has an unknown field {key!r}")
        values: dict[str, Any] = {}
        for name, shape in self.fields.items():
            value = raw.get(name)
            if value is None and (name in optional or name not in raw):
                if name not in optional:
                    raise Bad("is missing", "." + name)
                values[name] = optional[name]()
                continue
            values[name] = check_value(shape, value, "." + name)
        return values


def schema_of(cls: Any, special: Mapping[Any, Check]) -> Schema:
    """The schema of a NamedTuple or dataclass; ``special`` checks types with their own form."""
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    else:
        names = list(cls._fields)
    shapes = {name: shape_of(hints[name], special) for name in names}
    return Schema(shapes, lambda values: cls(**values))


def defaults_of(cls: Any) -> dict[str, Callable[[], Any]]:
    """A dataclass's fields with defaults may be left out, as ``cls(**map)`` allowed."""
    out: dict[str, Callable[[], Any]] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _constant(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory
    return out


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def shape_of(hint: Any, special: Mapping[Any, Check]) -> Shape:
    """The shape of one declared type."""
    if hint in special:
        return Shape(None, "", special[hint])
    if hint is Any:
        return Shape(None, "anything", None)
    if hint in SCALARS:
        return Shape(*SCALARS[hint], None)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, Union):
        arms = [shape_of(arg, special) for arg in args if arg is not type(None)]
        if len(arms) == 1 and arms[0].exact is not None:  # a scalar or nil: one exact test
            exact = arms[0].exact | {type(None)}
            return Shape(exact, f"{arms[0].what} or nil", None)
        if len(arms) != 1 or type(None) not in args:
            raise TypeError(f"no ledger check for the type {hint!r}")
        return Shape(None, "", _optional(arms[0]))
    if origin is list:
        return Shape(None, "", _list(shape_of(args[0], special)))
    if origin is dict:
        return Shape(None, "", _dict(shape_of(args[0], special), shape_of(args[1], special)))
    if dataclasses.is_dataclass(hint):
        return Shape(None, "", _record(schema_of(hint, special), defaults_of(hint)))
    raise TypeError(f"no ledger check for the type {hint!r}")


def _record(schema: Schema, defaults: Defaults) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise Bad(f"should be a map, not {name_of(value)}")
        return schema.build(schema.read(value, defaults, strict=True))

    return check


def _optional(arm: Shape) -> Check:
    """``X | None``: nil, or what X's own check says (so its message names the inner field)."""

    def check(value: Any) -> Any:
        return None if value is None else check_value(arm, value, "")

    return check


def _list(item: Shape) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not list:
            raise Bad(f"should be a list, not {name_of(value)}")
        if item.exact is not None:
            for i, v in enumerate(value):
                if type(v) not in item.exact:
                    raise Bad(f"should be {item.what}, not {name_of(v)}", f"[{i}]")
            return value
        return [check_value(item, v, f"[{i}]") for i, v in enumerate(value)]

    return check


def _dict(key: Shape, val: Shape) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not dict:
            raise Bad(f"should be a map, not {name_of(value)}")
        for k, v in value.items():
            check_value(key, k, " key")
            check_value(val, v, f"[{k!r}]")
        return value

    return check
