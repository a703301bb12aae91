"""What this machine lets the sandbox use, found once by trying it.

Kernels, containers and distributions differ in what they refuse (user namespaces off,
no bwrap, cgroups read-only), so nothing here is assumed: each mechanism is probed
with the exact flags a run will use, and a refusal is kept as a readable note so the
sandbox can say what is *not* isolated instead of failing or pretending.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from evolution.errors import SandboxError

MODES = ("auto", "bwrap", "unshare", "none")
PIDS_ROOT = Path("/sys/fs/cgroup/pids")
CPUACCT_ROOT = Path("/sys/fs/cgroup/cpuacct")
_PROBE_TIMEOUT = 10.0


#: Where the workdir appears inside bwrap, whatever its path on the host: a candidate's
#: run must not depend on where the node keeps its state (an instruction count moved by
#: up to 0.75 % with the length of that path).
INSIDE = Path("/tmp/tars-ws")


def bwrap_args(bwrap: str, workdir: Path, tmp_bytes: int) -> list[str]:
    """The bwrap prefix: read-only host, private bounded /tmp, only ``workdir`` writable (as INSIDE).

    ``--cap-drop ALL`` matters because bwrap run as root keeps every capability, and a
    root child with CAP_SYS_ADMIN could simply remount ``/`` read-write.
    """
    wd, inside = str(workdir), str(INSIDE)
    return [
        bwrap,
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--size", str(tmp_bytes), "--tmpfs", "/tmp",
        *_interpreter_binds(),
        "--bind", wd, inside,
        "--chdir", inside,
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--",
    ]  # fmt: skip


def _interpreter_binds() -> list[str]:
    """Read-only binds that bring the node's interpreter back above the private /tmp.

    A node installed under /tmp (a CI clone, a throw-away venv) would otherwise lose its
    own Python the moment the sandbox mounts a fresh /tmp: ``execvp … No such file``
    (seen in a CI clone under /tmp).
    """
    paths = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(
            os.path.abspath(__file__)
        ),  # runtime/_sandbox_child.py, the profiler's helper
    }
    args: list[str] = []
    for path in sorted(paths):
        real = os.path.realpath(path)
        for candidate in {path, real}:
            if (candidate == "/tmp" or candidate.startswith("/tmp/")) and os.path.isdir(candidate):
                args += ["--ro-bind", candidate, candidate]
    return args


def _refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The last line a refusing tool printed: usually the errno text a user can search."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def _try(argv: list[str], cwd: Path | None = None) -> str | None:
    """None when ``argv`` ran cleanly, else why not (one line)."""
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=_PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if result.returncode == 0 else _refusal(result)


@dataclass(frozen=True)
class Isolation:
    """The mechanisms in force for every run of one Sandbox, and what was refused."""

    mode: str  # "bwrap" | "unshare" | "none"
    bwrap: str | None
    unshare: tuple[str, ...]  # full unshare prefix, empty unless mode == "unshare"
    prlimit: str | None
    sh: str | None
    cgroups: bool
    root: bool
    notes: tuple[str, ...]

    def inside(self, workdir: Path) -> Path:
        """The workdir's path as the candidate sees it (fixed under bwrap, the host path otherwise)."""
        return INSIDE if self.mode == "bwrap" else workdir

    @property
    def wrapper_processes(self) -> int:
        """Processes the wrapper itself keeps alive, added to the pids budget.

        bwrap keeps itself and an init in the pid namespace; ``unshare`` (run without
        ``--fork``: util-linux 2.38 misreports a forked child's signal death), ``sh``
        and ``prlimit`` exec in place and cost nothing.
        """
        return 2 if self.mode == "bwrap" else 0

    def describe(self) -> str:
        """One line: what is in force, then each refusal and what it leaves open."""
        if self.mode == "bwrap":
            parts = [
                "bwrap (read-only root, private /tmp, no network, pid namespace, no capabilities)"
            ]
        elif self.mode == "unshare":
            parts = ["unshare (no network)"]
        else:
            parts = ["none"]
        if self.cgroups:
            parts.append("cgroup pids.max")
        parts.append("rlimits (cpu, as, fsize, nproc, core)")
        text = " + ".join(parts)
        return "; ".join([text, *self.notes])

    def prefix(self, workdir: Path, tmp_bytes: int) -> list[str]:
        """The namespace wrapper to put in front of the candidate's argv."""
        if self.mode == "bwrap":
            assert self.bwrap is not None
            return bwrap_args(self.bwrap, workdir, tmp_bytes)
        if self.mode == "unshare":
            return list(self.unshare)
        return []


def _probe_bwrap(scratch: Path) -> tuple[str | None, str | None]:
    """(bwrap path, None) when bwrap works with our exact flags, else (None, why not)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bwrap: not installed"
    true = shutil.which("true") or "/bin/true"
    why = _try([*bwrap_args(bwrap, scratch, 1 << 20), true], cwd=scratch)
    if why is not None:
        return None, f"bwrap refused ({why})"
    return bwrap, None


def _probe_unshare(root: bool) -> tuple[tuple[str, ...], str | None]:
    """The strongest unshare prefix that works, or why none does."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return (), "no network namespace: unshare not installed; network not isolated"
    user = () if root else ("--map-root-user",)
    true = shutil.which("true") or "/bin/true"
    argv = (unshare, *user, "--net", "--")
    why = _try([*argv, true])
    if why is None:
        return argv, None
    return (), f"no network namespace: unshare refused ({why}); network not isolated"


