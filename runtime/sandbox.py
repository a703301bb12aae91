"""Run an untrusted candidate so that whatever it does, only the candidate fails.

A candidate may hang, allocate without bound, fork without bound, phone home or write
over the node; each must end as a :class:`RunResult` with a ``failure`` word, never as
a hung or damaged node.  The mechanisms (probed in :mod:`runtime.isolation`):

* namespaces: bwrap (read-only root, private /tmp, no network, pid namespace), else
  ``unshare``, else none; ``Sandbox.isolation`` says which and what was refused;
* rlimits set by ``prlimit`` just before exec (no ``preexec_fn``: it is unsafe in a
  process with threads, and the Incubator runs sandboxes from a thread pool);
* a cgroup per run (memory, pids, cpuacct; RLIMIT_NPROC does not bind root), in which
  the run's first process already waits (:mod:`runtime.sandbox_starter`) or which it
  joins before the candidate's first instruction, so no fork escapes it;
* a wall clock in the parent that SIGKILLs the group, the namespace and the cgroup.

See docs/sandbox.md for the measured overhead and the residual hazards.

The run's parts live in their own modules: limits and verdicts in
:mod:`runtime.sandbox_result`, the command line in :mod:`runtime.sandbox_command`, the
pipes and the clock in :mod:`runtime.sandbox_pipes`; their public names are re-exported
here.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from evolution.errors import SandboxError
from runtime.cgroups import layout
from runtime.isolation import MODES, Isolation, RunCgroup, probe
from runtime.jail import HELPER_INSIDE
from runtime.sandbox_command import CGROUP_EXIT, TMP_NAME, clean_env, command, release
from runtime.sandbox_pipes import OUTPUT_LIMIT, Capture, close_fds, drain, kill_group, pump
from runtime.sandbox_reap import make_dirs as _make_dirs
from runtime.sandbox_reap import reap_in_background
from runtime.sandbox_reap import remove_tree as _remove_tree
from runtime.sandbox_reap import safe_relpath as _safe_relpath
from runtime.sandbox_result import RunResult, SandboxLimits, classify, last_line
from runtime.sandbox_rows import valid_rows as _valid_rows
from runtime.sandbox_secrets import SECRET_REMOVED, scrub, secret_needles
from runtime.sandbox_spawn import RESULTS_ARG, spawn_direct
from runtime.sandbox_starter import Starter, StarterPool

_CHILD_HELPER = Path(__file__).with_name("_sandbox_child.py")
#: profile rows a run may send back through its results pipe
RESULTS_LIMIT = 8 << 20
_MIB = 1 << 20


class Sandbox:
    """Makes throw-away workspaces under ``root`` and runs children in them, jailed.

    Safe to share between threads: the probe runs once under a lock, runs share nothing.
    Where the full jail (docs/sandbox.md) is unavailable, every run (and
    :attr:`isolation`) raises a :class:`SandboxError` naming what is missing and the
    fix, unless ``accept_weak_isolation`` says the caller accepts the weaker one.
    ``secrets`` (the node's key files' contents) are replaced by ``[secret removed]``
    in everything a run sends back, so no output of a candidate can carry them into an
    event.  ``disk_mb`` caps every run's disk quota (the node's say over the genome's).
    """

    def __init__(
        self,
        root: Path,
        isolation: str = "auto",
        *,
        accept_weak_isolation: bool = False,
        secrets: Iterable[str] = (),
        disk_mb: int | None = None,
    ) -> None:
        # Absolute, always: bwrap's probe binds the root, and a relative path (the CLI's
        # default `.tars/work`) made it refuse, so `tars evolve` quietly ran candidates
        # with the weaker `unshare` isolation.
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._requested = isolation
        self.accept_weak_isolation = accept_weak_isolation
        self.disk_mb = disk_mb
        self._needles = secret_needles(secrets)
        self._probed: Isolation | None = None
        self._lock = threading.Lock()
        self._stale_cgroups: list[RunCgroup] = []
        #: the next run's starter, waiting in its cgroups (full jail on cgroup v1 only)
        self._starters: StarterPool | None = None
        if isolation not in MODES:
            raise SandboxError(
                f"unknown sandbox isolation {isolation!r}", hint=f"use one of {', '.join(MODES)}"
            )
        #: removes what a killed node left here (workspaces, cgroups) off the caller's thread
        self.reaper = reap_in_background(self.root)

    # -- isolation -------------------------------------------------------------------

    def _iso(self) -> Isolation:
        with self._lock:
            if self._probed is None:
                scratch = Path(tempfile.mkdtemp(prefix=f"probe-{os.getpid()}-", dir=self.root))
                try:
                    self._probed = probe(self._requested, scratch)
                finally:
                    _remove_tree(scratch)
                self._start_starters(self._probed)
            iso = self._probed
        refusal = iso.refusal()
        if refusal is not None and not self.accept_weak_isolation:
            raise refusal
        return iso

    def _start_starters(self, iso: Isolation) -> None:
        """Keep a starter ready for each run where that saves the cgroup move (v1, full jail)."""
        if iso.full and iso.mode == "bwrap" and iso.prlimit and layout() == "v1":
            self._starters = StarterPool()
            weakref.finalize(self, self._starters.close)  # a Sandbox never closed
            self._starters.prime()

    def mechanisms(self) -> Isolation:
        """What runs here are started with (the service's long-lived workers use it too)."""
        return self._iso()

    @property
    def jailed(self) -> bool:
        """True when runs are in the full jail; False when weaker isolation was accepted."""
        return self._iso().full

    @property
    def isolation(self) -> str:
        """What is in force, one line (raises where the jail is missing and not accepted)."""
        iso = self._iso()
        defaults = SandboxLimits()
        disk = min(defaults.disk_mb, self.disk_mb or defaults.disk_mb)
        line = iso.describe(defaults.memory_mb, disk)
        return line if iso.full else f"weak isolation (accepted): {line}"

    # -- workspaces ------------------------------------------------------------------

    @contextlib.contextmanager
    def workspace(self, tree: Mapping[str, str]) -> Iterator[Path]:
        """A fresh directory holding ``tree``, removed afterwards.

        Under the jail the candidate never writes here (it works on a copy in its own
        tmpfs), so removal is the tree the node wrote; the folder is world-readable so
        that nobody, inside, can copy it.
        """
        workdir = Path(tempfile.mkdtemp(prefix=f"ws-{os.getpid()}-", dir=self.root)).resolve()
        try:
            workdir.chmod(0o755)
            for rel, text in tree.items():
                target = workdir / _safe_relpath(rel)
                _make_dirs(workdir, target.parent)
                target.write_text(text, encoding="utf-8", newline="")
                target.chmod(0o644)  # whatever the node's umask
            yield workdir
        finally:
            _remove_tree(workdir)

    # -- running ---------------------------------------------------------------------

    def run(
        self,
        workdir: Path,
        argv: Sequence[str],
        limits: SandboxLimits,
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> RunResult:
        """Run ``argv`` in ``workdir`` under ``limits``; every misbehaviour becomes a failure."""
        return self._run(workdir, argv, limits, env, stdin, None)[0]

    def _run(
        self,
        workdir: Path,
        argv: Sequence[str],
        limits: SandboxLimits,
        env: Mapping[str, str] | None,
        stdin: str | None,
        results: Capture | None,
    ) -> tuple[RunResult, bytes]:
        if not argv:
            raise SandboxError(
                "empty command for the sandbox", hint="give the manifest command an argv"
            )
        iso = self._iso()
        self._retry_stale()
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(
                f"sandbox workdir {workdir} does not exist",
                hint="run inside Sandbox.workspace(...)",
            )
        if self.disk_mb is not None and self.disk_mb < limits.disk_mb:
            limits = replace(limits, disk_mb=self.disk_mb)
        tmp = workdir / TMP_NAME
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o777)
        program = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        nproc = limits.processes + iso.wrapper_processes
        memory = limits.memory_mb * _MIB if iso.memory_cgroup else None
        pool = self._starters
        starter = pool.take(nproc, memory) if pool is not None and memory is not None else None
        cgroup = starter.cgroup if starter is not None else None
        if cgroup is None and iso.cgroups:
            cgroup = RunCgroup(nproc, memory)
        job = _Job(tuple(argv), workdir, iso.inside(workdir), limits, env, stdin, cgroup, results)
        job.starter = starter
        try:
            helper = _CHILD_HELPER if results is not None else None  # one bind less otherwise
            full, job.preexec = command(
                iso, workdir, program, limits, nproc, cgroup, helper, joined=starter is not None
            )
            return self._supervise(full, job)
        finally:
            if starter is not None and not starter.launched:  # the run failed before it
                starter.stop()
            if cgroup is not None:
                cgroup.kill_all()
                if not cgroup.remove(attempts=4):  # a dying task: retried later, off this run
                    with self._lock:
                        self._stale_cgroups.append(cgroup)

    def _supervise(self, full: list[str], job: _Job) -> tuple[RunResult, bytes]:
        """Pump output, enforce the wall clock, kill everything left, reap, classify."""
        start = time.perf_counter()
        env = clean_env(job.inside, job.env)
        stdin, results = job.stdin is not None, job.results is not None
        try:
            if job.starter is not None:  # in the run's groups already: it execs the line
                spawned = job.starter.launch(full, job.workdir, env, stdin=stdin, results=results)
            else:
                spawned = spawn_direct(
                    full, job.workdir, env, stdin=stdin, results=results, preexec=job.preexec
                )
        finally:
            if self._starters is not None:  # the next run's, while this one starts
                self._starters.prime()
        proc, read_end = spawned.proc, spawned.results_r
        extra = {read_end: job.results} if job.results is not None else {}
        out, err = Capture(), Capture()
        timed_out = False
        try:
            release(proc, job.cgroup, spawned.block_w)
            timed_out = pump(proc, out, err, job.stdin, start + job.limits.wall_seconds, extra)
        finally:
            kill_group(proc.pid)
            if job.cgroup is not None:
                job.cgroup.kill_all()
            drain(proc, out, err, extra)
            close_fds(read_end, spawned.watch_w)
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        result = self._verdict(job, proc.returncode, out, err, timed_out, wall, usage)
        rows = b"" if job.results is None or job.results.overflow else b"".join(job.results.chunks)
        return result, rows

    def _verdict(
        self,
        job: _Job,
        code: int,
        out: Capture,
        err: Capture,
        timed_out: bool,
        wall: float,
        usage: resource.struct_rusage,
    ) -> RunResult:
        """How the run ended, as a RunResult, with the node's secrets scrubbed out."""
        limits, cgroup = job.limits, job.cgroup
        if self._iso().mode == "bwrap" and 128 < code < 128 + signal.NSIG:
            code = -(code - 128)  # bwrap reports a signal death as 128+N
        stdout_text, stderr_text = (
            scrub(out.text(), self._needles),
            scrub(err.text(), self._needles),
        )
        if code == CGROUP_EXIT and "tars-sandbox: cannot join cgroup" in stderr_text:
            raise SandboxError(
                f"the sandbox could not join its cgroup: {last_line(stderr_text)}",
                hint="check /sys/fs/cgroup",
            )
        oom = cgroup.oom_kills() if cgroup is not None else 0
        cpu_cg = cgroup.cpu_seconds() if cgroup is not None else None
        cpu = cpu_cg if cpu_cg is not None else usage.ru_utime + usage.ru_stime
        if timed_out:
            failure: str | None = "timeout"
            detail = f"killed after {limits.wall_seconds:g} s wall time"
            returncode: int | None = None
        elif out.overflow or err.overflow or (job.results is not None and job.results.overflow):
            failure, returncode = "output", None
            which = "stdout" if out.overflow else "stderr" if err.overflow else "results"
            detail = f"killed after writing more than {OUTPUT_LIMIT // 1024} KiB to {which}"
        else:
            returncode = code
            refused = cgroup.fork_refusals() if cgroup is not None else 0
            failure, detail = classify(code, stderr_text, limits, cpu, refused, oom_kills=oom)
        return RunResult(
            job.argv, returncode, stdout_text, stderr_text, wall, failure, detail,
            cgroup.peak_memory_mb() if cgroup is not None else None, cpu,
        )  # fmt: skip

    def run_profiled(
        self,
        workdir: Path,
        argv: Sequence[str],
        limits: SandboxLimits,
        *,
        env: Mapping[str, str] | None = None,
        events: bool = False,
    ) -> tuple[RunResult, list[dict[str, object]]]:
        """Run a ``python`` command under cProfile; rows only for files inside ``workdir``.

        The rows come back through a pipe (the jail's workdir is a tmpfs the host never
        sees), bounded by RESULTS_LIMIT.  ``events=True`` profiles with a clock that
        counts events instead of time: exact and repeatable (see ``_sandbox_child``).
        """
        if not argv or argv[0] != "python":
            raise SandboxError(
                f"cannot profile {list(argv)!r}: only python commands can be profiled",
                hint="the benchmark command must start with 'python'",
            )
        iso = self._iso()
        helper = HELPER_INSIDE if iso.mode == "bwrap" else str(_CHILD_HELPER)
        flags = ["--events"] if events else []
        # Interpreter options (``python -S bench.py``) go before the helper, the target after it.
        rest = list(argv[1:])
        options: list[str] = []
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c") and len(rest) > 1:
            options.append(rest.pop(0))
        command = ["python", *options, helper, RESULTS_ARG, *flags, *rest]
        result, raw = self._run(workdir, command, limits, env, None, Capture(RESULTS_LIMIT))
        result = replace(result, argv=tuple(argv))
        try:
            rows = json.loads(raw.decode("utf-8")) if raw else []
        except ValueError:
            rows = []
        return result, _valid_rows(rows)

    def _retry_stale(self) -> None:
        """One rmdir for each group a run could not release at once (no waiting)."""
        with self._lock:
            stale, self._stale_cgroups = self._stale_cgroups, []
        kept = [cgroup for cgroup in stale if not cgroup.remove(attempts=1)]
        if kept:
            with self._lock:
                self._stale_cgroups.extend(kept)

    def close(self) -> None:
        """Kill the waiting starter; remove cgroups a dying run could not release in time."""
        if self._starters is not None:
            self._starters.close()
        with self._lock:
            stale, self._stale_cgroups = self._stale_cgroups, []
        for cgroup in stale:
            cgroup.kill_all()
            cgroup.remove()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Job:
    """One run's settings, handed from ``_run`` to the supervisor."""

    argv: tuple[str, ...]
    workdir: Path
    inside: Path
    limits: SandboxLimits
    env: Mapping[str, str] | None
    stdin: str | None
    cgroup: RunCgroup | None
    results: Capture | None
    preexec: Callable[[], None] | None = None
    starter: Starter | None = None


__all__ = [
    "OUTPUT_LIMIT",
    "SECRET_REMOVED",
    "RunResult",
    "Sandbox",
    "SandboxLimits",
    "classify",
]
