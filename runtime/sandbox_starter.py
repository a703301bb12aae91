"""A process that waits in the next run's cgroups, so that no run waits for the move.

Moving a task into a cgroup v1 group waits for an RCU grace period (12-15 ms here,
``percpu_down_write(cgroup_threadgroup_rwsem)``), whatever is moved: it was the largest
single cost of a jailed run.  A process *born* in a group costs nothing (fork takes
that lock for reading only), and so does one that *execs* there.  So a Sandbox keeps
one starter ready: a tiny ``python -I -S`` child of the node, in its own session, with
the run's stdin/stdout/stderr pipes, the watch pipe and a results pipe already made,
moved into a fresh set of groups (pids, memory, cpuacct) while no run waits.  A run
claims it (the groups get the run's name and limits: a rename and three writes,
~0.1 ms), sends it one NUL-separated order (cwd, argv, env) on a pipe only the node holds, and
the starter ``execve``s the jail's command line: the same pid, so the run's first
process is the node's child as before (bwrap's ``--die-with-parent``, the ``sh``
line's check that the node is its parent, the watchdog's pipe, the session that is
killed as a group), and every process of the run is in its groups from the start.

The starter runs nothing but this file's few lines, as the node's user, before the
jail exists; candidate code only ever runs after the exec, inside the jail, as uid
65534 in its own pid namespace, so it can neither reach nor reuse a starter (each
serves one run).  When the node dies, the starter's control pipe closes and it exits;
its groups carry the node's pid and are reaped like a run's.  An unused starter is
killed and its groups removed when the Sandbox closes (or is collected).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from evolution.errors import SandboxError
from runtime.cgroups import STANDBY_PREFIX, RunCgroup
from runtime.sandbox_pipes import close_fds
from runtime.sandbox_spawn import Spawned, fill

#: the starter: read one order from fd argv[1] up to EOF (nothing: the node is gone or
#: the starter is not wanted, exit); close what the run must not have, restore the
#: signals Python ignores (an exec keeps them ignored), become the run's command.  The
#: order is NUL-separated (no argument, variable or path can hold a NUL): cwd, "1" for
#: stdin from /dev/null, an fd to close or "-", argc, argv, then KEY=VALUE.  Only
#: builtins: its start-up is ~7 ms of CPU (json and signal would double it).
_CODE = r"""
import os, sys
ctl = int(sys.argv[1])
chunks = []
while True:
    chunk = os.read(ctl, 65536)
    if not chunk:
        break
    chunks.append(chunk)
if not chunks:
    os._exit(0)
os.close(ctl)
cwd, devnull, close, argc, *rest = b"".join(chunks).split(b"\0")
argv, env = rest[: int(argc)], dict(item.split(b"=", 1) for item in rest[int(argc) :])
if close != b"-":
    os.close(int(close))
if devnull == b"1":
    fd = os.open("/dev/null", os.O_RDWR)
    os.dup2(fd, 0)
    os.close(fd)
import _signal
for name in ("SIGPIPE", "SIGXFSZ", "SIGXFZ"):
    if hasattr(_signal, name):
        _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
try:
    os.chdir(cwd)
    os.execvpe(argv[0], argv, env)
except OSError as exc:
    os.write(2, b"tars-sandbox: cannot start %s: %s\n" % (argv[0], str(exc).encode()))
os._exit(127)
"""


class Starter:
    """One waiting starter and its groups; serves exactly one run."""

    def __init__(self, cgroup: RunCgroup) -> None:
        self.cgroup = cgroup
        self.launched = False  # once True, the process is the run's
        ctl_r, self._ctl_w = os.pipe()
        self._watch_r, self.watch_w = os.pipe()
        self.results_r, self._results_w = os.pipe()
        self._ctl_r = ctl_r
        passed = (ctl_r, self._watch_r, self._results_w)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _CODE, str(ctl_r)], cwd="/", env={},
                start_new_session=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, pass_fds=passed,
            )  # fmt: skip
        except OSError:
            close_fds(self._ctl_w, self.watch_w, self.results_r, *passed)
            raise
        close_fds(*passed)  # the child keeps them, under the same numbers
        try:
            cgroup.adopt(self.proc.pid)
        except OSError:
            self.stop()
            raise

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def launch(
        self, full: Sequence[str], cwd: Path, env: Mapping[str, str], *, stdin: bool, results: bool
    ) -> Spawned:
        """Hand the run's command line to the starter, which execs it in place."""
        argv = fill(full, self._results_w if results else -1, self._watch_r, -1, self._ctl_r)
        fields = [
            str(cwd), "0" if stdin else "1", "-" if results else str(self._results_w),
            str(len(argv)), *argv, *(f"{key}={value}" for key, value in env.items()),
        ]  # fmt: skip
        if any("\0" in field for field in fields) or any("=" in key for key in env):
            self.discard()  # what Popen refuses, refused alike
            raise ValueError("a NUL in the command or environment, or '=' in a variable name")
        data = b"\0".join(os.fsencode(field) for field in fields)
        try:
            while data:
                data = data[os.write(self._ctl_w, data) :]
        except OSError as exc:
            self.discard()
            raise SandboxError(
                f"the sandbox's starter died before its run: {exc}", hint="check the node's log"
            ) from exc
        os.close(self._ctl_w)
        self._ctl_w = -1
        self.launched = True
        if not results:
            os.close(self.results_r)
            self.results_r = -1
        if not stdin and self.proc.stdin is not None:
            self.proc.stdin.close()
            self.proc.stdin = None
        return Spawned(self.proc, self.results_r, self.watch_w, -1)

    def stop(self) -> None:
        """Kill the starter (never used once launched) and close the node's ends of its pipes.

        Idempotent: once reaped, its pid may be another process's, so it is not signalled.
        """
        if self.proc.poll() is None:  # not reaped yet: the pid is still this starter's
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        close_fds(self._ctl_w, self.watch_w, self.results_r)
        self._ctl_w = self.watch_w = self.results_r = -1

    def discard(self) -> None:
        """Stop an unused starter and remove its groups."""
        self.stop()
        self.cgroup.kill_all()
        self.cgroup.remove()


