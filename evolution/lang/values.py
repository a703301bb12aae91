"""The values a running script holds, how they print, and how loose data is held to a type.

Scalars, lists and maps are Python's own (``int float str bool None list dict``), so data
read from a source needs no wrapping; records and union constructors are :class:`Rec`
(its ``name`` is the record's or the constructor's).  :func:`conform` turns JSON-like data
into values of a declared type and says, on a mismatch, which field and what was found:
the interpreter reads every typed source through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evolution.lang.types import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    STR,
    FnT,
    ListT,
    MapT,
    Named,
    OptT,
    Prim,
    Ty,
    TypeTable,
)


@dataclass(frozen=True, slots=True)
class Rec:
    """A record or a union's constructor: its name and its fields, in declaration order."""

    name: str
    fields: tuple[tuple[str, Any], ...]

    def get(self, field: str) -> Any:
        """A field's value (the checker made sure it exists)."""
        for key, value in self.fields:
            if key == field:
                return value
        raise KeyError(field)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (for JSON, webhooks and the log)."""
        return {k: plain(v) for k, v in self.fields}


def rec(kind: str, /, **fields: Any) -> Rec:
    """A record from keyword fields (the engine's domain values: Verdict, Genome, ...)."""
    return Rec(kind, tuple(fields.items()))


def plain(value: Any) -> Any:
    """A value as JSON-ready data (records as dicts with their name under ``"type"``)."""
    if isinstance(value, Rec):
        return {"type": value.name, **value.as_dict()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def show(value: Any) -> str:
    """A value as a string hole shows it: numbers as Python writes them, records as ``Name(f=…)``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, Rec):
        if not value.fields:
            return value.name
        inner = ", ".join(f"{k}={_inner(v)}" for k, v in value.fields)
        return f"{value.name}({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_inner(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "[:]"
        return "[" + ", ".join(f"{_inner(k)}: {_inner(v)}" for k, v in value.items()) + "]"
    return str(value)


def _inner(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else show(value)


class Mismatch(Exception):
    """Data that does not fit its type: where (``status``, ``[2].client``), expected, found."""

    def __init__(self, where: str, expected: str, found: Any) -> None:
        self.where, self.expected, self.found = where, expected, found
        shown = repr(found) if not isinstance(found, dict | list) else type(found).__name__
        at = f"field `{where}`: " if where else ""
        super().__init__(f"{at}expected {expected}, found {shown}")


_PY: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
}


def conform(data: Any, ty: Ty, table: TypeTable, where: str = "") -> Any:
    """``data`` (parsed JSON, a CSV row, an SQL row) as a value of ``ty``; :class:`Mismatch` if not."""
    if ty == ANY:
        return data
    if isinstance(ty, OptT):
        return None if data is None else conform(data, ty.inner, table, where)
    if isinstance(ty, Prim):
        return _scalar(data, ty, where)
    if isinstance(ty, ListT):
        if not isinstance(data, list):
            raise Mismatch(where, str(ty), data)
        return [conform(d, ty.elem, table, f"{where}[{i}]") for i, d in enumerate(data)]
    if isinstance(ty, MapT):
        if not isinstance(data, dict):
            raise Mismatch(where, str(ty), data)
        return {
            conform(k, ty.key, table, where): conform(v, ty.value, table, f"{where}[{k!r}]")
            for k, v in data.items()
        }
    if isinstance(ty, Named):
        return _named(data, ty.name, table, where)
    if isinstance(ty, FnT):
        raise Mismatch(where, "data", data)
    raise Mismatch(where, str(ty), data)  # pragma: no cover - every type is handled above


def _scalar(data: Any, ty: Prim, where: str) -> Any:
    want: Any = _PY.get(ty.name)
    if want is None or isinstance(data, bool) != (ty == BOOL) or not isinstance(data, want):
        raise Mismatch(where, ty.name, data)
    return float(data) if ty == FLOAT else data


def _named(data: Any, name: str, table: TypeTable, where: str) -> Rec:
    if name in table.records:
        fields = table.records[name].fields
        label = name
    elif name in table.unions:
        if not isinstance(data, dict) or data.get("type") not in table.unions[name].names():
            choices = " | ".join(table.unions[name].names())
            raise Mismatch(f"{where}.type" if where else "type", choices, data)
        label = data["type"]
        fields = table.ctor_fields(label)
    else:
        raise Mismatch(where, name, data)
    if not isinstance(data, dict):
        raise Mismatch(where, f"a {name} record (an object)", data)
    out = []
    for field, fty in fields:
        at = f"{where}.{field}" if where else field
        if field not in data and not isinstance(fty, OptT):
            raise Mismatch(at, str(fty), "nothing (the field is missing)")
        out.append((field, conform(data.get(field), fty, table, at)))
    return Rec(label, tuple(out))


def from_text(text: str, ty: Ty) -> Any:
    """A CSV cell as a scalar of ``ty`` (CSV holds text only); the text itself if it does not parse."""
    inner = ty.inner if isinstance(ty, OptT) else ty
    if text == "" and isinstance(ty, OptT):
        return None
    try:
        if inner == INT:
            return int(text)
        if inner == FLOAT:
            return float(text)
    except ValueError:
        return text
    if inner == BOOL and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if inner == STR:
        return text
    return text


#: JSON Schema's scalar types a script's scalar accepts
_JSON_TYPES = {
    "int": ("integer",),
    "float": ("number", "integer"),
    "str": ("string",),
    "bool": ("boolean",),
}


def schema_problem(schema: Any, ty: Ty, table: TypeTable) -> str | None:
    """Why a tool whose output schema is ``schema`` cannot give a ``ty``, or None.

    Read before an MCP ``call`` acts, so a result the script could not read is refused
    before the tool does anything: a record's field the schema does not give (an optional
    one may be missing), or a scalar field the schema types otherwise.  Only an object
    schema with properties says enough; anything else is left to the result's check.
    """
    record = table.records.get(ty.name) if isinstance(ty, Named) else None
    props = schema.get("properties") if isinstance(schema, dict) else None
    if record is None or not isinstance(props, dict) or set(props) == {"result"}:
        return None
    for name, field in record.fields:
        optional = isinstance(field, OptT)
        prop = props.get(name)
        if prop is None:
            if optional:
                continue
            return (
                f"{ty} needs field `{name}`, which the tool's output schema does not give "
                f"(its fields: {', '.join(props)})"
            )
        inner = field.inner if isinstance(field, OptT) else field
        kinds = _JSON_TYPES.get(inner.name) if isinstance(inner, Prim) else None
        given = prop.get("type") if isinstance(prop, dict) else None
        if kinds and isinstance(given, str) and given not in kinds:
            return f"{ty}.{name} is {inner}, the tool's output schema gives {given}"
    return None
