"""A node's claim on its state folder: an exclusive lock held for the process's life, and its pid file.

Two processes of one node (a `tars node start` and a `tars cluster up`, or two of
either) would share a store, a journal and a port, and the one that lost the port
would leave its dead pid in ``node.pid`` for `tars cluster down` to find.  So the node
process itself takes an ``flock`` on ``node.lock`` in its state folder before it builds
anything, and only then writes its pid, into the lock file and into ``node.pid``.

The kernel drops an ``flock`` when its holder dies, even by SIGKILL, so the lock, not a
file's contents, says whether the node runs; the lock file's contents say which process
holds it (only the holder writes them).  ``node.pid`` is the same record for people and
older tools.  The lock file itself is never deleted: a new inode would let a second node
lock while the first still holds the old one.  Its descriptor is close-on-exec, so a
sandboxed child never inherits the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from evolution.errors import ConfigError
from runtime.processes import pid_alive, start_time

__all__ = ["LOCK_NAME", "PID_NAME", "NodeRunning", "StateLock", "holder", "read_pid_file"]

LOCK_NAME = "node.lock"
PID_NAME = "node.pid"

#: How long a start waits for the lock before it calls the node running.  A look by
#: :func:`holder` holds the lock for microseconds; a running node holds it for good.
PATIENCE = 1.0
_RETRY = 0.02


class NodeRunning(ConfigError):
    """A second start of a node whose state folder another live process holds."""

    def __init__(self, node_id: str, pid: int | None, *, hint: str | None = None) -> None:
        shown = f"pid {pid}" if pid else "pid not recorded yet"
        super().__init__(
            f"{node_id} is already running, {shown}",
            hint=hint or "stop it first (`tars cluster down`), or leave it running",
        )
        self.node_id = node_id
        self.pid = pid


def _record(pid: int) -> bytes:
    return f"{pid}\n{start_time(pid) or ''}\n".encode()


def _parse(text: str) -> tuple[int, str | None] | None:
    fields = text.split()
    try:
        return int(fields[0]), (fields[1] if len(fields) > 1 else None)
    except (ValueError, IndexError):
        return None


def read_pid_file(path: Path) -> tuple[int, str | None] | None:
    """``(pid, start time)`` from a pid file, or None when it is missing or garbled."""
    try:
        return _parse(path.read_text())
    except OSError:
        return None


def holder(state_dir: Path) -> int | None:
    """The pid of the live process that holds the state folder's lock; None when none does.

    A held lock whose recorded pid is gone or unreadable (its holder is between taking
    the lock and writing its pid) gives 0: the folder is taken, the process unknown.
    """
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            recorded = _parse(os.pread(fd, 64, 0).decode("ascii", "replace"))
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    if recorded is None or not pid_alive(recorded[0]):
        return 0
    pid, started = recorded
    if started is not None and start_time(pid) not in (None, started):
        return 0
    return pid


class StateLock:
    """The exclusive lock on one node's state folder, and its pid file, for one process."""

    def __init__(self, state_dir: Path, node_id: str, *, hint: str | None = None) -> None:
        """``hint``: what to tell the user when the node is already running."""
        self.state_dir = state_dir
        self.node_id = node_id
        self.hint = hint
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, patience: float = PATIENCE) -> StateLock:
        """Take the lock and write this process's pid, or raise :class:`NodeRunning`.

        Nothing else in the folder is touched before the lock is ours.
        """
        if self._fd is not None:
            return self
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"{self.node_id}: cannot lock its state folder {self.state_dir}: {exc.strerror}",
                hint="check the folder exists or can be made, and that this user may write to it",
            ) from exc
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    recorded = _parse(os.pread(fd, 64, 0).decode("ascii", "replace"))
                    os.close(fd)
                    raise NodeRunning(
                        self.node_id, recorded[0] if recorded else None, hint=self.hint
                    ) from None
                time.sleep(_RETRY)
        self._fd = fd
        record = _record(os.getpid())
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        pid_path = self.state_dir / PID_NAME
        tmp = pid_path.with_name(f"{PID_NAME}.{os.getpid()}.tmp")
        tmp.write_bytes(record)
        os.replace(tmp, pid_path)
        return self

    def release(self) -> None:
        """Remove our pid file and let the lock go (the kernel does the same on any exit)."""
        if self._fd is None:
            return
        pid_path = self.state_dir / PID_NAME
        recorded = read_pid_file(pid_path)
        if recorded is not None and recorded[0] == os.getpid():
            pid_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor releases the flock
        self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