class _Spawner:
    """The one thread that forks every starter; it lives as long as the process.

    A child's death signal (bwrap's ``--die-with-parent``) follows the *thread* that
    forked it, not the process: a starter forked by a thread that ends before its run
    does would have that run SIGKILLed when the thread ends.  This thread never ends
    (a daemon: it goes with the process, which is when the runs must go too).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(
                    target=self._serve, name="tars-sandbox-starters", daemon=True
                )
                self._thread.start()
        self._jobs.put(job)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            with contextlib.suppress(Exception):  # a job keeps its own state consistent
                job()


_SPAWNER = _Spawner()


class StarterPool:
    """Keeps one starter ready for the next run of one Sandbox (cgroup v1 only).

    The standby groups are made by :meth:`prime`'s caller, at once, and kept until a
    run claims them or the pool closes (a starter that fails is replaced in the same
    groups): so they exist before the caller's next step, and a run's own groups are
    all that a run makes or removes.  The process and its move into them happen on
    the spawner's thread (:class:`_Spawner`).  A run that finds none ready starts the
    ordinary way (:func:`runtime.sandbox_spawn.spawn_direct` and ``RunCgroup.adopt``).
    """

    def __init__(self) -> None:
        # reentrant: close() may run from a finalizer while this thread holds the lock
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._group: RunCgroup | None = None
        self._ready: Starter | None = None
        self._making = False
        self._closed = False
        #: runs that found a starter ready, and runs that did not (for the benchmark)
        self.served = self.missed = 0
        self._name = f"{STANDBY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def prime(self) -> None:
        """Start making the next starter unless one is ready or on its way."""
        with self._lock:
            if self._closed or self._ready is not None or self._making:
                return
            if self._group is None:
                try:
                    self._group = RunCgroup.standby(self._name)
                except SandboxError:
                    return  # runs start the ordinary way
            group, self._making = self._group, True
        _SPAWNER.submit(lambda: self._make(group))

    def _make(self, group: RunCgroup) -> None:
        starter: Starter | None = None
        try:
            starter = Starter(group)
        except (OSError, SandboxError):
            group.kill_all()  # the groups stay, for the next try
        finally:
            with self._lock:
                self._making = False
                if starter is not None and not self._closed:
                    self._ready, starter = starter, None
                self._done.notify_all()
        if starter is not None:  # closed meanwhile
            starter.discard()

    def take(self, max_pids: int, memory_bytes: int) -> Starter | None:
        """The ready starter, its groups now the run's (name, limits); None if none is ready."""
        with self._lock:
            starter, self._ready = self._ready, None
            if starter is None or not starter.alive:
                self.missed += 1
                if starter is not None:  # killed meanwhile: the groups stay for the next one
                    starter.stop()
                return None
            self._group = None
            self.served += 1
        try:
            starter.cgroup.claim(max_pids, memory_bytes)
        except OSError:
            starter.discard()
            return None
        return starter

    def wait_ready(self, timeout: float = 10.0) -> int | None:
        """The ready starter's pid once there is one (None after ``timeout``): for tests and benchmarks."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.prime()
            with self._lock:
                if self._ready is not None:
                    return self._ready.proc.pid
                if self._closed:
                    return None
                self._done.wait(timeout=max(0.0, end - time.monotonic()))
        return None

    def close(self) -> None:
        """Kill the ready starter (and one being made) and remove the standby groups."""
        with self._lock:
            self._closed = True
            starter, self._ready = self._ready, None
            self._done.wait_for(lambda: not self._making, timeout=10)
            group, self._group = self._group, None
        if starter is not None:
            starter.discard()
        if group is not None:
            group.kill_all()
            group.remove()


__all__ = ["Starter", "StarterPool"]
