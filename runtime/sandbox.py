"""Run an untrusted candidate so that whatever it does, only the candidate fails.

A candidate may hang, allocate without bound, fork without bound, phone home or write
over the node; each must end as a :class:`RunResult` with a ``failure`` word, never as
a hung or damaged node.  The mechanisms (probed in :mod:`runtime.isolation`):

* namespaces: bwrap (read-only root, private /tmp, no network, pid namespace), else
  ``unshare``, else none; ``Sandbox.isolation`` says which and what was refused;
* rlimits set by ``prlimit`` just before exec (no ``preexec_fn``: it is unsafe in a
  process with threads, and the Incubator runs sandboxes from a thread pool);
* a cgroup v1 ``pids`` group per run (RLIMIT_NPROC does not bind root), joined by a
  one-line ``sh`` before anything else runs, so no fork escapes it;
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
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath

from evolution.errors import SandboxError
from runtime.isolation import MODES, Isolation, RunCgroup, probe
from runtime.sandbox_command import CGROUP_EXIT, TMP_NAME, clean_env, command
from runtime.sandbox_pipes import OUTPUT_LIMIT, Capture, drain, kill_group, pump
from runtime.sandbox_result import RunResult, SandboxLimits, classify, last_line

_CHILD_HELPER = Path(__file__).with_name("_sandbox_child.py")


def _remove_tree(path: Path) -> None:
    """rmtree that survives a child's chmod 000 (root ignores modes; other users do not)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError:
        for dirpath, _dirs, _files in os.walk(path):
            with contextlib.suppress(OSError):
                os.chmod(dirpath, 0o700)
        shutil.rmtree(path, ignore_errors=True)


