"""Nodes of cluster.yml as local processes: start, find, stop, kill, wait until they answer.

A running node is found by the lock it holds on its state folder (:mod:`runtime.node_lock`:
the node process takes it, whichever command started it, and records its pid there), so a
``tars cluster down`` in a new shell stops what ``tars cluster up`` or ``tars node start``
started, and a second start of a running node is refused before anything is touched.
Before a child has taken its lock, and for stand-ins that take none (the tests' sleepers),
the pid file the launcher writes for its own child is the record.  A pid file can outlive
its process (a crash, a reboot, a SIGKILL in a fault test), and the kernel reuses pids,
so the file also records the process's start time: a pid whose start time differs is
someone else's process and the file is stale.

Nodes run in their own session: a Ctrl-C in the shell that ran ``tars cluster up``
must not reach them, and a stop can sweep the whole process group so no child of a
node outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from evolution.errors import ConfigError, TarsError, TransportError
from runtime.config import ADMIN, ClusterConfig
from runtime.node_lock import NodeRunning, holder, read_pid_file
from runtime.node_set import NodeSet
from runtime.processes import die_with_parent, pid_alive, start_time

Command = Callable[[str], list[str]]
Probe = Callable[[str, float], dict[str, Any]]

#: How often liveness and readiness are polled; short enough to feel instant.
POLL = 0.05

#: Opens the line the launcher writes into a node's log at each start, so the tail of
#: a failed start shows that run only, not an older one's traceback.
START_MARK = "\n--- tars launcher: "


class NodeNotReady(TransportError):
    """A started node died or stayed silent; carries its log's tail for the CLI to show."""

    def __init__(
        self, node_id: str, reason: str, log_path: Path, tail: list[str], *, hint: str
    ) -> None:
        from runtime.logs import readable

        ends = " | ".join(readable(line).replace("\n", " | ") for line in tail[-3:])
        shown = f"log {log_path} ends: {ends}" if tail else f"log {log_path} is empty"
        super().__init__(f"{node_id} {reason}; {shown}", hint=hint)
        self.node_id = node_id
        self.reason = reason
        self.log_path = log_path
        self.tail = tail


def admin_request(
    config: ClusterConfig, node_id: str, body: dict[str, Any], *, timeout: float = 5.0
) -> Any:
    """One request on a node's ``admin`` channel, signed with the CLI's ``admin`` key pair."""
    from runtime.transport import Client

    public, secret = config.keypair(ADMIN)
    client = Client(config.endpoint(node_id), config.public_key(node_id), public, secret)
    try:
        return client.request("admin", body, timeout=timeout)
    finally:
        client.close()


def node_command(config: ClusterConfig) -> Command:
    """``tars node start`` for one node, run by this interpreter so the venv is the same;
    its log lines are JSON (``tars cluster logs`` shows them readable)."""

    def command(node_id: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cli.main",
            "node",
            "start",
            "--config",
            str(config.path),
            "--id",
            node_id,
            "--log-format",
            "json",  # node.log holds one JSON event per line (docs/monitoring.md)
        ]

    return command


