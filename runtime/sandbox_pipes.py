"""The child's pipes and process group: capture output up to a limit, feed stdin, keep the clock.

One selector loop moves bytes both ways until the child exits, the wall clock runs out
or an output stream passes :data:`OUTPUT_LIMIT`; then the whole group is killed and the
pipes are drained, bounded in time, so a child that forks and keeps a pipe open cannot
hold the node.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping

OUTPUT_LIMIT = 1 << 20  # bytes kept per stream; more kills the run ("output")


class Capture:
    """One output stream, kept up to ``limit`` bytes (``OUTPUT_LIMIT`` unless told)."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.limit = limit

    def add(self, data: bytes) -> None:
        room = self.limit - self.size
        if len(data) > room:
            self.overflow = True
            data = data[: max(0, room)]
        self.chunks.append(data)
        self.size += len(data)

    def text(self) -> str:
        body = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.overflow:
            body += f"\n[tars: output cut at {self.limit // 1024} KiB]\n"
        return body


def pump(
    proc: subprocess.Popen[bytes],
    out: Capture,
    err: Capture,
    stdin: str | None,
    deadline: float,
    extra: Mapping[int, Capture] | None = None,
) -> bool:
    """Move bytes until the child exits or the clock runs out; True means timed out.

    ``extra`` maps more read ends (the profiler's results pipe) to their captures.
    """
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(proc.pid)
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        for fd, more in (extra or {}).items():
            sel.register(fd, selectors.EVENT_READ, more)
        sel.register(pidfd, selectors.EVENT_READ, None)
        pending = (stdin or "").encode("utf-8")
        if proc.stdin is not None:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
            else:
                proc.stdin.close()
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return True
            for key, _events in sel.select(remaining):
                if key.data is None:
                    return False  # the child exited; leftovers are killed, pipes drained
                if key.data == "stdin":
                    assert proc.stdin is not None
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]) :]
                    except BrokenPipeError:
                        pending = b""
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                data = os.read(key.fd, 65536)
                capture: Capture = key.data
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                capture.add(data)
                if capture.overflow:
                    return False
    finally:
        sel.close()
        os.close(pidfd)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def drain(
    proc: subprocess.Popen[bytes],
    out: Capture,
    err: Capture,
    extra: Mapping[int, Capture] | None = None,
) -> None:
    """Read what is left in the pipes once every writer is dead (bounded: 2 s)."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.perf_counter() + 2.0
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    for fd, capture in (extra or {}).items():
        sel.register(fd, selectors.EVENT_READ, capture)
    try:
        while sel.get_map() and time.perf_counter() < deadline:
            for key, _events in sel.select(max(0.0, deadline - time.perf_counter())):
                data = os.read(key.fd, 65536)
                if data and not key.data.overflow:
                    key.data.add(data)
                elif not data:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()


def kill_group(pgid: int) -> None:
    """SIGKILL the child's session group: no SIGTERM grace, a candidate may ignore it."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


def close_fds(*fds: int) -> None:
    """Close each fd that is open (>= 0)."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)
