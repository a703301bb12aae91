"""One cgroup per sandboxed run: memory for all its processes together, pids, CPU time.

RLIMIT_AS bounds one process; five processes of one run held 3 GB against a 1 GB
limit.  A cgroup bounds the run as a whole, counts its tmpfs pages (the jail's disk)
against the same memory, lists every process the run ever started (however it tried to
leave its session or namespace), and its counters say *why* a run died (``oom_kill``,
refused forks).  The candidate cannot leave or raise it: it is joined before the jail
is built, the jail has no ``/sys``, and the candidate is not root.

Both layouts are handled: cgroup v1 (one folder per controller: ``pids``, ``memory``,
``cpuacct``, as on these machines) and cgroup v2 (one folder under a ``tars`` parent
with ``memory.max``, ``memory.swap.max``, ``pids.max``).  Group names carry the pid of
the process that made them, so a later start can tell a dead node's groups from a live
one's (:func:`reap_stale_cgroups`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from evolution.errors import SandboxError

CGROUP_FS = Path("/sys/fs/cgroup")
PIDS_ROOT = CGROUP_FS / "pids"
CPUACCT_ROOT = CGROUP_FS / "cpuacct"
MEMORY_ROOT = CGROUP_FS / "memory"
#: the parent of every run's group under cgroup v2 (a group with processes cannot
#: delegate controllers, so runs never live directly under a populated group)
V2_PARENT = CGROUP_FS / "tars"
_PREFIX = "tars-"
#: a Sandbox's standby groups (``tars.standby-<pid>-<hex>``), no run's yet (see
#: :meth:`RunCgroup.standby`).  Not ``tars-…``: an older TARS on the same host reaps
#: every ``tars-*`` group whose second field is not a live pid, starter and all.
STANDBY_PREFIX = "tars.standby-"


def layout() -> str:
    """ "v2" (unified hierarchy), "v1" (a pids controller folder) or "none"."""
    if (CGROUP_FS / "cgroup.controllers").is_file():
        return "v2"
    if PIDS_ROOT.is_dir():
        return "v1"
    return "none"


def _v2_parent() -> Path:
    """``/sys/fs/cgroup/tars`` with memory, pids and cpu handed down to its children."""
    V2_PARENT.mkdir(exist_ok=True)
    for folder in (CGROUP_FS, V2_PARENT):
        wanted = {"memory", "pids", "cpu"}
        have = set((folder / "cgroup.controllers").read_text().split())
        for name in sorted(wanted & have):
            with contextlib.suppress(OSError):
                (folder / "cgroup.subtree_control").write_text(f"+{name}")
    return V2_PARENT


def _owner_alive(name: str) -> bool:
    """A group's name is ``tars-<pid>-<hex>`` (or ``tars.standby-…``); True while that pid exists."""
    parts = name.split("-")
    if len(parts) < 3 or not parts[1].isdigit():
        return False  # an older name without an owner: judged by age alone
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    return Path(f"/proc/{pid}").exists()


