"""One service worker as the node sees it: its process, its pipes, its calls in flight.

A reader thread per worker waits on the worker's stdout and stderr (one ``select``),
turns each reply frame into the waiting call's :class:`Reply`, and keeps the tail of
stderr. Writes never block the caller (the front's event loop may be the caller): the
stdin pipe is non-blocking, and what does not fit is left to a short-lived flusher
thread. A worker that sends a frame over the limit, bytes that are not frames, or an
answer to no call is killed: the node never trusts what a worker writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from runtime.service.frames import FrameReader, encode

__all__ = ["OUT_LIMIT", "Call", "Child", "Reply", "Worker"]

#: the largest reply frame a worker may send (bigger: the worker is killed)
OUT_LIMIT = 32 << 20


class Reply(NamedTuple):
    """How one call ended. ``kind``: "" (ok), "exception" (the genome raised), "result"
    (the answer could not be encoded), "crash" (its worker died twice), "timeout",
    "unavailable" (no worker ready)."""

    ok: bool
    result: Any
    error: str
    kind: str
    version: str
    colour: str


@dataclass(eq=False)
class Call:
    """A call on its way: what to run, who waits for it, how often it was tried."""

    module: str
    function: str
    kwargs: dict[str, Any]
    done: Callable[[Reply], None]
    deadline: float
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False


_ids = itertools.count(1)


class Child(Protocol):
    """A started worker process as a :class:`Worker` drives it: three ends and two ways to
    stop it. A jailed child (:class:`runtime.service.jailed.Jailed`, pipes) and a worker in
    a service container (:class:`runtime.service.contained.Contained`, Unix sockets) fit."""

    @property
    def write_fd(self) -> int: ...

    @property
    def read_fd(self) -> int: ...

    @property
    def err_fd(self) -> int: ...

    tail: bytearray

    def keep_stderr(self, chunk: bytes) -> None: ...

    def last_words(self) -> str: ...

    def terminate(self) -> None:
        """Stop the process, leaving the ends open (their reader sees the end)."""

    def kill(self) -> None:
        """Stop the process and close its ends (idempotent)."""


class Worker:
    """A started worker; ``on_exit(worker, calls)`` hears its death with the calls it held."""

    def __init__(
        self,
        name: str,
        jailed: Child,
        on_reply: Callable[[Worker, Call, dict[str, Any]], None],
        on_exit: Callable[[Worker, list[Call], str], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.name, self.jailed = name, jailed
        self.inflight: dict[int, Call] = {}
        self.ready = False
        #: why the pool killed it, when it did (its death then reports this, not "it exited")
        self.failure = ""
        self.alive = True
        self._on_reply, self._on_exit = on_reply, on_exit
        self._lock = threading.Lock()
        self._outbox = bytearray()
        self._flushing = False
        self._waiters: dict[int, Callable[[dict[str, Any]], None]] = {}
        self._stdin = jailed.write_fd
        self._reader = FrameReader(jailed.read_fd, OUT_LIMIT, int_keys=True)
        self._dead = threading.Event()
        self._detached = False
        self._loop = loop
        self._thread: threading.Thread | None = None
        if loop is not None and not loop.is_closed():
            self._watch_on(loop)
        else:
            self._loop = None
            self._thread = threading.Thread(target=self._read, name=f"worker-{name}", daemon=True)
            self._thread.start()

    # -- sending --

    def send(self, call: Call) -> bool:
        """Hand the worker a call; False if it is dead already (the caller tries another)."""
        ident = next(_ids)
        frame = encode(
            {"op": "call", "id": ident, "module": call.module, "function": call.function,
             "kwargs": call.kwargs}
        )  # fmt: skip
        with self._lock:
            if not self.alive:
                return False
            self.inflight[ident] = call
            self._write(frame)
        return True

    def control(self, message: dict[str, Any], answer: Callable[[dict[str, Any]], None]) -> None:
        """Send a ping or reload; ``answer`` gets the reply map (``{"ok": False}`` if it died)."""
        ident = next(_ids)
        with self._lock:
            if not self.alive:
                answer({"ok": False, "error": "the worker died"})
                return
            self._waiters[ident] = answer
            self._write(encode({**message, "id": ident}))

    def _write(self, frame: bytes) -> None:
        """Under the lock: write what the pipe takes now, leave the rest to a flusher."""
        if not self._outbox:
            try:
                written = os.write(self._stdin, frame)
            except BlockingIOError:
                written = 0
            except OSError:  # the worker is gone: the reader thread reports it
                return
            if written == len(frame):
                return
            frame = frame[written:]
        self._outbox += frame
        if not self._flushing:
            self._flushing = True
            threading.Thread(target=self._flush, name=f"flush-{self.name}", daemon=True).start()

    def _flush(self) -> None:
        while True:
            with self._lock:
                if not self._outbox or not self.alive:
                    self._flushing = False
                    self._outbox.clear()
                    return
                try:
                    written = os.write(self._stdin, self._outbox)
                    del self._outbox[:written]
                except BlockingIOError:
                    pass
                except OSError:
                    self._flushing = False
                    return
            with contextlib.suppress(OSError, ValueError):
                select.select([], [self._stdin], [], 0.2)

    # -- receiving --

    def _read(self) -> None:
        """The reader thread (no event loop given): frames and stderr until the end."""
        out, err = self.jailed.read_fd, self.jailed.err_fd
        reader = self._reader
        why = "it exited"
        watched = [out, err]
        try:
            while True:
                ready, _, _ = select.select(watched, [], [])
                if err in ready:
                    chunk = os.read(err, 1 << 16)
                    if chunk:
                        self.jailed.keep_stderr(chunk)
                    else:  # stderr closed (the genome may close it): stop watching it
                        watched = [out]
                if out in ready:
                    frames = reader.frames()
                    if frames is None:
                        break
                    for message in frames:
                        self._dispatch(message)
        except (ValueError, KeyError, TypeError) as exc:
            why = f"it sent a bad frame ({exc}): killed"
        except OSError as exc:
            why = f"its pipe failed ({exc})"
        self._die(why)

    # -- receiving on the front's event loop (no thread hand-over per reply) --

    def _watch_on(self, loop: asyncio.AbstractEventLoop) -> None:
        out, err = self.jailed.read_fd, self.jailed.err_fd
        os.set_blocking(out, False)
        os.set_blocking(err, False)

        def attach() -> None:
            if self.alive:
                loop.add_reader(out, self._readable, out)
                loop.add_reader(err, self._stderr, err)

        loop.call_soon_threadsafe(attach)

    def _readable(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self._detach(f"its pipe failed ({exc})")
            return
        if not chunk:
            pending = self._reader.pending
            self._detach(
                f"end of file inside a frame ({pending} bytes)" if pending else "it exited"
            )
            return
        try:
            for message in self._reader.feed(chunk):
                self._dispatch(message)
        except (ValueError, KeyError, TypeError) as exc:
            self._detach(f"it sent a bad frame ({exc}): killed")

    def _stderr(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.jailed.keep_stderr(chunk)
        elif self._loop is not None:
            self._loop.remove_reader(fd)

    def _detach(self, why: str) -> None:
        """On the loop: stop watching the pipes, then report the death off the loop."""
        if self._detached or self._loop is None:
            return
        self._detached = True
        for fd in (self.jailed.read_fd, self.jailed.err_fd):
            self._loop.remove_reader(fd)
        threading.Thread(
            target=self._die, args=(why,), name=f"died-{self.name}", daemon=True
        ).start()

    def _dispatch(self, message: dict[str, Any]) -> None:
        ident = message["id"]
        with self._lock:
            call = self.inflight.pop(ident, None)
            waiter = self._waiters.pop(ident, None) if call is None else None
        if call is not None:
            self._on_reply(self, call, message)
        elif waiter is not None:
            waiter(message)
        else:
            raise KeyError(f"an answer to no call ({ident!r})")

    def _die(self, why: str) -> None:
        with self._lock:
            self.alive = False
            self.ready = False
            calls = list(self.inflight.values())
            self.inflight.clear()
            waiters = list(self._waiters.values())
            self._waiters.clear()
        words = self.jailed.last_words()
        self.jailed.kill()  # no send can come now (``alive`` is False under the lock)
        for waiter in waiters:
            waiter({"ok": False, "error": f"the worker died: {why}; {words}".rstrip("; ")})
        try:
            self._on_exit(self, calls, f"{why}{': ' + words if words else ''}")
        finally:
            self._dead.set()

    def kill(self) -> None:
        """Kill the process; its reader then reports the death (calls retried).

        Signals only while a reader watches the pipes: they are closed once the reader has
        seen their end and no send can come (``alive`` is False), so an fd number is never
        reused under a write, and never closed under the loop's selector.
        """
        loop = self._loop
        thread = self._thread
        watched = (thread is not None and thread.is_alive()) or (
            loop is not None and not self._detached and loop.is_running()
        )
        if watched:
            self.jailed.terminate()
        else:
            self._close()

    def _close(self) -> None:
        with self._lock:
            self.alive = False
            self.ready = False
        self.jailed.kill()

    def join(self, timeout: float) -> None:
        """Wait until the death is reported; then make sure nothing of the worker is left."""
        loop = self._loop
        if self._thread is not None:
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout)
        elif loop is not None and loop.is_running():
            self._dead.wait(timeout)
        if loop is None or self._detached or not loop.is_running():
            self._close()

    @property
    def busy(self) -> int:
        return len(self.inflight)