def _probe_cgroups() -> str | None:
    """None when we can make, limit and remove a pids cgroup; else why not."""
    path = PIDS_ROOT / f"tars-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir()
    except OSError as exc:
        return f"cgroup pids refused ({exc.strerror or exc})"
    try:
        (path / "pids.max").write_text("8")
        reap_stale_cgroups()
        return None
    except OSError as exc:
        return f"cgroup pids.max refused ({exc.strerror or exc})"
    finally:
        with contextlib.suppress(OSError):
            path.rmdir()


def reap_stale_cgroups(min_age_seconds: float = 60.0) -> int:
    """Remove empty ``tars-*`` groups a killed node left behind (``kill -9`` skips cleanup).

    Only groups older than ``min_age_seconds`` are touched, so a run that another node
    has just created and not yet joined is never taken from under it.
    """
    removed = 0
    now = time.time()
    for root in (PIDS_ROOT, CPUACCT_ROOT):
        if not root.is_dir():
            continue
        for path in root.glob("tars-*"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime < min_age_seconds:
                    continue
                if (path / "cgroup.procs").read_text().strip():
                    continue
                path.rmdir()
                removed += 1
    return removed


def probe(requested: str, scratch: Path) -> Isolation:
    """Find the best isolation allowed here; an explicit request that cannot be had is an error.

    ``auto`` degrades (bwrap → unshare → none) and records each refusal; naming a mode
    means the caller depends on it, so its absence raises instead of silently degrading.
    """
    if requested not in MODES:
        raise SandboxError(
            f"unknown sandbox isolation {requested!r}", hint=f"use one of {', '.join(MODES)}"
        )
    root = os.geteuid() == 0
    notes: list[str] = []
    mode = "none"
    bwrap: str | None = None
    unshare: tuple[str, ...] = ()
    if requested in ("auto", "bwrap"):
        bwrap, why = _probe_bwrap(scratch)
        if bwrap is not None:
            mode = "bwrap"
        elif requested == "bwrap":
            raise SandboxError(
                f"sandbox isolation 'bwrap' unavailable: {why}",
                hint="install bubblewrap or use isolation 'auto'",
            )
        else:
            notes.append(
                f"{why}; filesystem not isolated (writes outside the workdir are possible)"
            )
    if mode == "none" and requested in ("auto", "unshare"):
        unshare, why = _probe_unshare(root)
        if unshare:
            mode = "unshare"
        elif requested == "unshare":
            raise SandboxError(
                f"sandbox isolation 'unshare' unavailable: {why}",
                hint="use isolation 'auto' or 'none'",
            )
        else:
            notes.append(why or "")
    if requested == "none":
        notes.append("isolation 'none' requested: network and filesystem not isolated")
    elif requested == "unshare":
        notes.append("isolation 'unshare' requested: filesystem not isolated")
    cgroups = False
    if root:
        why_cg = _probe_cgroups()
        cgroups = why_cg is None
        if why_cg is not None:
            notes.append(
                f"{why_cg}; RLIMIT_NPROC is not enforced for root, "
                "so processes are bounded only by the wall limit"
            )
    return Isolation(
        mode=mode, bwrap=bwrap, unshare=unshare, prlimit=shutil.which("prlimit"),
        sh=shutil.which("sh"), cgroups=cgroups, root=root, notes=tuple(notes),
    )  # fmt: skip


class RunCgroup:
    """One run's cgroup v1 groups: ``pids`` (the only fork-bomb bound that binds root)
    and, when mounted, ``cpuacct`` (CPU time of the whole run, which wait4 cannot see
    through bwrap's pid-namespace init).

    The pids group also lists every process of the run, whatever session or namespace
    it fled to, which is how cleanup finds them all.
    """

    def __init__(self, max_pids: int) -> None:
        name = f"tars-{uuid.uuid4().hex}"
        self.path = PIDS_ROOT / name
        self.cpu_path: Path | None = None
        try:
            self.path.mkdir()
            (self.path / "pids.max").write_text(str(max_pids))
        except OSError as exc:
            self.remove()
            raise SandboxError(
                f"cannot create cgroup {self.path}: {exc}",
                hint="check that /sys/fs/cgroup/pids is writable",
            ) from exc
        if CPUACCT_ROOT.is_dir():
            try:
                (CPUACCT_ROOT / name).mkdir()
                self.cpu_path = CPUACCT_ROOT / name
            except OSError:
                self.cpu_path = None  # optional: rusage is the fallback

    @property
    def procs_files(self) -> list[Path]:
        """Writing a pid into each moves that process (and its future children) in."""
        files = [self.path / "cgroup.procs"]
        if self.cpu_path is not None:
            files.append(self.cpu_path / "cgroup.procs")
        return files

    def pids(self) -> list[int]:
        """Processes still in the group (empty when the group is gone)."""
        try:
            return [int(x) for x in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def fork_refusals(self) -> int:
        """How many forks pids.max refused: proof the process limit was hit."""
        try:
            for line in (self.path / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def cpu_seconds(self) -> float | None:
        """CPU time of every process the run ever had, or None without cpuacct."""
        if self.cpu_path is None:
            return None
        try:
            return int((self.cpu_path / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            return None

    def kill_all(self, deadline_seconds: float = 5.0) -> None:
        """SIGKILL every member until none is left; a forking member cannot outrun it.

        Forks are bounded by pids.max, so each pass kills at least as fast as the
        group can refill; the loop ends when the group is empty.
        """
        end = time.monotonic() + deadline_seconds
        while time.monotonic() < end:
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.0005)

    def remove(self) -> bool:
        """rmdir the groups; False if members (dying tasks) still hold one."""
        done = True
        for path in (self.path, self.cpu_path):
            if path is None:
                continue
            for _ in range(200):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)
            else:
                done = False
        return done