class ProcessLauncher(NodeSet):
    """Runs the nodes of one cluster.yml as local processes, one session each."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        command: Command | None = None,
        probe: Probe | None = None,
        tied: bool = False,
    ) -> None:
        """``tied``: the nodes get SIGTERM when this process dies (the demo's nodes must not
        outlive a killed demo); `tars cluster up` leaves them running on purpose.  Linux
        ties a child to the *thread* that forked it (PR_SET_PDEATHSIG), so a tied launcher
        starts nodes from the main thread only: one started from a worker thread would be
        killed when that thread ends."""
        self.config = config
        self.tied = tied
        self.command = command or node_command(config)
        self._probe = probe or self._status
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    # -- finding -------------------------------------------------------------------------

    def _read_pid_file(self, node_id: str) -> tuple[int, str | None] | None:
        return read_pid_file(self.config.pid_path(node_id))

    def pid(self, node_id: str) -> int | None:
        """The pid of the node's live process, or None (no lock held, no pid file, or a stale one)."""
        self.config.node(node_id)
        proc = self._procs.get(node_id)
        if proc is not None:
            proc.poll()  # reaps it if it ended, even when another launcher stopped it
        locked = holder(self.config.state_dir(node_id))
        if locked:
            return locked  # the node itself holds its folder: however it was started
        recorded = self._read_pid_file(node_id)
        if recorded is None:
            return None
        pid, started = recorded
        if proc is not None and proc.pid == pid:
            return pid if proc.returncode is None else None
        if not pid_alive(pid):
            return None
        if started is not None and start_time(pid) not in (None, started):
            return None  # the pid was reused by an unrelated process
        return pid

    def alive(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def exit_code(self, node_id: str) -> int | None:
        """The exit status of a node this launcher started and that has ended (else None)."""
        proc = self._procs.get(node_id)
        return proc.poll() if proc is not None else None

    def log_tail(self, node_id: str, lines: int = 20) -> list[str]:
        """The last lines the node's latest run wrote to its log, for telling a user why it did not come up."""
        try:
            with self.config.log_path(node_id).open("rb") as stream:
                stream.seek(0, os.SEEK_END)
                size = stream.tell()
                stream.seek(max(0, size - 64 * 1024))
                text = stream.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        run = text.rsplit(START_MARK, 1)
        latest = run[1].split("\n", 1)[1] if len(run) == 2 and "\n" in run[1] else text
        return [line for line in latest.splitlines() if line.strip()][-lines:]

    # -- starting --------------------------------------------------------------------------

    def start(self, node_id: str) -> int:
        """Start one node; its stdout and stderr are appended to its log."""
        self.config.node(node_id)
        state = self.config.state_dir(node_id)
        running = self.pid(node_id)
        if running is not None or holder(state) == 0:
            raise NodeRunning(
                node_id,
                running,
                hint=f"stop it first with `tars cluster down --config {self.config.path}`, or leave it running",
            )
        if self.tied and threading.current_thread() is not threading.main_thread():
            raise TarsError(
                f"cannot start {node_id} tied to this process from thread "
                f"{threading.current_thread().name}",
                hint="start tied nodes from the main thread: the kernel would stop them when "
                "this thread ends, not when the process does",
            )
        state.mkdir(parents=True, exist_ok=True)
        argv = self.command(node_id)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        log_path = self.config.log_path(node_id)
        with log_path.open("ab") as log:
            stamp = datetime.now().isoformat(" ", "seconds")
            log.write(f"{START_MARK}starting {node_id} at {stamp}: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.config.base_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=die_with_parent if self.tied else None,  # noqa: PLW1509 (prctl only)
                )
            except OSError as exc:
                raise TarsError(
                    f"cannot start {node_id}: {exc}",
                    hint=f"check the command {argv[0]!r} exists and is executable",
                ) from exc
        self._procs[node_id] = proc
        self._write_pid(node_id, proc.pid)
        return proc.pid

    def _write_pid(self, node_id: str, pid: int) -> None:
        """Record our child until it writes its own; never over a lock holder's record."""
        locked = holder(self.config.state_dir(node_id))
        if locked and locked != pid:
            return  # another process took the folder since our check: ours will refuse
        path = self.config.pid_path(node_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{pid}\n{start_time(pid) or ''}\n")
        os.replace(tmp, path)

    # -- stopping --------------------------------------------------------------------------

    def _wait_dead(self, node_id: str, pid: int, timeout: float) -> bool:
        proc = self._procs.get(node_id)
        if proc is not None and proc.pid == pid:
            try:
                proc.wait(timeout=max(0.0, timeout))
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)
        return True

    def _forget(self, node_id: str, pid: int) -> None:
        # Whatever the node left in its process group dies with it.
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        self._procs.pop(node_id, None)
        recorded = self._read_pid_file(node_id)
        if recorded is not None and recorded[0] == pid:
            self.config.pid_path(node_id).unlink(missing_ok=True)

    def _escalate(self, node_id: str, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not self._wait_dead(node_id, pid, 10.0):
            raise TarsError(
                f"{node_id} (pid {pid}) survived SIGKILL",
                hint="it is stuck in the kernel; check `ps -o stat -p PID`",
            )

    def down(self, ids: Iterable[str] | None = None, timeout: float = 10.0) -> dict[str, bool]:
        """Stop nodes together (all signalled first, so the slowest sets the pace); which were running."""
        chosen = self._ids(ids)
        pids: dict[str, int] = {}
        stopped: dict[str, bool] = {}
        for node_id in chosen:
            pid = self.pid(node_id)
            stopped[node_id] = pid is not None
            if pid is None:
                self.config.pid_path(node_id).unlink(missing_ok=True)
                self._procs.pop(node_id, None)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            pids[node_id] = pid
        deadline = time.monotonic() + timeout
        for node_id, pid in pids.items():
            if not self._wait_dead(node_id, pid, deadline - time.monotonic()):
                self._escalate(node_id, pid)
            self._forget(node_id, pid)
        return stopped

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to the node's process group, as a crash or a pause would; returns the pid.

        The pid file stays (a crashed node leaves one behind too); :meth:`start` knows a
        dead process's file is stale.  After SIGKILL this waits until the process is gone
        so callers can rely on :meth:`alive` at once.
        """
        pid = self.pid(node_id)
        if pid is None:
            raise TarsError(
                f"{node_id} is not running",
                hint=f"start it with `tars cluster up --config {self.config.path}`",
            )
        try:
            os.killpg(pid, sig)
        except OSError:
            os.kill(pid, sig)
        if sig == signal.SIGKILL and not self._wait_dead(node_id, pid, 10.0):
            raise TarsError(
                f"{node_id} (pid {pid}) survived SIGKILL",
                hint="it is stuck in the kernel; check `ps -o stat -p PID`",
            )
        return pid

    # -- readiness -------------------------------------------------------------------------

    def _status(self, node_id: str, timeout: float) -> dict[str, Any]:
        reply = admin_request(self.config, node_id, {"op": "status"}, timeout=timeout)
        if not isinstance(reply, dict):
            raise TransportError(
                f"{node_id} answered status with {type(reply).__name__}, not a mapping",
                hint="the node and this CLI are different versions of TARS",
            )
        return reply

    def wait_ready(self, node_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the node's admin status until it answers; its status, or :class:`NodeNotReady` with the log's end."""
        deadline = time.monotonic() + timeout
        last: TarsError | None = None
        log = self.config.log_path(node_id)
        while True:
            if self.pid(node_id) is None:
                code = self.exit_code(node_id)
                how = f"exited with code {code}" if code is not None else "is not running"
                raise NodeNotReady(
                    node_id,
                    f"{how} before it answered",
                    log,
                    self.log_tail(node_id),
                    hint=f"read {log}, fix the cause and run `tars cluster up` again",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f" (last: {last.message})" if last is not None else ""
                raise NodeNotReady(
                    node_id,
                    f"did not answer status within {timeout:g}s{why}",
                    log,
                    self.log_tail(node_id),
                    hint=f"check {self.config.endpoint(node_id)} is free and reachable, or wait longer with --timeout",
                )
            try:
                return self._probe(node_id, min(1.0, remaining))
            except TransportError as exc:
                last = exc
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))


class Launcher(Protocol):
    """What the CLI and the tests ask of a backend: processes and containers alike."""

    config: ClusterConfig

    def pid(self, node_id: str) -> int | None: ...
    def alive(self, node_id: str) -> bool: ...
    def exit_code(self, node_id: str) -> int | None: ...
    def log_tail(self, node_id: str, lines: int = 20) -> list[str]: ...
    def start(self, node_id: str) -> int: ...
    def up(self, ids: Iterable[str] | None = None) -> dict[str, int]: ...
    def stop(self, node_id: str, timeout: float = 10.0) -> bool: ...
    def down(self, ids: Iterable[str] | None = None, timeout: float = 10.0) -> dict[str, bool]: ...
    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> int: ...
    def wait_ready(self, node_id: str, timeout: float = 30.0) -> dict[str, Any]: ...


BACKENDS = ("process", "docker")


def launcher_for(config: ClusterConfig, backend: str | None = None) -> Launcher:
    """The launcher for ``backend``, else for the nodes' last start, else cluster.yml's.

    A swarm brought up with ``tars cluster up --backend docker`` leaves a marker in each
    node's state folder until ``down``, so a later ``status``, ``logs`` or ``down``
    without ``--backend`` finds its containers even when cluster.yml says ``process``.
    """
    from runtime.docker_launcher import DockerLauncher, started_in_containers

    chosen = backend or ("docker" if started_in_containers(config) else config.backend)
    if chosen == "docker":
        return DockerLauncher(config)
    if chosen == "process":
        return ProcessLauncher(config)
    raise ConfigError(
        f"unknown backend {chosen!r}",
        hint=f"use one of {', '.join(BACKENDS)}",
    )
