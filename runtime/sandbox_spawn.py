"""Starting a run's first process: its pipes, and the fds its command line names.

A command line is built with placeholders (:data:`RESULTS_ARG`, the watch pipe, bwrap's
block pipe) because the fds exist only when the process is started; :func:`fill` puts
the numbers in.  A run starts either here, as a fresh child of the node
(:func:`spawn_direct`), or from a starter that waits in the run's cgroups already
(:mod:`runtime.sandbox_starter`); both hand back a :class:`Spawned`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from evolution.errors import SandboxError
from runtime.jail import WATCH_ARG
from runtime.sandbox_command import BLOCK_ARG, REOPEN_ARG
from runtime.sandbox_pipes import close_fds

#: stands for the results pipe's fd in a command line until the pipe exists
RESULTS_ARG = "fd:RESULTS"


@dataclass
class Spawned:
    """The started child and the node's ends of its pipes (-1: none)."""

    proc: subprocess.Popen[bytes]
    results_r: int
    watch_w: int
    block_w: int


def fill(full: Sequence[str], results_w: int, watch_r: int, block_r: int, *busy: int) -> list[str]:
    """The command line with the child's fd numbers in place of the placeholders.

    The watch pipe is reopened as a one-digit fd (dash redirects only 0-9): the first
    of 3-9 that none of the child's other fds (``busy`` too) holds.
    """
    taken = (results_w, watch_r, block_r, *busy)
    digit = next(d for d in range(3, 10) if d not in taken)
    swap = {
        RESULTS_ARG: f"fd:{results_w}", WATCH_ARG: str(digit),
        REOPEN_ARG: f"{digit}:{watch_r}", BLOCK_ARG: str(block_r),
    }  # fmt: skip
    return [swap.get(part, part) for part in full]


def pipe_pair(wanted: bool) -> tuple[int, int]:
    """A pipe (read, write) if ``wanted``, else (-1, -1)."""
    return os.pipe() if wanted else (-1, -1)


def spawn_direct(
    full: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    stdin: bool,
    results: bool,
    preexec: Callable[[], None] | None,
) -> Spawned:
    """Start ``full`` as a new child of the node, in a session of its own."""
    read_end, write_end = pipe_pair(results)
    # the jail's watchdog reads this pipe; its end here closes when this process dies
    watch_r, watch_w = pipe_pair(WATCH_ARG in full)
    block_r, block_w = pipe_pair(BLOCK_ARG in full)
    argv = fill(full, write_end, watch_r, block_r)
    passed = tuple(fd for fd in (write_end, watch_r, block_r) if fd >= 0)
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), start_new_session=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            preexec_fn=preexec, pass_fds=passed,
        )  # fmt: skip
    except OSError as exc:
        close_fds(read_end, write_end, watch_r, watch_w, block_r, block_w)
        raise SandboxError(
            f"cannot start {argv[0]}: {exc}", hint="check the sandbox tools"
        ) from exc
    close_fds(write_end, watch_r, block_r)
    return Spawned(proc, read_end, watch_w, block_w)


class _Lasting:
    """One thread that lives as long as the process and starts the children that outlive
    their caller's thread.

    bwrap's ``--die-with-parent`` (PR_SET_PDEATHSIG) follows the *thread* that forked
    bwrap, not the process: a service worker started from a thread that then ends (a
    pool's restart thread, a caller's short-lived thread starting green) was SIGKILLed
    when that thread ended, seen as workers dying ~10 ms after a restart and calls lost
    in a switch. A candidate's run is waited for by the thread that started it, so it
    needs none of this; :mod:`runtime.sandbox_starter` keeps its own such thread.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Spawned], Future[Spawned]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, job: Callable[[], Spawned]) -> Spawned:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(
                    target=self._serve, name="tars-lasting-spawner", daemon=True
                )
                self._thread.start()
        if threading.current_thread() is self._thread:
            return job()
        done: Future[Spawned] = Future()
        self._jobs.put((job, done))
        try:
            return done.result()
        except BaseException:  # the caller was interrupted: no one will own the child
            done.add_done_callback(_discard)
            raise

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:  # noqa: BLE001 (raised again in the caller's thread)
                done.set_exception(exc)


def _discard(done: Future[Spawned]) -> None:
    """Kill a child whose caller stopped waiting for it, and close its pipes."""
    if done.cancelled() or done.exception() is not None:
        return
    spawned = done.result()
    with contextlib.suppress(OSError):
        os.killpg(spawned.proc.pid, signal.SIGKILL)
    spawned.proc.kill()
    spawned.proc.wait()
    close_fds(spawned.results_r, spawned.watch_w, spawned.block_w)
    for pipe in (spawned.proc.stdin, spawned.proc.stdout, spawned.proc.stderr):
        if pipe is not None:
            pipe.close()


_LASTING = _Lasting()


def spawn_lasting(
    full: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    stdin: bool,
    results: bool,
    preexec: Callable[[], None] | None,
) -> Spawned:
    """:func:`spawn_direct` on the process's lasting thread: for a child that may outlive
    the calling thread (a long-lived service worker), whose death signal must follow the
    node, not the thread that asked for it."""
    return _LASTING.run(
        lambda: spawn_direct(full, cwd, env, stdin=stdin, results=results, preexec=preexec)
    )


__all__ = ["RESULTS_ARG", "Spawned", "fill", "pipe_pair", "spawn_direct", "spawn_lasting"]