class Sandbox:
    """Makes throw-away workspaces under ``root`` and runs children in them, isolated.

    Safe to share between threads: the probe runs once under a lock, runs share nothing.
    """

    def __init__(self, root: Path, isolation: str = "auto") -> None:
        # Absolute, always: bwrap's probe binds the root, and a relative path (the CLI's
        # default `.tars/work`) made it refuse, so `tars evolve` quietly ran candidates
        # with the weaker `unshare` isolation.
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._requested = isolation
        self._probed: Isolation | None = None
        self._lock = threading.Lock()
        self._stale_cgroups: list[RunCgroup] = []
        if isolation not in MODES:
            raise SandboxError(
                f"unknown sandbox isolation {isolation!r}", hint=f"use one of {', '.join(MODES)}"
            )

    # -- isolation -------------------------------------------------------------------

    def _iso(self) -> Isolation:
        with self._lock:
            if self._probed is None:
                scratch = Path(tempfile.mkdtemp(prefix="probe-", dir=self.root))
                try:
                    self._probed = probe(self._requested, scratch)
                finally:
                    _remove_tree(scratch)
            return self._probed

    @property
    def isolation(self) -> str:
        """What is in force, one line, including each refusal and what it leaves open."""
        return self._iso().describe()

    # -- workspaces ------------------------------------------------------------------

    @contextlib.contextmanager
    def workspace(self, tree: Mapping[str, str]) -> Iterator[Path]:
        """A fresh directory holding ``tree``, removed afterwards whatever the child did."""
        workdir = Path(tempfile.mkdtemp(prefix="ws-", dir=self.root)).resolve()
        try:
            for rel, text in tree.items():
                target = workdir / _safe_relpath(rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="")
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
        if not argv:
            raise SandboxError(
                "empty command for the sandbox", hint="give the manifest command an argv"
            )
        iso = self._iso()
        workdir = Path(workdir).resolve()
        if not workdir.is_dir():
            raise SandboxError(
                f"sandbox workdir {workdir} does not exist",
                hint="run inside Sandbox.workspace(...)",
            )
        (workdir / TMP_NAME).mkdir(exist_ok=True)
        program = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        nproc = limits.processes + iso.wrapper_processes
        cgroup = RunCgroup(nproc) if iso.cgroups else None
        try:
            full, preexec = command(iso, workdir, program, limits, nproc, cgroup)
            return self._supervise(
                full, tuple(argv), workdir, iso.inside(workdir), limits, env, stdin, preexec, cgroup
            )
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                if not cgroup.remove():
                    with self._lock:
                        self._stale_cgroups.append(cgroup)

    def _supervise(
        self,
        full: list[str],
        argv: tuple[str, ...],
        workdir: Path,
        inside: Path,
        limits: SandboxLimits,
        env: Mapping[str, str] | None,
        stdin: str | None,
        preexec: Callable[[], None] | None,
        cgroup: RunCgroup | None,
    ) -> RunResult:
        """Pump output, enforce the wall clock, kill everything left, reap, classify."""
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                full, cwd=workdir, env=clean_env(inside, env), start_new_session=True,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                preexec_fn=preexec,
            )  # fmt: skip
        except OSError as exc:
            raise SandboxError(
                f"cannot start {full[0]}: {exc}", hint="check the sandbox tools"
            ) from exc
        out, err = Capture(), Capture()
        timed_out = False
        try:
            timed_out = pump(proc, out, err, stdin, start + limits.wall_seconds)
        finally:
            kill_group(proc.pid)
            if cgroup is not None:
                cgroup.kill_all()
            drain(proc, out, err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        code = proc.returncode
        if self._iso().mode == "bwrap" and 128 < code < 128 + signal.NSIG:
            code = -(code - 128)  # bwrap reports a signal death as 128+N
        stderr_text = err.text()
        if code == CGROUP_EXIT and "tars-sandbox: cannot join cgroup" in stderr_text:
            raise SandboxError(
                f"the sandbox could not join its cgroup: {last_line(stderr_text)}",
                hint="check /sys/fs/cgroup/pids",
            )
        if timed_out:
            failure: str | None = "timeout"
            detail = f"killed after {limits.wall_seconds:g} s wall time"
            returncode: int | None = None
        elif out.overflow or err.overflow:
            failure, returncode = "output", None
            which = "stdout" if out.overflow else "stderr"
            detail = f"killed after writing more than {OUTPUT_LIMIT // 1024} KiB to {which}"
        else:
            returncode = code
            cpu_cg = cgroup.cpu_seconds() if cgroup is not None else None
            cpu = cpu_cg if cpu_cg is not None else usage.ru_utime + usage.ru_stime
            refused = cgroup.fork_refusals() if cgroup is not None else 0
            failure, detail = classify(code, stderr_text, limits, cpu, refused)
        return RunResult(argv, returncode, out.text(), stderr_text, wall, failure, detail)

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

        ``events=True`` profiles with a clock that counts events instead of time: exact
        and repeatable (see ``_sandbox_child``).
        """
        if not argv or argv[0] != "python":
            raise SandboxError(
                f"cannot profile {list(argv)!r}: only python commands can be profiled",
                hint="the benchmark command must start with 'python'",
            )
        name = f"profile-{uuid.uuid4().hex}.json"
        out = Path(workdir).resolve() / TMP_NAME / name  # read here, written by the child at:
        seen = self._iso().inside(Path(workdir).resolve()) / TMP_NAME / name
        flags = ["--events"] if events else []
        # Interpreter options (``python -S bench.py``) go before the helper, the target after it.
        rest = list(argv[1:])
        options: list[str] = []
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c") and len(rest) > 1:
            options.append(rest.pop(0))
        command = ["python", *options, str(_CHILD_HELPER), str(seen), *flags, *rest]
        result = self.run(workdir, command, limits, env=env)
        result = RunResult(
            tuple(argv),
            result.returncode,
            result.stdout,
            result.stderr,
            result.wall_seconds,
            result.failure,
            result.detail,
        )
        try:
            raw = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raw = []
        finally:
            out.unlink(missing_ok=True)
        return result, _valid_rows(raw)

    def close(self) -> None:
        """Remove cgroups a dying run could not release in time."""
        with self._lock:
            stale, self._stale_cgroups = self._stale_cgroups, []
        for cgroup in stale:
            cgroup.kill_all()
            cgroup.remove()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _safe_relpath(rel: str) -> Path:
    """A tree path must stay inside the workspace: no absolute paths, no '..'."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise SandboxError(
            f"refusing to write {rel!r} into a workspace", hint="tree paths must be relative"
        )
    return Path(*path.parts)


def _valid_rows(raw: object) -> list[dict[str, object]]:
    """Keep only well-formed rows, hottest first: the JSON came from the untrusted child."""
    kept: list[tuple[float, str, int, dict[str, object]]] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        file, function, line = item.get("file"), item.get("function"), item.get("line")
        calls, tottime, cumtime = item.get("calls"), item.get("tottime"), item.get("cumtime")
        if not (
            isinstance(file, str) and isinstance(function, str) and isinstance(line, int)
            and isinstance(calls, int) and isinstance(tottime, int | float)
            and isinstance(cumtime, int | float)
        ):  # fmt: skip
            continue
        path = PurePosixPath(file)
        if not file or path.is_absolute() or ".." in path.parts or path.parts[0] == TMP_NAME:
            continue
        row: dict[str, object] = {
            "file": file, "function": function, "line": line, "calls": calls,
            "tottime": float(tottime), "cumtime": float(cumtime),
        }  # fmt: skip
        kept.append((-float(tottime), file, line, row))
    kept.sort(key=lambda k: k[:3])
    return [k[3] for k in kept]


__all__ = ["OUTPUT_LIMIT", "RunResult", "Sandbox", "SandboxLimits", "classify"]
