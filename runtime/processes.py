"""What the kernel says about a pid: alive, a zombie, when it started; and dying with a parent.

A pid file can outlive its process and the kernel reuses pids, so a pid is only ours if
its start time (``/proc/<pid>/stat``) is the one recorded when we started it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the launching thread dies (Linux prctl; the
    kernel ties it to the forking thread, so the caller forks from the main thread)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the demo's `finally` still stops its nodes on a normal exit


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].startswith("Z")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps it when it is an exited child of ours."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)
