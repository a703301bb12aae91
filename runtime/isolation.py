"""What this machine lets the sandbox use, found once by trying it, and whether that is enough.

Kernels, containers and distributions differ in what they refuse (user namespaces off,
no bwrap, cgroups read-only), so nothing here is assumed: each mechanism is probed
with the exact flags a run will use.  The full jail (:mod:`runtime.jail`: bwrap, uid
65534, a memory and pids cgroup per run) is the default; where any part of it is
missing the probe says what and how to get it, and :class:`Isolation.refusal` makes the
sandbox refuse candidate code unless weaker isolation was accepted explicitly
(``accept_weak_isolation``, ``--accept-weak-isolation``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from evolution.errors import SandboxError
from runtime.cgroups import CPUACCT_ROOT, PIDS_ROOT, RunCgroup, probe_cgroups, reap_stale_cgroups
from runtime.jail import INSIDE, bwrap_args, write_etc

MODES = ("auto", "bwrap", "unshare", "none")
_PROBE_TIMEOUT = 10.0
#: what to do about a missing part, by part
_FIXES = {
    "bwrap": "install bubblewrap (apt-get install -y bubblewrap)",
    "cgroup": "run the node as root on a machine with the memory and pids cgroup controllers",
    "setpriv": "install util-linux (setpriv drops the candidate to uid 65534)",
}


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
    cgroups: bool  # a pids group per run
    root: bool
    notes: tuple[str, ...]
    memory_cgroup: bool = False  # a memory limit for the whole run
    setpriv: str | None = None  # as root: how the candidate becomes nobody
    etc_dir: Path | None = None  # the jail's passwd/group
    watch: str | None = None  # setpriv, to give every run the node's death signal first

    @property
    def missing(self) -> tuple[str, ...]:
        """The parts of the full jail this machine (or this request) lacks."""
        parts = []
        if self.mode != "bwrap":
            parts.append("bwrap")
        if not (self.cgroups and self.memory_cgroup):
            parts.append("cgroup")
        if self.root and self.setpriv is None:
            parts.append("setpriv")
        return tuple(parts)

    @property
    def full(self) -> bool:
        """The whole jail: bwrap as nobody, a memory and a pids cgroup per run."""
        return not self.missing

    def inside(self, workdir: Path) -> Path:
        """The workdir's path as the candidate sees it (fixed under bwrap, the host path otherwise)."""
        return INSIDE if self.mode == "bwrap" else workdir

    @property
    def wrapper_processes(self) -> int:
        """Processes the wrapper itself keeps alive, added to the pids budget.

        bwrap keeps itself and an init in the pid namespace, and the copy-in ``sh``
        forks ``cp`` once and the watchdog; ``unshare`` (run without ``--fork``: util-linux 2.38
        misreports a forked child's signal death), ``sh`` and ``prlimit`` exec in place.
        """
        return 4 if self.mode == "bwrap" else 0

    def describe(self, memory_mb: int = 1024, disk_mb: int = 512) -> str:
        """One line: what is in force, then each refusal and what it leaves open."""
        if self.full:
            return (
                f"jail: bwrap, uid 65534, memory {_size(memory_mb)}/run, disk {_size(disk_mb)}/run, "
                "no network, pid namespace, no capabilities, cgroup (memory, pids, cpu)"
            )
        if self.mode == "bwrap":
            parts = ["bwrap (empty root, private /tmp, no network, pid namespace, no capabilities)"]
        elif self.mode == "unshare":
            parts = ["unshare (no network)"]
        else:
            parts = ["none"]
        if self.cgroups:
            parts.append("cgroup memory + pids.max" if self.memory_cgroup else "cgroup pids.max")
        parts.append("rlimits (cpu, as, fsize, nproc, core)")
        text = " + ".join(parts)
        return "; ".join([text, *self.notes])

    def refusal(self) -> SandboxError | None:
        """The error a sandbox raises instead of running candidate code in a weaker jail."""
        if self.full:
            return None
        fixes = "; ".join(dict.fromkeys(_FIXES[part] for part in self.missing))
        return SandboxError(
            "refusing to run candidate code: the full jail is unavailable here ("
            + "; ".join(self.notes or self.missing)
            + ")",
            hint=f"{fixes}; or accept weaker isolation explicitly with --accept-weak-isolation "
            "(cluster.yml: sandbox: {accept_weak_isolation: true})",
        )

    def prefix(self, workdir: Path, disk_bytes: int, helper: Path | None = None) -> list[str]:
        """The namespace wrapper to put in front of the candidate's argv."""
        if self.mode == "bwrap":
            assert self.bwrap is not None
            setpriv = self.setpriv if self.root else None
            return bwrap_args(
                self.bwrap, workdir, disk_bytes, setpriv=setpriv, etc_dir=self.etc_dir,
                helper=helper, watch=True,
            )  # fmt: skip
        if self.mode == "unshare":
            return list(self.unshare)
        return []


