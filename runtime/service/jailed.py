"""A long-lived child in the candidates' jail: the service workers' processes.

Not a second jail: the command line, the cgroup, the watchdog pipe and the clean
environment are the sandbox's own (:mod:`runtime.sandbox_command`,
:mod:`runtime.sandbox_spawn`, :mod:`runtime.isolation`), and the refuse-or-flag rule is
the sandbox's: where the full jail is missing, :meth:`Sandbox.mechanisms` raises unless
the node accepted weaker isolation. What differs from a candidate's run is only the
life: no wall clock and no CPU budget (a worker lives as long as its version serves),
its stdin and stdout stay open for frames, and the node kills it when done.

The folder handed in (``source``) is bound read-only (:data:`runtime.jail.SOURCE`);
bind mounts are live, so a version written into it later is seen inside (reload).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evolution.errors import ServiceError
from runtime.cgroups import RunCgroup
from runtime.jail import SOURCE
from runtime.sandbox import Sandbox
from runtime.sandbox_command import clean_env, command, release
from runtime.sandbox_pipes import close_fds, kill_group
from runtime.sandbox_reap import safe_relpath
from runtime.sandbox_result import SandboxLimits
from runtime.sandbox_spawn import spawn_lasting

__all__ = [
    "Jailed", "check_version", "inside_path", "keep_tail", "last_line", "spawn", "write_tree",
]  # fmt: skip

_MIB = 1 << 20
_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: a worker's CPU is not budgeted: it lives as long as its version serves
_NO_CPU_LIMIT = 10.0**8
#: what is kept of a worker's stderr (the genome's prints and its last words)
STDERR_TAIL = 8192


@dataclass
class Jailed:
    """The started child, its groups and the node's end of its watchdog pipe."""

    proc: subprocess.Popen[bytes]
    cgroup: RunCgroup | None
    watch_w: int
    tail: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: bool = False

    @property
    def pid(self) -> int:
        """The jail's outermost process (bwrap, or the worker itself without bwrap)."""
        return self.proc.pid

    # -- the child's ends as :class:`runtime.service.worker.Worker` uses them (a worker in
    # a service container, :class:`runtime.service.contained.Contained`, has the same) --

    @property
    def write_fd(self) -> int:
        """Frames to the worker (its stdin; non-blocking)."""
        assert self.proc.stdin is not None
        return self.proc.stdin.fileno()

    @property
    def read_fd(self) -> int:
        """Frames from the worker (its stdout)."""
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    @property
    def err_fd(self) -> int:
        """The worker's stderr: its prints and last words."""
        assert self.proc.stderr is not None
        return self.proc.stderr.fileno()

    def terminate(self) -> None:
        """SIGKILL every process of the jail, leaving the pipes open (their reader sees EOF)."""
        kill_group(self.proc.pid)
        if self.cgroup is not None and not self._done:  # one signal each, no waiting
            for pid in self.cgroup.pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """Kill every process of the jail, reap it, close its pipes, remove its groups (idempotent)."""
        with self._lock:
            if self._done:
                return
            self._done = True
        kill_group(self.proc.pid)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        with contextlib.suppress(OSError):
            self.proc.stdin.close() if self.proc.stdin else None
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()
        close_fds(self.watch_w)
        self.watch_w = -1
        for pipe in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close() if pipe else None
        if self.cgroup is not None:
            self.cgroup.kill_all()
            self.cgroup.remove()

    def keep_stderr(self, chunk: bytes) -> None:
        keep_tail(self.tail, chunk)

    def last_words(self) -> str:
        return last_line(self.tail)


def keep_tail(tail: bytearray, chunk: bytes) -> None:
    """Append ``chunk`` to a worker's stderr tail, keeping the last :data:`STDERR_TAIL` bytes."""
    tail += chunk
    if len(tail) > STDERR_TAIL:
        del tail[: len(tail) - STDERR_TAIL]


def last_line(tail: bytearray) -> str:
    """A worker's last words: the last non-empty line of its stderr tail."""
    lines = [line for line in tail.decode("utf-8", "replace").splitlines() if line]
    return lines[-1] if lines else ""


def write_tree(folder: Path, tree: Mapping[str, str]) -> None:
    """``tree`` into ``folder``, world-readable (the worker runs as nobody), read-only to it."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    for rel, text in tree.items():
        target = folder / safe_relpath(rel)
        for parent in reversed(target.relative_to(folder).parents):
            (folder / parent).mkdir(exist_ok=True)
            (folder / parent).chmod(0o755)
        target.write_text(text, encoding="utf-8", newline="")
        target.chmod(0o644)


def check_version(version: str) -> None:
    """A version names a folder: letters, digits, '.', '_', '-' only (ids are hashes)."""
    if not _VERSION.match(version) or version in (".", ".."):
        raise ServiceError(
            f"cannot serve version {version!r}: not a version id",
            hint="pass the version's id (letters, digits, '.', '_' or '-')",
        )


def inside_path(sandbox: Sandbox, source: Path) -> Path:
    """Where ``source`` appears to the child: :data:`SOURCE` in the jail, else as it is."""
    return Path(SOURCE) if sandbox.mechanisms().mode == "bwrap" else source


def limits_for(memory_mb: int, processes: int, file_mb: int, disk_mb: int) -> SandboxLimits:
    """A worker's limits: the manifest's memory, processes, file size and disk; no clocks."""
    return SandboxLimits(
        wall_seconds=_NO_CPU_LIMIT, cpu_seconds=_NO_CPU_LIMIT, memory_mb=memory_mb,
        processes=processes, file_mb=file_mb, disk_mb=disk_mb,
    )  # fmt: skip


def spawn(
    sandbox: Sandbox,
    source: Path,
    argv: Sequence[str],
    limits: SandboxLimits,
    env: Mapping[str, str] | None = None,
) -> Jailed:
    """Start ``argv`` (``python …``) jailed over ``source``; stdin and stdout are its pipes."""
    iso = sandbox.mechanisms()  # the refuse-or-flag rule: raises where the jail is missing
    if sandbox.disk_mb is not None:
        limits = SandboxLimits(
            **{**limits.__dict__, "disk_mb": min(limits.disk_mb, sandbox.disk_mb)}
        )
    program = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    nproc = limits.processes + iso.wrapper_processes
    memory = limits.memory_mb * _MIB if iso.memory_cgroup else None
    cgroup = RunCgroup(nproc, memory) if iso.cgroups else None
    try:
        full, preexec = command(iso, source, program, limits, nproc, cgroup)
        spawned = spawn_lasting(  # its death signal must follow the node, not this thread
            full, source, clean_env(iso.inside(source), env), stdin=True, results=False,
            preexec=preexec,
        )  # fmt: skip
    except BaseException:
        if cgroup is not None:
            cgroup.remove()
        raise
    jailed = Jailed(spawned.proc, cgroup, spawned.watch_w)
    try:
        release(spawned.proc, cgroup, spawned.block_w)
    except BaseException:
        jailed.kill()
        raise
    os.set_blocking(spawned.proc.stdin.fileno(), False)  # type: ignore[union-attr]
    return jailed
