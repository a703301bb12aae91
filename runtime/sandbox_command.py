"""How a child is started: a clean environment, rlimits, the cgroup join, the namespace wrapper.

The command line is built outside-in: ``sh`` joins the run's cgroup before anything
else runs, ``prlimit`` sets the rlimits just before exec (no ``preexec_fn``: it is
unsafe in a process with threads), the isolation wrapper makes the namespaces, and the
candidate's command runs last.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from evolution.errors import SandboxError
from runtime.isolation import Isolation, RunCgroup
from runtime.jail import WATCH_ARG
from runtime.sandbox_pipes import kill_group
from runtime.sandbox_result import SandboxLimits

TMP_NAME = ".tars-tmp"
CGROUP_EXIT = 125  # the join-cgroup shell line failed: a sandbox fault, not a candidate's
#: ``sh -c JOIN NODE_PID D:FD N file1 … fileN command…``: stop if the node is already gone
#: (its death signal would never come), reopen the watch pipe FD as the one-digit fd D
#: (``-``: none; dash redirects only fds 0-9), join every group, then become the command
_JOIN = (
    '[ "$PPID" = "$0" ] || { echo "tars-sandbox: the node is gone" >&2; exit 125; }; '
    'r=$1; shift; [ "$r" = - ] || eval "exec ${r%%:*}</proc/self/fd/${r#*:}"; '
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || '
    '{ echo "tars-sandbox: cannot join cgroup $1" >&2; exit 125; }; shift; n=$((n-1)); done; '
    'exec "$@"'
)
_MIB = 1 << 20
#: stands for "D:FD" (the watch pipe and the digit it is reopened as) until the pipe exists
REOPEN_ARG = "fd:REOPEN"
#: stands for bwrap's ``--block-fd`` until the pipe exists
BLOCK_ARG = "fd:BLOCK"


def clean_env(workdir: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Nothing of the node's environment leaks in (tokens, proxies, PYTHONPATH).

    ``workdir`` is the path the child sees (under bwrap, ``jail.INSIDE``).
    """
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(workdir / TMP_NAME),
    }
    env.update(extra or {})
    return env


def _rlimits(limits: SandboxLimits, nproc: int | None) -> list[tuple[int, int, int]]:
    """(resource, soft, hard); CPU hard is one second later so SIGXCPU comes first.

    ``nproc`` None leaves RLIMIT_NPROC alone: with a pids cgroup it is not needed, and
    it counts every process of the user (all concurrent runs share uid 65534).
    """
    cpu = max(1, math.ceil(limits.cpu_seconds))
    found = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits.memory_mb * _MIB, limits.memory_mb * _MIB),
        (resource.RLIMIT_FSIZE, limits.file_mb * _MIB, limits.file_mb * _MIB),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if nproc is not None:
        found.append((resource.RLIMIT_NPROC, nproc, nproc))
    return found


_PRLIMIT_FLAGS = {
    resource.RLIMIT_CPU: "--cpu", resource.RLIMIT_AS: "--as", resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NPROC: "--nproc", resource.RLIMIT_CORE: "--core",
}  # fmt: skip


def command(
    iso: Isolation,
    workdir: Path,
    argv: list[str],
    limits: SandboxLimits,
    nproc: int,
    cgroup: RunCgroup | None,
    helper: Path | None = None,
    *,
    joined: bool = False,
) -> tuple[list[str], Callable[[], None] | None]:
    """sh (join cgroup) → prlimit (rlimits) → namespace wrapper → the command.

    bwrap's ``--die-with-parent`` has gaps (docs/sandbox.md, "How a run is started"):
    in the jail, a watchdog on a pipe only the node writes closes them.  Outside it
    (weaker isolation), ``setpriv --pdeathsig KILL`` goes first, and the ``sh`` line
    checks that the node was still its parent once that was set.  ``joined``: the
    process that will exec this line is in ``cgroup`` already (a starter,
    :mod:`runtime.sandbox_starter`), so nothing is moved and bwrap is not held.
    """
    rlimits = _rlimits(limits, None if cgroup is not None else nproc)
    full = [*iso.prefix(workdir, limits.disk_mb * _MIB, helper), *argv]
    preexec: Callable[[], None] | None = None
    if iso.prlimit:
        flags = [f"{_PRLIMIT_FLAGS[res]}={soft}:{hard}" for res, soft, hard in rlimits]
        full = [iso.prlimit, *flags, "--", *full]
    else:  # no util-linux prlimit: fall back to the (thread-unsafe) preexec hook

        def preexec() -> None:
            for res, soft, hard in rlimits:
                resource.setrlimit(res, (soft, hard))

    files = [str(f) for f in cgroup.procs_files] if cgroup is not None and not joined else []
    if iso.mode == "bwrap" and files and iso.bwrap in full:
        # bwrap waits on BLOCK_ARG before it forks the command; the node moves it into the
        # groups meanwhile (RunCgroup.adopt), overlapping the move with bwrap's setup
        at = full.index(iso.bwrap) + 1
        full[at:at] = ["--block-fd", BLOCK_ARG]
        files = []
    if files or iso.watch:
        node, reopen = str(os.getpid()), REOPEN_ARG if WATCH_ARG in full else "-"
        full = [iso.sh or "/bin/sh", "-c", _JOIN, node, reopen, str(len(files)), *files, *full]
    else:  # nothing to reopen the watch pipe with: no watchdog
        full = ["-" if part == WATCH_ARG else part for part in full]
    if iso.watch and iso.mode != "bwrap":  # in the jail the watchdog does this, one exec less
        full = [iso.watch, "--pdeathsig", "KILL", "--", *full]
    return full, preexec


def release(proc: subprocess.Popen[bytes], cgroup: RunCgroup | None, block_w: int) -> None:
    """Move the held bwrap into the run's groups, then let it start the command."""
    if block_w < 0:
        return
    try:
        if cgroup is not None:
            cgroup.adopt(proc.pid)
    except OSError as exc:
        if proc.poll() is None:  # alive and outside its groups: it must not run
            kill_group(proc.pid)
            raise SandboxError(
                f"the sandbox could not join its cgroup: {exc}", hint="check /sys/fs/cgroup"
            ) from exc
    else:
        with contextlib.suppress(OSError):  # bwrap died already: the run says why
            os.write(block_w, b"x")
    finally:
        os.close(block_w)