class RunCgroup:
    """The groups of one run.  ``memory_bytes`` None leaves memory to RLIMIT_AS (weak mode)."""

    def __init__(self, max_pids: int, memory_bytes: int | None = None) -> None:
        self.name = f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}"
        self.layout = layout()
        self.paths: dict[str, Path] = {}
        self._cpu_base = 0.0
        try:
            if self.layout == "v2":
                self._make_v2(max_pids, memory_bytes)
            else:
                self._make_v1(max_pids, memory_bytes)
        except OSError as exc:
            self.remove()
            raise SandboxError(
                f"cannot create the run's cgroup {self.name}: {exc}",
                hint="run the node as root on a machine with cgroups (memory and pids controllers)",
            ) from exc

    def _make_v1(self, max_pids: int, memory_bytes: int | None) -> None:
        self._mkdirs_v1(memory_bytes is not None)
        self._limit_v1(max_pids, memory_bytes)

    def _mkdirs_v1(self, memory: bool) -> None:
        pids = PIDS_ROOT / self.name
        pids.mkdir()
        self.paths["pids"] = pids
        if memory:
            (MEMORY_ROOT / self.name).mkdir()
            self.paths["memory"] = MEMORY_ROOT / self.name
            with contextlib.suppress(OSError):
                (self.paths["memory"] / "memory.swappiness").write_text("0")
        if CPUACCT_ROOT.is_dir():
            with contextlib.suppress(OSError):  # optional: rusage is the fallback
                (CPUACCT_ROOT / self.name).mkdir()
                self.paths["cpuacct"] = CPUACCT_ROOT / self.name

    def _limit_v1(self, max_pids: int, memory_bytes: int | None) -> None:
        (self.paths["pids"] / "pids.max").write_text(str(max_pids))
        if memory_bytes is not None:
            memory = self.paths["memory"]
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # memory + swap = memory: the group may not swap
                swap.write_text(str(memory_bytes))

    @classmethod
    def standby(cls, name: str) -> RunCgroup:
        """cgroup v1 groups (pids, memory, cpuacct) made ahead of a run, limits not yet set.

        For the sandbox's waiting starter (:mod:`runtime.sandbox_starter`): it is moved
        in while no run waits, and :meth:`claim` turns the groups into one run's.
        ``name`` is the Sandbox's own (:data:`STANDBY_PREFIX` ``<pid>-…``), the same
        for each starter it makes: a Sandbox has at most one standby set at a time, and
        a run's groups (``tars-<pid>-…``) are only ever its own.
        """
        group = cls.__new__(cls)
        group.name, group.layout, group.paths, group._cpu_base = name, "v1", {}, 0.0
        try:
            group._mkdirs_v1(True)
        except OSError as exc:
            group.remove()
            raise SandboxError(
                f"cannot create the standby cgroup {name}: {exc}", hint="check /sys/fs/cgroup"
            ) from exc
        return group

    def claim(self, max_pids: int, memory_bytes: int) -> None:
        """Make standby groups a run's: a fresh run name (rename, ~0.05 ms) and its limits.

        CPU used before (the starter's own start-up) is not the run's: it is subtracted.
        """
        name = f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:16]}"
        for controller, path in list(self.paths.items()):
            target = path.with_name(name)
            path.rename(target)
            self.paths[controller] = target
        self.name = name
        self._limit_v1(max_pids, memory_bytes)
        self._cpu_base = self.cpu_seconds() or 0.0
        with contextlib.suppress(OSError):  # the high-water mark restarts at the run's start
            (self.paths["memory"] / "memory.max_usage_in_bytes").write_text("0")

    def _make_v2(self, max_pids: int, memory_bytes: int | None) -> None:
        group = _v2_parent() / self.name
        group.mkdir()
        self.paths = {"pids": group, "memory": group, "cpuacct": group}
        (group / "pids.max").write_text(str(max_pids))
        if memory_bytes is not None:
            (group / "memory.max").write_text(str(memory_bytes))
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0")

    @property
    def procs_files(self) -> list[Path]:
        """Writing a pid into each moves that process (and its future children) in."""
        return [path / "cgroup.procs" for path in dict.fromkeys(self.paths.values())]

    def adopt(self, pid: int) -> None:
        """Move ``pid`` and the children it has so far into every group (later ones follow).

        The first move waits for an RCU grace period (~12 ms here); the parent does it
        while bwrap, held by ``--block-fd``, builds the jail, instead of before it.
        """
        for file in self.procs_files:
            file.write_text(str(pid))
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            for file in self.procs_files:
                with contextlib.suppress(OSError):  # a child that has already exited
                    file.write_text(child)

    def pids(self) -> list[int]:
        """Processes still in the group (empty when the group is gone)."""
        path = self.paths.get("pids")
        if path is None:
            return []
        try:
            return [int(x) for x in (path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def _counter(self, controller: str, file: str, key: str) -> int:
        path = self.paths.get(controller)
        if path is None:
            return 0
        try:
            for line in (path / file).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def fork_refusals(self) -> int:
        """How many forks pids.max refused: proof the process limit was hit."""
        return self._counter("pids", "pids.events", "max")

    def oom_kills(self) -> int:
        """Processes the kernel killed because the run's memory was full."""
        if self.layout == "v2":
            return self._counter("memory", "memory.events", "oom_kill")
        return self._counter("memory", "memory.oom_control", "oom_kill")

    def peak_memory_bytes(self) -> int | None:
        """The run's memory high-water mark, all its processes (and its tmpfs) together.

        cgroup v1: ``memory.max_usage_in_bytes``; v2: ``memory.peak`` (kernel 5.19 and
        later).  None where neither exists (an older v2 kernel, or no memory group).
        """
        path = self.paths.get("memory")
        if path is None:
            return None
        name = "memory.peak" if self.layout == "v2" else "memory.max_usage_in_bytes"
        try:
            return int((path / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def peak_memory_mb(self) -> float | None:
        """:meth:`peak_memory_bytes` in MiB, or None: never a guess in its place.

        ``ru_maxrss`` from ``wait4`` is no measure of a run: it keeps the node's own
        memory copied at the fork (408 MiB for a run of 58 in a test session) and misses
        the processes in bwrap's pid namespace (20 MiB for the same run).
        """
        peak = self.peak_memory_bytes()
        return None if peak is None else peak / (1 << 20)

    def cpu_seconds(self) -> float | None:
        """CPU time of every process the run ever had, or None without CPU accounting."""
        path = self.paths.get("cpuacct")
        if path is None:
            return None
        if self.layout == "v2":
            usec = self._counter("cpuacct", "cpu.stat", "usage_usec")
            return usec / 1e6 if usec else None
        try:
            return int((path / "cpuacct.usage").read_text()) / 1e9 - self._cpu_base
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

    def remove(self, attempts: int = 200) -> bool:
        """rmdir the groups; False if members (dying tasks) still hold one (5 ms a retry)."""
        done = True
        for path in dict.fromkeys(self.paths.values()):
            for attempt in range(attempts):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt + 1 < attempts:
                        time.sleep(0.005)
            else:
                done = False
        return done


def _stale_groups() -> list[Path]:
    roots = [V2_PARENT] if layout() == "v2" else [PIDS_ROOT, MEMORY_ROOT, CPUACCT_ROOT]
    found: list[Path] = []
    for root in roots:
        if root.is_dir():
            found.extend(root.glob(f"{_PREFIX}*"))
            found.extend(root.glob(f"{STANDBY_PREFIX}*"))
    return found


def reap_stale_cgroups(min_age_seconds: float = 60.0) -> int:
    """Remove the groups of runs whose node is gone (``kill -9`` skips cleanup).

    A group whose owner pid is dead is stale at once; a group without an owner in its
    name (older TARS) only when empty and older than ``min_age_seconds``, so a run
    another node has just created is never taken from under it.  Members left in a
    dead owner's group are killed.
    """
    removed = 0
    now = time.time()
    for path in _stale_groups():
        with contextlib.suppress(OSError):
            if _owner_alive(path.name):
                continue
            members = (path / "cgroup.procs").read_text().split()
            # no owner: only empty and old ones
            legacy = path.name.startswith(_PREFIX) and "-" not in path.name[len(_PREFIX) :]
            if legacy and (members or now - path.stat().st_mtime < min_age_seconds):
                continue
            for pid in members:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            for _ in range(100):
                try:
                    path.rmdir()
                    removed += 1
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
    return removed


def probe_cgroups() -> tuple[bool, bool, str | None]:
    """(pids works, memory works, why not) by making, limiting and removing a group."""
    try:
        group = RunCgroup(8, 64 << 20)
    except SandboxError as exc:
        try:
            group = RunCgroup(8, None)
        except SandboxError:
            return False, False, str(exc)
        group.remove()
        return True, False, f"{exc}; memory is bounded per process only"
    group.remove()
    return True, True, None


__all__ = [
    "CPUACCT_ROOT",
    "MEMORY_ROOT",
    "PIDS_ROOT",
    "STANDBY_PREFIX",
    "RunCgroup",
    "layout",
    "probe_cgroups",
    "reap_stale_cgroups",
]
