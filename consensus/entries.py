"""Every ledger entry, as typed NamedTuples, encoded and validated in this one place.

One module, like ``actors/messages.py``: a reader sees the whole ledger schema at once.
On the wire (and in every Raft journal) an entry is a msgpack map: ``type`` first, then
the entry's fields in the order declared here.  That byte layout predates these types and
existing journals and peers depend on it, so :func:`encode` must keep producing exactly
the same bytes (``tests/test_ledger_entries.py`` pins them).

:func:`decode` turns bytes into a typed entry or raises :class:`ConsensusError` naming the
entry type and the bad field, so the state machine never meets a half-checked map.  The
check is a pure function of the bytes, so every node rejects the same entry the same way.
Fields beyond the declared ones are ignored (a newer proposer may add some); the records
nested in a ``cycle`` entry must have exactly their dataclass's fields, as before.

``at`` is the proposer's clock (epoch seconds): every node stores that timestamp, so the
same events with the same hash chain.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, NamedTuple, Union

import msgpack

from events.records import Adoption, CandidateRecord, Held
from evolution.errors import ConsensusError

#: Largest entry a node will decode (a whole genome tree fits many times over).
MAX_ENTRY = 32 << 20


class Proposal(NamedTuple):
    """A cycle's winner put before the swarm: the adoption it would become, and its id.

    On the wire it is the adoption's fields followed by ``id`` (one flat map).
    """

    id: str
    adoption: Adoption


class Register(NamedTuple):
    """A genome joins the swarm with its first version (``tree``) and baseline fitness."""

    genome: str
    manifest: str
    tree: dict[str, str]
    fitness: float | None
    node: str
    at: float


class Cycle(NamedTuple):
    """One evolution cycle's results; its winner (if any) becomes a proposal."""

    genome: str
    node: str
    cycle: int
    seed: int
    evaluated: list[CandidateRecord]
    held: list[Held]
    proposal: Proposal | None
    at: float


class Vote(NamedTuple):
    """A node's verdict on one version of a waiting proposal."""

    genome: str
    proposal: str
    version: str
    node: str
    yes: bool
    reason: str
    at: float


class Rollback(NamedTuple):
    """The genome's head goes back to the earlier version ``to``."""

    genome: str
    to: str
    reason: str
    node: str
    at: float


class Members(NamedTuple):
    """The swarm's member list from this entry on (the majority is counted over it)."""

    members: list[str]
    node: str
    at: float


Entry = Register | Cycle | Vote | Rollback | Members

#: The ``type`` tag of each entry class, as it is on the wire.
TYPES: dict[str, type[Entry]] = {
    "register": Register,
    "cycle": Cycle,
    "vote": Vote,
    "rollback": Rollback,
    "members": Members,
}
_KIND: dict[type, str] = {cls: kind for kind, cls in TYPES.items()}

#: Fields an older or sparser proposer may leave out (or send as nil), with their value.
_OPTIONAL: dict[type, dict[str, Any]] = {
    Cycle: {"evaluated": [], "held": [], "proposal": None},
    Vote: {"reason": ""},
    Rollback: {"reason": ""},
}


def kind_of(entry: Entry) -> str:
    """The wire ``type`` of a typed entry."""
    return _KIND[type(entry)]


def proposal_id(genome: str, node: str, cycle: int, version: str) -> str:
    """The same id on every node, and a different one for every proposal a node makes."""
    name = f"tars:proposal:{genome}:{node}:{cycle}:{version}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16]


# ---- encoding --------------------------------------------------------------------------


def encode(entry: Entry) -> bytes:
    """The entry's bytes for ``Consensus.propose``: ``type``, then its fields in order."""
    body: dict[str, Any] = {"type": kind_of(entry)}
    for name, value in zip(entry._fields, entry, strict=True):
        body[name] = _plain(value)
    return msgpack.packb(body, use_bin_type=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Proposal):
        return {**asdict(value.adoption), "id": value.id}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


# ---- decoding --------------------------------------------------------------------------


def read_map(data: bytes) -> dict[str, Any]:
    """The entry's msgpack map, checked only for a string ``type`` (the first stage of decode).

    The applier needs the type and genome of an entry even when its fields are bad, to
    report the skip; and a re-delivered entry needs nothing more than this.
    """
    if len(data) > MAX_ENTRY:
        raise ConsensusError(
            f"ledger entry of {len(data)} bytes is over the {MAX_ENTRY} byte limit"
        )
    try:
        entry = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ConsensusError(f"ledger entry does not decode as msgpack: {exc}") from exc
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConsensusError("ledger entry is not a map with a 'type'")
    return entry


def parse(raw: Mapping[str, Any]) -> Entry:
    """A checked map as its typed entry; ConsensusError names the type and the bad field."""
    kind = raw.get("type")
    cls = TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConsensusError(f"unknown entry type {kind!r}")
    try:
        values = _SCHEMAS[cls].read(raw, "", _OPTIONAL.get(cls, {}), strict=False)
    except _Bad as bad:
        raise ConsensusError(f"{kind} entry: field '{bad.path}' {bad.problem}") from None
    return cls(**values)


