"""The fast path of :func:`consensus.entries.decode`: msgspec checks an entry in C.

Every node decodes every ledger entry, and a catching-up node decodes thousands a
second, so the field checks of :mod:`consensus._schema` (a Python loop over some forty
fields of a cycle entry) cost more than storing the entry's events.  msgspec, a
well-kept library made for exactly this, decodes msgpack straight into typed structs and
checks every field on the way, about ten times faster than unpacking and checking.

The structs are built here from the entry types' own declarations (one field list:
:mod:`consensus.entries` and :mod:`events.records`), never written by hand, and msgspec
is only ever a fast path: :func:`fast_decode` answers ``None`` whenever msgspec refuses
an entry or meets a value it would render differently (an ``Any`` field is decoded by
msgpack itself, as the reference path does), and the caller then takes the reference
path, whose checker decides and names the bad field.  So msgspec never accepts what the
checker refuses, never refuses what it accepts, and gives the same values when both
accept; ``tests/test_ledger_entries.py`` holds the two against each other on valid and
damaged entries.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Union

import msgpack
import msgspec

from consensus._schema import defaults_of

__all__ = ["FastDecoder"]

#: A conversion from msgspec's value to the entry's; raises :class:`_GiveUp` to defer.
Convert = Callable[[Any], Any]
_NIL = msgspec.Raw(msgpack.packb(None))
_EMPTY_MAP = msgspec.Raw(msgpack.packb({}))


class _GiveUp(Exception):
    """msgspec's value is not one the reference path would give: let that path decide."""


class _Head(msgspec.Struct):
    """What a re-delivered entry needs: its tag, and its genome left encoded."""

    type: str
    genome: msgspec.Raw = _NIL


#: msgpack's str8, str16 and str32 markers (fixstr is 0xa0-0xbf)
_STR = frozenset({0xD9, 0xDA, 0xDB})


def _never_ext(code: int, data: memoryview) -> Any:
    raise _GiveUp(f"msgpack extension type {code}")


