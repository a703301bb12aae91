"""msgpack for eventsourcing: compact, fast, and unable to run code when decoding.

eventsourcing's default ``JSONTranscoder`` is slower and larger; pickle would execute
whatever a tampered row contains.  msgpack decodes to plain data only.  Event and
snapshot states hold str, numbers, bools, None, lists and str-keyed dicts natively;
the few richer types they carry get msgpack extension types:

- ``datetime`` (time-zone aware) → msgpack's own Timestamp extension (-1), decoded as UTC;
- ``UUID`` → extension 1, its 16 bytes;
- ``Decimal`` → extension 2, its text.

Anything else raises ``TypeError`` at encode time: an event that could not be decoded
later must never be written.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgpack

from events._eventsourcing import Transcoder

EXT_UUID = 1
EXT_DECIMAL = 2


def _default(obj: Any) -> Any:
    if isinstance(obj, UUID):
        return msgpack.ExtType(EXT_UUID, obj.bytes)
    if isinstance(obj, Decimal):
        return msgpack.ExtType(EXT_DECIMAL, str(obj).encode("ascii"))
    if isinstance(obj, datetime):
        raise TypeError(f"naive datetime {obj!r} cannot be stored; use a time-zone-aware one")
    if isinstance(obj, set | frozenset):
        raise TypeError("sets have no stable order; store a sorted list")
    raise TypeError(f"object of type {type(obj).__name__} cannot be stored in an event")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_UUID:
        return UUID(bytes=data)
    if code == EXT_DECIMAL:
        return Decimal(data.decode("ascii"))
    return msgpack.ExtType(code, data)


def packb(obj: Any) -> bytes:
    """Encode ``obj`` the way stored events are encoded."""
    data: bytes = msgpack.packb(obj, use_bin_type=True, datetime=True, default=_default)
    return data


def unpackb(data: bytes) -> Any:
    """Decode bytes written by :func:`packb` (timestamps come back as aware UTC datetimes)."""
    return msgpack.unpackb(data, raw=False, timestamp=3, ext_hook=_ext_hook)


def unpackb_ns(data: bytes) -> Any:
    """Like :func:`unpackb`, but timestamps come back as integer nanoseconds since the epoch.

    For readers of many rows that only format the time: no ``datetime`` per row.
    """
    return msgpack.unpackb(data, raw=False, timestamp=2, ext_hook=_ext_hook)


class MsgpackTranscoder(Transcoder):
    """The transcoder named by ``TRANSCODER_TOPIC`` in every store's configuration."""

    def encode(self, obj: Any) -> bytes:
        return packb(obj)

    def decode(self, data: bytes) -> Any:
        return unpackb(data)