def decode(data: bytes) -> Entry:
    """Bytes as a typed entry, or a :class:`ConsensusError` (never any other exception)."""
    return parse(read_map(data))


# ---- the checks, built once from the declared types ------------------------------------

#: A check returns the value to keep, or raises _Bad(field path, what was expected).
_Check = Callable[[Any, str], Any]


class _Bad(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(path, problem)
        self.path = path
        self.problem = problem


def _name(value: Any) -> str:
    return "nil" if value is None else type(value).__name__


def _expect(test: Callable[[Any], bool], what: str) -> _Check:
    def check(value: Any, path: str) -> Any:
        if not test(value):
            raise _Bad(path, f"should be {what}, not {_name(value)}")
        return value

    return check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_SCALARS: dict[Any, _Check] = {
    str: _expect(lambda v: isinstance(v, str), "a string"),
    int: _expect(_is_int, "an integer"),
    float: _expect(_is_number, "a number"),
    bool: _expect(lambda v: isinstance(v, bool), "a boolean"),
    type(None): _expect(lambda v: v is None, "nil"),
}


class _Schema:
    """The fields of one record type, each with its check, for reading it from a map."""

    def __init__(self, fields: dict[str, _Check], build: Callable[[dict[str, Any]], Any]) -> None:
        self.fields = fields
        self.build = build

    def read(
        self,
        raw: Mapping[str, Any],
        prefix: str,
        optional: Mapping[str, Any],
        *,
        strict: bool,
    ) -> dict[str, Any]:
        if strict:
            for key in raw:
                if key not in self.fields:
                    raise _Bad(prefix.rstrip("."), f"has an unknown field {key!r}")
        values: dict[str, Any] = {}
        for name, check in self.fields.items():
            value = raw.get(name)
            if name not in raw or (value is None and name in optional):
                if name not in optional:
                    raise _Bad(prefix + name, "is missing")
                values[name] = optional[name]
                continue
            values[name] = check(value, prefix + name)
        return values


def _record_check(schema: _Schema, defaults: Mapping[str, Any]) -> _Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _Bad(path, f"should be a map, not {_name(value)}")
        return schema.build(schema.read(value, path + ".", defaults, strict=True))

    return check


def _check_for(hint: Any) -> _Check:
    """The check of one declared type (the few shapes ledger entries use)."""
    if hint is Any:
        return lambda value, path: value
    if hint in _SCALARS:
        return _SCALARS[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, Union):
        return _union(
            [_check_for(arg) for arg in args if arg is not type(None)], type(None) in args
        )
    if origin is list:
        return _list(_check_for(args[0]))
    if origin is dict:
        return _dict(_check_for(args[0]), _check_for(args[1]))
    if hint is Proposal:
        return _proposal_check
    if dataclasses.is_dataclass(hint):
        return _record_check(_schema_of(hint), _defaults_of(hint))
    raise TypeError(f"no ledger check for the type {hint!r}")


def _union(arms: list[_Check], nil: bool) -> _Check:
    """``X | None``: nil, or what X's own check says (so its message names the inner field)."""

    def check(value: Any, path: str) -> Any:
        if value is None and nil:
            return None
        if len(arms) == 1:
            return arms[0](value, path)
        for arm in arms:
            try:
                return arm(value, path)
            except _Bad:
                continue
        raise _Bad(path, f"has the wrong type ({_name(value)})")

    return check


def _list(item: _Check) -> _Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise _Bad(path, f"should be a list, not {_name(value)}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def _dict(key: _Check, val: _Check) -> _Check:
    def check(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _Bad(path, f"should be a map, not {_name(value)}")
        for k, v in value.items():
            key(k, f"{path} key")
            val(v, f"{path}[{k!r}]")
        return value

    return check


def _schema_of(cls: Any) -> _Schema:
    hints = typing.get_type_hints(cls)
    if dataclasses.is_dataclass(cls):
        names = [f.name for f in dataclasses.fields(cls)]
    else:
        names = list(cls._fields)
    return _Schema({name: _check_for(hints[name]) for name in names}, lambda v: cls(**v))


def _defaults_of(cls: Any) -> dict[str, Any]:
    """A dataclass's fields with defaults may be left out, as ``cls(**map)`` allowed."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


_ADOPTION = _schema_of(Adoption)


def _proposal_check(value: Any, path: str) -> Proposal:
    if not isinstance(value, dict):
        raise _Bad(path, f"should be a map, not {_name(value)}")
    if "id" not in value:
        raise _Bad(f"{path}.id", "is missing")
    pid: str = _SCALARS[str](value["id"], f"{path}.id")
    fields = {k: v for k, v in value.items() if k != "id"}
    adoption = _ADOPTION.read(fields, path + ".", _defaults_of(Adoption), strict=True)
    return Proposal(pid, Adoption(**adoption))


_SCHEMAS: dict[type, _Schema] = {cls: _schema_of(cls) for cls in TYPES.values()}
