"""What a sandboxed run may use and how it ended: limits in, a :class:`RunResult` out.

Pure: :func:`classify` turns an exit status, the tail of stderr and the resource counts
into one failure word and a sentence, so every way a candidate can fail is testable
without running one.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evolution.manifest import Limits


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits; defaults match the manifest's so a bare genome gets the same."""

    wall_seconds: float = 60.0
    cpu_seconds: float = 60.0
    memory_mb: int = 1024
    processes: int = 64
    file_mb: int = 64
    #: every byte the run may write (workdir, /tmp, /dev/shm share one tmpfs of this size)
    disk_mb: int = 512

    @classmethod
    def from_manifest(cls, limits: Limits) -> SandboxLimits:
        """The genome's own ``[limits]`` table, so the manifest is the single source."""
        return cls(
            wall_seconds=float(limits.wall_seconds), cpu_seconds=float(limits.cpu_seconds),
            memory_mb=int(limits.memory_mb), processes=int(limits.processes),
            file_mb=int(limits.file_mb),
            disk_mb=int(getattr(limits, "disk_mb", cls.disk_mb)),
        )  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    """What one child did; ``failure`` is the machine-readable why, ``detail`` the human one.

    ``returncode`` is the exit code, ``-N`` for death by signal N, and None when the
    sandbox killed the run itself (wall limit, output limit).
    """

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    failure: str | None
    detail: str
    #: the run's peak memory in MiB: its memory cgroup's high-water mark (every process
    #: and its tmpfs together); None where the machine gives none (no memory group, a
    #: cgroup v2 kernel before 5.19)
    peak_memory_mb: float | None = None
    #: the CPU seconds of every process of the run (its cpuacct group; rusage where there
    #: is none): what a run cost on a shared machine, where its wall time counts the others
    cpu_seconds: float | None = None

    @property
    def ok(self) -> bool:
        """A clean exit 0 and nothing else counts as success."""
        return self.failure is None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:200]
    return ""


def classify(
    returncode: int,
    stderr: str,
    limits: SandboxLimits,
    cpu_seconds: float,
    fork_refusals: int,
    *,
    oom_kills: int = 0,
) -> tuple[str | None, str]:
    """Map how the child ended to (failure, detail); pure, so every branch is testable.

    Python turns most limits into exceptions rather than signals (SIGXFSZ is ignored,
    so a too-large write raises EFBIG; RLIMIT_AS raises MemoryError; a refused fork
    raises EAGAIN), so the tail of stderr is evidence alongside the signal.  The run's
    memory cgroup kills with SIGKILL; its ``oom_kill`` counter says it was memory, and a
    full jail tmpfs says "No space left on device": that is the disk quota.
    """
    if returncode == 0:
        return None, "exit code 0"
    tail = stderr[-4000:]
    if oom_kills:
        return "memory", (
            f"ran out of memory: the run's processes together passed the {limits.memory_mb} MB limit "
            f"({oom_kills} killed)"
        )
    if "No space left on device" in tail:
        return "disk", (
            f"disk quota: the run wrote more than its {limits.disk_mb} MB "
            "(workdir, /tmp and /dev/shm together)"
        )
    if returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_seconds >= limits.cpu_seconds):
            return (
                "cpu",
                f"killed after {cpu_seconds:.1f} s CPU time (limit {limits.cpu_seconds:g} s)",
            )
        if sig == signal.SIGXFSZ:
            return "file-size", f"wrote a file over the {limits.file_mb} MB limit"
        return "signal", f"killed by {_signal_name(sig)}"
    if fork_refusals:
        return (
            "processes",
            f"hit the process limit ({limits.processes}; {fork_refusals} forks refused)",
        )
    if "MemoryError" in tail or "Cannot allocate memory" in tail:
        return "memory", f"ran out of memory (limit {limits.memory_mb} MB)"
    if "File too large" in tail:
        return "file-size", f"wrote a file over the {limits.file_mb} MB limit"
    if "Resource temporarily unavailable" in tail or "can't start new thread" in tail:
        return "processes", f"hit the process limit ({limits.processes})"
    last = last_line(stderr)
    return "exit", f"exit code {returncode}" + (f": {last}" if last else "")
