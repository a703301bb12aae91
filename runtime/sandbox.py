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
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from evolution.errors import SandboxError
from runtime.isolation import MODES, Isolation, RunCgroup, probe

if TYPE_CHECKING:
    from evolution.manifest import Limits

OUTPUT_LIMIT = 1 << 20  # bytes kept per stream; more kills the run ("output")
_CHILD_HELPER = Path(__file__).with_name("_sandbox_child.py")
_TMP_NAME = ".tars-tmp"
_CGROUP_EXIT = 125  # the join-cgroup shell line failed: a sandbox fault, not a candidate's
_JOIN_ONE = (
    'echo $$ > "$0" || { echo "tars-sandbox: cannot join cgroup $0" >&2; exit 125; }; exec "$@"'
)
_JOIN_TWO = (
    'echo $$ > "$0" && echo $$ > "$1" || { echo "tars-sandbox: cannot join cgroup $0" >&2; exit 125; }; '
    'shift; exec "$@"'
)
_MIB = 1 << 20


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits; defaults match the manifest's so a bare genome gets the same."""

    wall_seconds: float = 60.0
    cpu_seconds: float = 60.0
    memory_mb: int = 1024
    processes: int = 64
    file_mb: int = 64

    @classmethod
    def from_manifest(cls, limits: Limits) -> SandboxLimits:
        """The genome's own ``[limits]`` table, so the manifest is the single source."""
        return cls(
            wall_seconds=float(limits.wall_seconds), cpu_seconds=float(limits.cpu_seconds),
            memory_mb=int(limits.memory_mb), processes=int(limits.processes),
            file_mb=int(limits.file_mb),
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

    @property
    def ok(self) -> bool:
        """A clean exit 0 and nothing else counts as success."""
        return self.failure is None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _last_line(text: str) -> str:
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
) -> tuple[str | None, str]:
    """Map how the child ended to (failure, detail); pure, so every branch is testable.

    Python turns most limits into exceptions rather than signals (SIGXFSZ is ignored,
    so a too-large write raises EFBIG; RLIMIT_AS raises MemoryError; a refused fork
    raises EAGAIN), so the tail of stderr is evidence alongside the signal.
    """
    if returncode == 0:
        return None, "exit code 0"
    tail = stderr[-4000:]
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
    last = _last_line(stderr)
    return "exit", f"exit code {returncode}" + (f": {last}" if last else "")


