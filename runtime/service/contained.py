"""Service workers in a container of the node's own image: a green is a new container.

Under the docker backend a node is itself a container of the TARS image; its service
then runs each pool (blue when it comes up, every green of a new version) in a new
container of that same image, with the version's tree mounted read-only: the swarm
replicates its evolved self, and ``docker ps`` shows which version each node serves.

The container is the jail here, set by the engine rather than by bwrap: no network
(``none``), every capability dropped, no new privileges, uid/gid 65534, a read-only
root with a small ``/tmp`` tmpfs, memory and pids limits, and nothing of the host but
the pool's folder (the worker's files and the version's tree), read-only. The node's
state, keys, store and engine socket are not in it; tests/test_contained.py attacks
each.

Nothing pipes into a container started through the engine's API, so each worker is a
``docker exec`` that connects back three times to a Unix socket the node listens on in
the pool's folder (frames in, frames out, stderr; the mount makes the socket visible
inside, and a read-only mount does not stop a connect). The node accepts only peers of
uid 65534, then removes the socket. A worker exits when the node closes its frames;
one that does not (its genome's code may ignore anything) is killed from inside the
container by its socket path on its command line, and the whole container goes with
its pool.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolution.errors import ServiceError
from runtime.service.jailed import keep_tail, last_line

__all__ = ["WORKER_UID", "Contained", "ContainerSpec", "ServiceContainer", "remove_leftovers"]

#: the workers' uid and gid inside their container (nobody), as in the jail
WORKER_UID = 65534
#: where the pool's socket folder appears in its container: a Unix socket's path is at
#: most 107 bytes, so the worker's side is short (the node's side binds through a
#: descriptor of the folder, ``/proc/self/fd/N/NAME``, whatever the folder's length)
SOCKETS_INSIDE = "/tars-sock"
#: how long one worker has to connect back after its ``docker exec``
CONNECT_SECONDS = 30.0
_SAFE = re.compile(r"[^a-zA-Z0-9_.-]")
#: kills the worker whose command line holds argv[1] (its socket path): run inside the
#: container as nobody, it can signal the workers and nothing else
_KILL = (
    "import os, signal, sys\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    try:\n"
    "        line = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
    "        if sys.argv[1].encode() in line: os.kill(int(pid), signal.SIGKILL)\n"
    "    except OSError: pass\n"
)


@dataclass(frozen=True)
class ContainerSpec:
    """What a node hands its router to run pools in containers.

    ``engine`` gives the Docker SDK client (made once, shared); ``image`` is the node's
    own image; ``labels`` say whose the containers are (cluster, config, node), so
    ``tars cluster down`` removes them with the nodes and a restarted node removes what
    its last run left; ``prefix`` starts their names.
    """

    engine: Callable[[], Any]
    image: Callable[[], str]
    labels: Mapping[str, str]
    prefix: str = "tars"


@dataclass
class Contained:
    """One worker in a service container: the node's ends of its three connections."""

    box: ServiceContainer
    path: str
    frames_in: socket.socket
    frames_out: socket.socket
    errors: socket.socket
    tail: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: bool = False
    _stopped: bool = False

    @property
    def write_fd(self) -> int:
        return self.frames_in.fileno()

    @property
    def read_fd(self) -> int:
        return self.frames_out.fileno()

    @property
    def err_fd(self) -> int:
        return self.errors.fileno()

    def keep_stderr(self, chunk: bytes) -> None:
        keep_tail(self.tail, chunk)

    def last_words(self) -> str:
        return last_line(self.tail)

    def terminate(self) -> None:
        """End the connections (the reader sees the end), and kill the process in the box."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for end in (self.frames_in, self.frames_out, self.errors):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        self.box.kill_worker(self.path)

    def kill(self) -> None:
        """Stop the worker and close the node's ends (idempotent)."""
        self.terminate()
        with self._lock:
            if self._done:
                return
            self._done = True
        for end in (self.frames_in, self.frames_out, self.errors):
            end.close()