class FastDecoder:
    """Decodes entry bytes into the typed entries of ``types_by_kind``, or answers None.

    ``optional`` says which entry fields may be absent or nil and their defaults;
    ``flat`` maps a declared type to (a record type, the name of one more string field,
    how to build the declared value from the two) for values that travel flattened (a
    proposal: the adoption's fields and ``id`` in one map).
    """

    def __init__(
        self,
        types_by_kind: Mapping[str, type],
        optional: Mapping[type, Mapping[str, Callable[[], Any]]],
        flat: Mapping[Any, tuple[type, str, Callable[[str, Any], Any]]],
    ) -> None:
        self._flat = flat
        self._records: dict[tuple[type, str | None], tuple[type, Convert]] = {}
        structs = []
        self._convert: dict[type, Convert] = {}
        for kind, cls in types_by_kind.items():
            struct, convert = self._struct_of(cls, optional.get(cls, {}), tag=kind)
            structs.append(struct)
            self._convert[struct] = convert
        self._head = msgspec.msgpack.Decoder(_Head, ext_hook=_never_ext)
        self._decoder = msgspec.msgpack.Decoder(Union[tuple(structs)], ext_hook=_never_ext)  # type: ignore[arg-type]  # noqa: UP007

    def peek(self, data: bytes) -> tuple[str, str | None] | None:
        """The entry's ``type`` and string ``genome``, the rest only skipped; None defers."""
        try:
            head = self._head.decode(data)
        except (msgspec.MsgspecError, _GiveUp, ValueError, TypeError):
            return None
        genome = None
        marker = memoryview(head.genome)[0]
        if 0xA0 <= marker <= 0xBF or marker in _STR:
            genome = msgspec.msgpack.decode(head.genome, type=str)
        return head.type, genome

    def decode(self, data: bytes) -> Any | None:
        """The typed entry, or None when the reference path must decide."""
        try:
            struct = self._decoder.decode(data)
            return self._convert[type(struct)](struct)
        except (msgspec.MsgspecError, _GiveUp, ValueError, TypeError):
            return None

    # -- building the structs from the declarations --

    def _struct_of(
        self,
        cls: type,
        optional: Mapping[str, Callable[[], Any]],
        *,
        tag: str | None = None,
        extra: str | None = None,
    ) -> tuple[type, Convert]:
        hints = typing.get_type_hints(cls)
        names = (
            [f.name for f in dataclasses.fields(cls)]
            if dataclasses.is_dataclass(cls)
            else list(cls._fields)  # type: ignore[attr-defined]
        )
        fields: list[tuple[Any, ...]] = []
        converts: list[Convert | None] = []
        for name in names:
            kind, convert = self._type_of(hints[name])
            if name in optional:
                raw = kind is msgspec.Raw
                fields.append((name, kind if raw else kind | None, _NIL if raw else None))
                convert = _defaulted(convert, optional[name], raw=raw)
            else:
                fields.append((name, kind))
            converts.append(convert)
        if extra is not None:
            fields.append((extra, str))
        struct = msgspec.defstruct(
            f"_{cls.__name__}Wire",
            fields,
            kw_only=True,
            tag=tag,
            tag_field="type" if tag is not None else None,
            forbid_unknown_fields=tag is None,  # records: exactly their fields, as before
        )
        return struct, _builder(cls, converts, extra=extra is not None)

    def _type_of(self, hint: Any) -> tuple[Any, Convert | None]:
        if hint in self._flat:
            record, extra, build = self._flat[hint]
            struct, convert = self._record(record, extra=extra)
            return struct, _then(convert, build)
        if hint is float:
            return int | float, None  # an int stays an int, as the reference path keeps it
        if hint in (str, int, bool):
            return hint, None
        if hint is Any:
            return msgspec.Raw, _unpacked
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (types.UnionType, Union) and type(None) in args and len(args) == 2:
            inner, maybe = self._type_of(next(a for a in args if a is not type(None)))
            if inner is msgspec.Raw:
                return msgspec.Raw, maybe
            return inner | None, None if maybe is None else _or_none(maybe)
        if origin is list:
            item, each = self._type_of(args[0])
            if item is msgspec.Raw:
                raise TypeError(f"no fast path for {hint!r}")
            return list[item], None if each is None else _each(each)  # type: ignore[valid-type]
        if origin is dict and args[0] is str:
            if args[1] is str:
                return dict[str, str], None
            if args[1] is Any:
                return msgspec.Raw, _map_of_any
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._record(hint)
        raise TypeError(f"no fast path for {hint!r}")

    def _record(self, cls: type, *, extra: str | None = None) -> tuple[type, Convert]:
        known = self._records.get((cls, extra))
        if known is None:
            defaults = defaults_of(cls)  # what the reference path lets a record leave out
            known = self._records[(cls, extra)] = self._struct_of(cls, defaults, extra=extra)
        return known


# ---- conversions ---------------------------------------------------------------------


def _builder(cls: type, converts: list[Convert | None], *, extra: bool) -> Convert:
    """``cls`` from a struct's values; with ``extra``, (the extra field, ``cls``) instead."""
    steps = [(i, c) for i, c in enumerate(converts) if c is not None]

    def build(struct: Any) -> Any:
        values = list(msgspec.structs.astuple(struct))
        for i, convert in steps:
            values[i] = convert(values[i])
        if extra:
            return values.pop(), cls(*values)
        return cls(*values)

    return build


def _unpacked(raw: msgspec.Raw) -> Any:
    return msgpack.unpackb(bytes(raw), raw=False, strict_map_key=False)


def _map_of_any(raw: msgspec.Raw) -> Any:
    if raw == _EMPTY_MAP:  # most evidence maps: no need to unpack
        return {}
    value = _unpacked(raw)
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise _GiveUp("not a map of strings")
    return value


def _defaulted(convert: Convert | None, default: Callable[[], Any], *, raw: bool) -> Convert:
    """Absent or nil takes the default, as the reference path's ``optional`` does."""

    def field(value: Any) -> Any:
        if value is None or (raw and value == _NIL):
            return default()
        return value if convert is None else convert(value)

    return field


def _or_none(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _each(convert: Convert) -> Convert:
    return lambda values: [convert(v) for v in values]


def _then(first: Convert, second: Callable[[str, Any], Any]) -> Convert:
    return lambda value: second(*first(value))