def _clean_env(workdir: Path, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Nothing of the node's environment leaks in (tokens, proxies, PYTHONPATH).

    ``workdir`` is the path the child sees (under bwrap, ``isolation.INSIDE``).
    """
    bindir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(workdir / _TMP_NAME),
    }
    env.update(extra or {})
    return env


def _rlimits(limits: SandboxLimits, nproc: int) -> list[tuple[int, int, int]]:
    """(resource, soft, hard); CPU hard is one second later so SIGXCPU comes first."""
    cpu = max(1, math.ceil(limits.cpu_seconds))
    return [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, limits.memory_mb * _MIB, limits.memory_mb * _MIB),
        (resource.RLIMIT_FSIZE, limits.file_mb * _MIB, limits.file_mb * _MIB),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    ]


_PRLIMIT_FLAGS = {
    resource.RLIMIT_CPU: "--cpu", resource.RLIMIT_AS: "--as", resource.RLIMIT_FSIZE: "--fsize",
    resource.RLIMIT_NPROC: "--nproc", resource.RLIMIT_CORE: "--core",
}  # fmt: skip


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


class _Capture:
    """One output stream, kept up to ``OUTPUT_LIMIT`` bytes."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def add(self, data: bytes) -> None:
        room = OUTPUT_LIMIT - self.size
        if len(data) > room:
            self.overflow = True
            data = data[: max(0, room)]
        self.chunks.append(data)
        self.size += len(data)

    def text(self) -> str:
        body = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.overflow:
            body += f"\n[tars: output cut at {OUTPUT_LIMIT // 1024} KiB]\n"
        return body


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
        (workdir / _TMP_NAME).mkdir(exist_ok=True)
        command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        nproc = limits.processes + iso.wrapper_processes
        cgroup = RunCgroup(nproc) if iso.cgroups else None
        try:
            full, preexec = self._command(iso, workdir, command, limits, nproc, cgroup)
            return self._supervise(
                full, tuple(argv), workdir, iso.inside(workdir), limits, env, stdin, preexec, cgroup
            )
        finally:
            if cgroup is not None:
                cgroup.kill_all()
                if not cgroup.remove():
                    with self._lock:
                        self._stale_cgroups.append(cgroup)

    def _command(
        self,
        iso: Isolation,
        workdir: Path,
        command: list[str],
        limits: SandboxLimits,
        nproc: int,
        cgroup: RunCgroup | None,
    ) -> tuple[list[str], Callable[[], None] | None]:
        """sh (join cgroup) → prlimit (rlimits) → namespace wrapper → the command."""
        rlimits = _rlimits(limits, nproc)
        full = [*iso.prefix(workdir, limits.file_mb * _MIB), *command]
        preexec: Callable[[], None] | None = None
        if iso.prlimit:
            flags = [f"{_PRLIMIT_FLAGS[res]}={soft}:{hard}" for res, soft, hard in rlimits]
            full = [iso.prlimit, *flags, "--", *full]
        else:  # no util-linux prlimit: fall back to the (thread-unsafe) preexec hook

            def preexec() -> None:
                for res, soft, hard in rlimits:
                    resource.setrlimit(res, (soft, hard))

        if cgroup is not None:
            files = [str(f) for f in cgroup.procs_files]
            script = _JOIN_ONE if len(files) == 1 else _JOIN_TWO
            full = [iso.sh or "/bin/sh", "-c", script, *files, *full]
        return full, preexec

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
                full, cwd=workdir, env=_clean_env(inside, env), start_new_session=True,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                preexec_fn=preexec,
            )  # fmt: skip
        except OSError as exc:
            raise SandboxError(
                f"cannot start {full[0]}: {exc}", hint="check the sandbox tools"
            ) from exc
        out, err = _Capture(), _Capture()
        timed_out = False
        try:
            timed_out = _pump(proc, out, err, stdin, start + limits.wall_seconds)
        finally:
            _kill_group(proc.pid)
            if cgroup is not None:
                cgroup.kill_all()
            _drain(proc, out, err)
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        code = proc.returncode
        if self._iso().mode == "bwrap" and 128 < code < 128 + signal.NSIG:
            code = -(code - 128)  # bwrap reports a signal death as 128+N
        stderr_text = err.text()
        if code == _CGROUP_EXIT and "tars-sandbox: cannot join cgroup" in stderr_text:
            raise SandboxError(
                f"the sandbox could not join its cgroup: {_last_line(stderr_text)}",
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
        out = Path(workdir).resolve() / _TMP_NAME / name  # read here, written by the child at:
        seen = self._iso().inside(Path(workdir).resolve()) / _TMP_NAME / name
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


def _pump(
    proc: subprocess.Popen[bytes], out: _Capture, err: _Capture, stdin: str | None, deadline: float
) -> bool:
    """Move bytes until the child exits or the clock runs out; True means timed out."""
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    pidfd = os.pidfd_open(proc.pid)
    try:
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        sel.register(pidfd, selectors.EVENT_READ, None)
        pending = (stdin or "").encode("utf-8")
        if proc.stdin is not None:
            if pending:
                os.set_blocking(proc.stdin.fileno(), False)
                sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
            else:
                proc.stdin.close()
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return True
            for key, _events in sel.select(remaining):
                if key.data is None:
                    return False  # the child exited; leftovers are killed, pipes drained
                if key.data == "stdin":
                    assert proc.stdin is not None
                    try:
                        pending = pending[os.write(key.fd, pending[:65536]) :]
                    except BrokenPipeError:
                        pending = b""
                    if not pending:
                        sel.unregister(proc.stdin)
                        proc.stdin.close()
                    continue
                data = os.read(key.fd, 65536)
                capture: _Capture = key.data
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                capture.add(data)
                if capture.overflow:
                    return False
    finally:
        sel.close()
        os.close(pidfd)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def _drain(proc: subprocess.Popen[bytes], out: _Capture, err: _Capture) -> None:
    """Read what is left in the pipes once every writer is dead (bounded: 2 s)."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.perf_counter() + 2.0
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        while sel.get_map() and time.perf_counter() < deadline:
            for key, _events in sel.select(max(0.0, deadline - time.perf_counter())):
                data = os.read(key.fd, 65536)
                if data:
                    key.data.add(data)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()


def _kill_group(pgid: int) -> None:
    """SIGKILL the child's session group: no SIGTERM grace, a candidate may ignore it."""
    with contextlib.suppress(OSError):
        os.killpg(pgid, signal.SIGKILL)


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
        if not file or path.is_absolute() or ".." in path.parts or path.parts[0] == _TMP_NAME:
            continue
        row: dict[str, object] = {
            "file": file, "function": function, "line": line, "calls": calls,
            "tottime": float(tottime), "cumtime": float(cumtime),
        }  # fmt: skip
        kept.append((-float(tottime), file, line, row))
    kept.sort(key=lambda k: k[:3])
    return [k[3] for k in kept]