class ServiceContainer:
    """The container one pool's workers run in: started, exec'd into, removed."""

    def __init__(
        self,
        spec: ContainerSpec,
        folder: Path,
        *,
        genome: str,
        version: str,
        colour: str,
        memory_mb: int,
        pids: int,
        tmp_mb: int = 64,
    ) -> None:
        self.spec, self.folder = spec, folder
        self.genome, self.version, self.colour = genome, version, colour
        self.memory_mb, self.pids, self.tmp_mb = memory_mb, pids, tmp_mb
        self.sockets = folder / "sock"
        self.id: str | None = None
        token = secrets.token_hex(3)
        self.name = _SAFE.sub("-", f"{spec.prefix}-{genome}-{version[:12]}-{token}")

    @property
    def api(self) -> Any:
        return self.spec.engine().api

    def start(self) -> None:
        """Create and start the container (it only waits; workers are exec'd into it)."""
        from docker.types import Mount

        self.sockets.mkdir(exist_ok=True)
        self.sockets.chmod(0o711)  # workers may reach a socket by its name, never list them
        labels = {
            **self.spec.labels,
            "tars.role": "service",
            "tars.genome": self.genome,
            "tars.version": self.version,
            "tars.colour": self.colour,
        }
        folder = str(self.folder)
        host = self.api.create_host_config(
            init=True, network_mode="none", cap_drop=["ALL"],
            security_opt=["no-new-privileges"], read_only=True,
            tmpfs={"/tmp": f"size={self.tmp_mb}m,mode=1777"},
            mem_limit=f"{self.memory_mb}m", memswap_limit=f"{self.memory_mb}m",
            pids_limit=self.pids,
            mounts=[
                Mount(folder, folder, type="bind", read_only=True),
                Mount(SOCKETS_INSIDE, str(self.sockets), type="bind", read_only=True),
            ],
        )  # fmt: skip
        with _engine_errors(
            f"cannot start the service container of {self.genome} {self.version[:12]}"
        ):
            made = self.api.create_container(
                self.spec.image(),
                ["python", "-I", "-c", "import signal; signal.pause()"],
                name=self.name, labels=labels, user=f"{WORKER_UID}:{WORKER_UID}",
                working_dir="/tmp", host_config=host,
                environment={"PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"},
            )  # fmt: skip
            self.id = made["Id"]
            self.api.start(self.id)

    def spawn(self, argv: Sequence[str], timeout: float = CONNECT_SECONDS) -> Contained:
        """``docker exec`` one worker and accept its three connections."""
        if self.id is None:
            raise ServiceError(
                f"the service container of {self.genome} is not started",
                hint="start the pool first (a TARS bug if you see this)",
            )
        name = f"{secrets.token_hex(8)}.sock"
        path = f"{SOCKETS_INSIDE}/{name}"  # the worker's side
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ends: list[socket.socket] = []
        folder = os.open(self.sockets, os.O_RDONLY | os.O_DIRECTORY)
        try:
            listener.bind(f"/proc/self/fd/{folder}/{name}")
            os.chmod(name, 0o666, dir_fd=folder)
            listener.listen(3)
            listener.settimeout(0.2)
            command = [*argv, "--connect", path]
            with _engine_errors(f"cannot start a worker in {self.name}"):
                ident = self.api.exec_create(
                    self.id, command, user=f"{WORKER_UID}:{WORKER_UID}", workdir="/tmp"
                )["Id"]
                self.api.exec_start(ident, detach=True)
            deadline = time.monotonic() + timeout
            while len(ends) < 3:
                try:
                    peer, _ = listener.accept()
                except TimeoutError:
                    self._check_exec(ident, deadline, timeout)
                    continue
                if _peer_uid(peer) != WORKER_UID:  # only the box's workers are nobody
                    peer.close()
                    continue
                peer.settimeout(None)
                ends.append(peer)
        except BaseException:
            for end in ends:
                end.close()
            raise
        finally:
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
            os.close(folder)
        os.set_blocking(ends[0].fileno(), False)  # the node's writes never block its caller
        return Contained(self, path, ends[0], ends[1], ends[2])

    def _check_exec(self, ident: str, deadline: float, timeout: float) -> None:
        """While waiting for a worker's connections: has it died, or is it too late?"""
        with _engine_errors(f"cannot follow a worker in {self.name}"):
            info = self.api.exec_inspect(ident)
        if not info.get("Running") and info.get("ExitCode") is not None:
            raise ServiceError(
                f"a worker of {self.genome} {self.version[:12]} exited with code "
                f"{info['ExitCode']} before it connected (container {self.name})",
                hint="read its output with `docker logs`; check the image has TARS installed",
            )
        if time.monotonic() > deadline:
            raise ServiceError(
                f"a worker of {self.genome} did not connect within {timeout:g} s "
                f"(container {self.name})",
                hint="the engine or the machine is overloaded; the pool retries",
            )

    def kill_worker(self, path: str) -> None:
        """SIGKILL the worker that connected from ``path`` (off the caller's thread)."""

        def run() -> None:
            with contextlib.suppress(Exception):
                ident = self.api.exec_create(
                    self.id, ["python", "-I", "-c", _KILL, path], user=f"{WORKER_UID}:{WORKER_UID}"
                )["Id"]
                self.api.exec_start(ident)

        if self.id is not None:
            threading.Thread(target=run, name="kill-contained", daemon=True).start()

    def remove(self) -> None:
        """Remove the container and everything running in it."""
        import docker.errors

        if self.id is None:
            return
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            self.api.remove_container(self.id, force=True)
        self.id = None


def remove_leftovers(spec: ContainerSpec) -> int:
    """Remove the service containers a previous run of this node left (it was killed);
    how many. The node's service does this before it starts its first pool."""
    import docker.errors

    labels = [f"{key}={value}" for key, value in spec.labels.items()]
    found = spec.engine().containers.list(
        all=True, filters={"label": [*labels, "tars.role=service"]}, ignore_removed=True
    )
    for container in found:
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            container.remove(force=True)
    return len(found)


def _peer_uid(peer: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = peer.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


@contextlib.contextmanager
def _engine_errors(what: str) -> Any:
    """The engine's errors as a :class:`ServiceError` that says what and what to do."""
    import docker.errors

    try:
        yield
    except docker.errors.DockerException as exc:
        raise ServiceError(
            f"{what}: {exc}",
            hint="check the Docker engine (DOCKER_HOST) and that the node image exists; "
            "or serve from the jail with cluster.yml `service: {placement: jail}`",
        ) from exc
