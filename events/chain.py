"""The hash chain that lets ``tars log verify`` prove no one edited history.

Each event stores ``chain = sha256(previous chain + canonical bytes of the event)``; the
first event of a lineage chains from :data:`GENESIS`.  The canonical bytes cover the
event type, the lineage id, the position, the timestamp and every payload field, so
editing, moving, reordering or re-dating an event breaks the chain at that event.

The encoding is msgpack with keys sorted at every level: the same event gives the same
bytes on every node and in every Python version, whatever order the fields were built
in.  Timestamps enter as integer microseconds since the epoch, so the time zone a
decoder attaches cannot change the hash.  Nothing here does I/O: the domain calls it to
make a chain, ``GenomeStore.verify`` calls it on raw stored events to check one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import msgpack

from events.transcoder import unpackb

#: The chain the first event of every lineage links to.
GENESIS = "0" * 64

#: Stored fields that are not payload: identity and framing the chain covers separately
#: (id, position, time), the chain itself, and the aggregate class topic (a code location,
#: which may move without history changing).
NOT_PAYLOAD = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "chain",
        "originator_topic",
        "class_version",
    }
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def payload_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a stored or about-to-be-stored event that the chain hashes as payload."""
    return {key: value for key, value in state.items() if key not in NOT_PAYLOAD}


def event_type(topic: str) -> str:
    """The short event type of a topic (``events.domain:Lineage.VersionAdopted`` → ``VersionAdopted``).

    The chain hashes the short name, not the topic, so moving the domain module does not
    break every chain.
    """
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})


def canonical(value: Any) -> Any:
    """A value with every mapping key-sorted and every sequence a list, ready to pack."""
    kind = type(value)
    if kind in _PLAIN:  # exact types first: most of an event, and the cheapest test
        return value
    if kind is dict:
        keys = list(value)
        for key in keys:
            if type(key) is not str:
                return _canonical(value)  # the general path raises, or accepts a str subclass
        keys.sort()
        return {key: canonical(value[key]) for key in keys}
    if kind is list or kind is tuple:
        return [canonical(item) for item in value]
    return _canonical(value)


def _canonical(value: Any) -> Any:
    """The general case of :func:`canonical` (subclasses, times, ids, errors)."""
    if value is None or isinstance(
        value, str | bool | int | float | bytes
    ):  # the common case first
        return value
    if isinstance(value, dict | Mapping):
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise TypeError(f"event data may only have text keys, got {keys!r}")
        return {key: canonical(value[key]) for key in sorted(keys)}
    if isinstance(value, list | tuple):
        return [canonical(item) for item in value]
    if isinstance(value, datetime):
        return {"$time": micros(value)}
    if isinstance(value, UUID):
        return {"$uuid": value.hex}
    raise TypeError(f"event data of type {type(value).__name__} has no canonical encoding")


def micros(moment: datetime) -> int:
    """Microseconds since the epoch of a time-zone-aware datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"event time {moment!r} has no time zone; events need aware datetimes")
    return (moment - _EPOCH) // _MICRO


def canonical_bytes(
    kind: str, lineage: UUID | str, position: int, timestamp: datetime, payload: Mapping[str, Any]
) -> bytes:
    """The bytes of one event that its chain hashes."""
    frame = {
        "type": kind,
        "lineage": lineage.hex if isinstance(lineage, UUID) else str(lineage),
        "position": position,
        "time": micros(timestamp),
        "data": payload,
    }
    packed: bytes = msgpack.packb(canonical(frame), use_bin_type=True)
    return packed


def link(
    previous: str,
    kind: str,
    lineage: UUID | str,
    position: int,
    timestamp: datetime,
    payload: Mapping[str, Any],
) -> str:
    """The chain of an event following an event whose chain is ``previous``."""
    digest = hashlib.sha256(previous.encode("ascii"))
    digest.update(canonical_bytes(kind, lineage, position, timestamp, payload))
    return digest.hexdigest()


class UndecodableEvent(ValueError):
    """A stored event's bytes do not decode into an event with a chain and a time.

    Its text is ``"<exception type>: <message>"`` of the failure (the cause is chained).
    """


class ChainMismatch(ValueError):
    """A stored event's ``chain`` is not the link recomputed from the event before it."""

    def __init__(self, stored: object, recomputed: str) -> None:
        self.stored = str(stored)
        self.recomputed = recomputed
        super().__init__(
            f"hash chain broken — stored chain {self.stored[:12]}… != recomputed {recomputed[:12]}…"
        )


def check_link(
    previous: str, kind: str, lineage: UUID | str, position: int, raw: bytes
) -> tuple[dict[str, Any], str]:
    """Decode one stored event and check that it links to ``previous``: (its state, its chain).

    Raises :class:`UndecodableEvent` or :class:`ChainMismatch`.  ``kind`` is the short
    event type (:func:`event_type` of the stored topic), ``position`` the stored one.
    """
    try:
        state = unpackb(raw)
        stored = state["chain"]
        recomputed = link(previous, kind, lineage, position, state["timestamp"], payload_of(state))
    except Exception as exc:
        raise UndecodableEvent(f"{type(exc).__name__}: {exc}") from exc
    if stored != recomputed:
        raise ChainMismatch(stored, recomputed)
    return state, stored
