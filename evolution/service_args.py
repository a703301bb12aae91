"""Checking a live call's keyword arguments against the function's declared schema.

Pure: the front hands in what a caller sent (decoded JSON) and gets back the arguments
to pass on, or a :class:`BadCallError` that names the argument and what to send
instead. The genome's code never sees a call its manifest does not allow, so a typo in
a client is a 400 with a hint, not a TypeError from deep inside the genome.

Types (``[service.functions.NAME] args``): ``str int float bool list[str] list[int]
list[float] dict any``; a trailing ``?`` makes the argument optional (left out, the
function's own default applies; ``null`` is then accepted too). ``bool`` is not an
``int`` here, and ``int`` is accepted where ``float`` is asked (JSON has one number).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evolution.errors import BadCallError

if TYPE_CHECKING:
    from evolution.manifest import ServiceFunction

__all__ = ["check_args", "type_problem"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


_SCALARS = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int,
    "float": _is_float,
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "any": lambda v: True,
}


def type_problem(kind: str, value: object) -> str | None:
    """None when ``value`` fits ``kind`` (without its ``?``), else what is wrong, in words."""
    if kind.startswith("list[") and kind.endswith("]"):
        inner = kind[5:-1]
        if not isinstance(value, list):
            return f"expected a list of {inner}, got {_name(value)}"
        for index, item in enumerate(value):
            if not _SCALARS[inner](item):
                return f"item {index} should be {inner}, got {_name(item)}"
        return None
    if not _SCALARS[kind](value):
        return f"expected {kind}, got {_name(value)}"
    return None


def _name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if not _is_int(value) else "an integer"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_args(spec: ServiceFunction, kwargs: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    """The arguments to pass on; refuses missing, extra and ill-typed ones, naming each."""
    label = f"function {name!r}" if name else "the function"
    declared = spec.args
    extra = sorted(set(kwargs) - set(declared))
    if extra:
        allowed = ", ".join(sorted(declared)) or "none"
        raise BadCallError(
            f"unknown argument {extra[0]!r} for {label}",
            hint=f"remove it; the arguments are: {allowed}",
        )
    passed: dict[str, Any] = {}
    for arg, kind in declared.items():
        optional = kind.endswith("?")
        base = kind.removesuffix("?")
        if arg not in kwargs:
            if optional:
                continue
            raise BadCallError(
                f"missing argument {arg!r} for {label}",
                hint=f"send {arg!r} ({base}) in the JSON body",
            )
        value = kwargs[arg]
        if value is None and optional:
            continue
        problem = type_problem(base, value)
        if problem is not None:
            raise BadCallError(
                f"argument {arg!r} of {label}: {problem}", hint=f"send {arg!r} as {base}"
            )
        passed[arg] = value
    return passed
