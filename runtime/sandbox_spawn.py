"""Starting a run's first process: its pipes, and the fds its command line names.

A command line is built with placeholders (:data:`RESULTS_ARG`, the watch pipe, bwrap's
block pipe) because the fds exist only when the process is started; :func:`fill` puts
the numbers in.  A run starts either here, as a fresh child of the node
(:func:`spawn_direct`), or from a starter that waits in the run's cgroups already
(:mod:`runtime.sandbox_starter`); both hand back a :class:`Spawned`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
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


__all__ = ["RESULTS_ARG", "Spawned", "fill", "pipe_pair", "spawn_direct"]
