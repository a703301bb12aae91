"""Length-prefixed msgpack frames: how the node and a worker talk over the worker's pipes.

A frame is a 4-byte big-endian length and that many bytes of msgpack (a map). Imported
on both sides, so it needs only the standard library and msgpack (the worker's files are
copied into its jail as they are). The parent never trusts a worker: a frame longer than
the reader's limit, or bytes that are not a msgpack map, raise ``ValueError`` and the
parent kills that worker (docs/service.md, "A hostile worker").
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack

__all__ = ["HEADER", "FrameReader", "encode"]

HEADER = struct.Struct(">I")


def encode(message: dict[str, Any]) -> bytes:
    """One frame: the length, then the msgpack bytes."""
    body = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Reads whole frames from a pipe's fd; at most ``limit`` bytes a frame."""

    def __init__(self, fd: int, limit: int, *, int_keys: bool = False) -> None:
        self.fd, self.limit, self.int_keys = fd, limit, int_keys
        self._buffer = bytearray()

    def frames(self) -> list[dict[str, Any]] | None:
        """The next frames to arrive (blocks for at least one); None at end of file."""
        found: list[dict[str, Any]] = []
        while not found:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                if self._buffer:
                    raise ValueError(f"end of file inside a frame ({len(self._buffer)} bytes)")
                return None
            found = self.feed(chunk)
        return found

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """The frames ``chunk`` completes (for a reader the event loop calls)."""
        self._buffer += chunk
        return self._take()

    def _take(self) -> list[dict[str, Any]]:
        found = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer, start)
            if size > self.limit:
                raise ValueError(f"a frame of {size} bytes (the limit is {self.limit})")
            end = start + HEADER.size + size
            if len(buffer) < end:
                break
            message = msgpack.unpackb(
                bytes(buffer[start + HEADER.size : end]), raw=False,
                strict_map_key=not self.int_keys,
            )  # fmt: skip
            if not isinstance(message, dict):
                raise ValueError(f"a frame holding {type(message).__name__}, not a map")
            found.append(message)
            start = end
        if start:
            del buffer[:start]
        return found