def _size(mb: int) -> str:
    return f"{mb // 1024:g} GiB" if mb % 1024 == 0 else f"{mb} MiB"


def _probe_bwrap(
    scratch: Path, setpriv: str | None, etc_dir: Path
) -> tuple[str | None, str | None]:
    """(bwrap path, None) when the jail runs ``true`` with our exact flags, else (None, why not)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bwrap: not installed"
    scratch.chmod(0o755)
    argv = bwrap_args(bwrap, scratch, 1 << 20, setpriv=setpriv, etc_dir=etc_dir)
    why = _try([*argv, "/bin/true"], cwd=scratch)
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


def probe(requested: str, scratch: Path) -> Isolation:
    """Find the best isolation allowed here; an explicit request that cannot be had is an error.

    ``auto`` degrades (bwrap → unshare → none) and records each refusal; naming a mode
    means the caller depends on it, so its absence raises instead of silently degrading.
    Whether a weaker result may run candidate code is the sandbox's call
    (:meth:`Isolation.refusal`), not the probe's.
    """
    if requested not in MODES:
        raise SandboxError(
            f"unknown sandbox isolation {requested!r}", hint=f"use one of {', '.join(MODES)}"
        )
    root = os.geteuid() == 0
    notes: list[str] = []
    setpriv = shutil.which("setpriv") if root else None
    if root and setpriv is None:
        notes.append("setpriv: not installed; the candidate cannot be dropped to uid 65534")
    etc_dir = write_etc(scratch.parent)
    mode = "none"
    bwrap: str | None = None
    unshare: tuple[str, ...] = ()
    if requested in ("auto", "bwrap") and (setpriv is not None or not root):
        bwrap, why = _probe_bwrap(scratch, setpriv, etc_dir)
        if bwrap is not None:
            mode = "bwrap"
        elif requested == "bwrap":
            raise SandboxError(
                f"sandbox isolation 'bwrap' unavailable: {why}",
                hint="install bubblewrap (apt-get install -y bubblewrap) or use isolation 'auto'",
            )
        else:
            notes.append(
                f"{why}; filesystem not isolated (the candidate can read and write what the node can)"
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
    pids, memory, why_cg = probe_cgroups() if root else (False, False, "not root: no cgroup")
    if not pids:
        notes.append(
            f"{why_cg}; RLIMIT_NPROC is not enforced for root, "
            "so processes are bounded only by the wall limit"
            if root
            else f"{why_cg}; memory is bounded per process, processes by RLIMIT_NPROC"
        )
    elif not memory:
        notes.append(why_cg or "no memory cgroup; memory is bounded per process only")
    return Isolation(
        mode=mode, bwrap=bwrap, unshare=unshare, prlimit=shutil.which("prlimit"),
        sh=shutil.which("sh"), cgroups=pids, root=root, notes=tuple(notes),
        memory_cgroup=memory, setpriv=setpriv, etc_dir=etc_dir, watch=shutil.which("setpriv"),
    )  # fmt: skip


__all__ = [
    "CPUACCT_ROOT",
    "INSIDE",
    "MODES",
    "PIDS_ROOT",
    "Isolation",
    "RunCgroup",
    "bwrap_args",
    "probe",
    "reap_stale_cgroups",
]
