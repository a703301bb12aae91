"""Nodes of cluster.yml as Docker containers: start, find, stop, kill, wait until they answer.

The docker backend runs the very command the process launcher runs (``tars node start
--config <cluster.yml> --id <id>``), in a container of the node image
(:mod:`runtime.docker_image`), so a node behaves the same whichever way it was started.
The container sees the paths it would see on the host, at the same places, so
cluster.yml resolves identically inside and out: the cluster.yml folder read-only, the
node's own state folder writable, the keys read-only with every other secret hidden,
genome folders read-only.  Networking is the host's (the engines here have no bridge,
and peers dial the addresses cluster.yml lists); ``init`` reaps children and passes
SIGTERM on (Python as PID 1 would ignore it).

Containers are found by their labels (``tars.cluster``, ``tars.node``, ``tars.config``),
never by a name this process remembers, so a ``tars cluster down`` in a new shell stops
what an earlier ``up`` started.  A container's output stays in the engine while it
exists and is appended to the node's ``node.log`` when it is removed, so ``tars cluster
logs`` shows the last run after ``down`` as it does for processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from evolution.errors import TarsError, TransportError
from runtime.cluster_llm import key_environment
from runtime.config import ClusterConfig
from runtime.docker_mounts import MARKER, container_mounts
from runtime.launcher import POLL, START_MARK, NodeNotReady, NodeSet, admin_request
from runtime.node_lock import NodeRunning, holder

LABEL_CLUSTER = "tars.cluster"
LABEL_NODE = "tars.node"
LABEL_CONFIG = "tars.config"
#: What a container is to its node: ``node`` runs `tars node start`; ``service`` holds
#: one pool of the node's service workers (blue, or a green of a new version: the same
#: image, that version's tree mounted; runtime/service/contained.py), which ``down``
#: removes with the rest and which is never taken for the node itself.
LABEL_ROLE = "tars.role"

#: What the node's jail needs inside a container (measured here: docs/cluster.md,
#: "Docker backend").  bwrap makes namespaces: as root (the jail then drops to uid 65534
#: with setpriv) that takes CAP_SYS_ADMIN, and CAP_NET_ADMIN to bring up the loopback of
#: its network namespace; with a user namespace instead, only the two unconfined
#: profiles.  Either way it mounts a fresh /proc, refused while Docker masks parts of
#: the container's (the CLI's ``systempaths=unconfined``: empty MaskedPaths and
#: ReadonlyPaths in :meth:`DockerLauncher._run`).  ``privileged`` is not needed, and the
#: engines on these machines cannot start a privileged container at all.
SECURITY_OPT = ("seccomp=unconfined", "apparmor=unconfined")
CAP_ADD = ("SYS_ADMIN", "NET_ADMIN")

#: set in a node's container: the image it runs, which its service's containers use too
#: (runtime/docker_service.py reads it)
ENV_IMAGE = "TARS_NODE_IMAGE"
#: the engine's socket when ``DOCKER_HOST`` is not set
DEFAULT_SOCKET = "/var/run/docker.sock"

Command = Callable[[ClusterConfig, str], list[str]]
#: A node id as cluster.yml allows it (read back from a container's label).
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")


def node_command(config: ClusterConfig, node_id: str) -> list[str]:
    """The node's command line inside its container: one place to add start flags."""
    return [
        "tars", "node", "start", "--config", str(config.path), "--id", node_id,
        "--log-format", "json",
    ]  # fmt: skip


def container_prefix(config: ClusterConfig) -> str:
    """The start of every container name of this cluster.yml (its name and path's digest)."""
    digest = hashlib.sha256(str(config.path).encode()).hexdigest()[:8]
    return f"tars-{re.sub(r'[^a-zA-Z0-9_.-]', '-', config.name)}-{digest}"


def engine(client: Any | None = None) -> Any:
    """A Docker SDK client for ``DOCKER_HOST`` (or the default socket), checked to answer."""
    import docker
    import docker.errors

    try:
        engine = client or docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise TarsError(
            f"cannot reach the Docker engine: {exc}",
            hint="start one (../shared/docker/start-dockerd.sh prints the DOCKER_HOST to export), "
            "or run the nodes as processes with `--backend process`",
        ) from exc
    return engine


class DockerLauncher(NodeSet):
    """Runs the nodes of one cluster.yml as containers of the node image."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        client: Any | None = None,
        image: str | None = None,
        base: str | None = None,
        command: Command | None = None,
    ) -> None:
        """``image``: run this tag instead of building one; ``base``: the image to build on."""
        self.config = config
        self._client = client
        self._image = image
        self.base = base
        self.command = command or node_command
        self._prefix = container_prefix(config)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = engine(None)
        return self._client

    def image(self) -> str:
        """The node image's tag, built once per project version (its content hash)."""
        if self._image is None:
            from runtime.docker_image import ensure_image

            self._image = ensure_image(self.client, base=self.base)
        return self._image

    # -- finding -------------------------------------------------------------------------

    def _labels(self, node_id: str | None = None, role: str | None = None) -> list[str]:
        labels = [f"{LABEL_CLUSTER}={self.config.name}", f"{LABEL_CONFIG}={self.config.path}"]
        labels += [f"{LABEL_NODE}={node_id}"] if node_id is not None else []
        return labels + ([f"{LABEL_ROLE}={role}"] if role is not None else [])

    def containers(self, node_id: str | None = None, role: str | None = "node") -> list[Any]:
        """The containers of this cluster (or of one node) in ``role`` (None: any), running or not."""
        filters = {"label": self._labels(node_id, role)}
        return list(self.client.containers.list(all=True, filters=filters, ignore_removed=True))

    def _container(self, node_id: str) -> Any | None:
        self.config.node(node_id)
        found = self.containers(node_id)
        return max(found, key=lambda c: c.attrs.get("Created", "")) if found else None

    def pid(self, node_id: str) -> int | None:
        """The host pid of the node container's init, or None when no container of it runs."""
        container = self._container(node_id)
        if container is None or container.status != "running":
            return None
        return int(container.attrs["State"]["Pid"]) or None

    def alive(self, node_id: str) -> bool:
        return self.pid(node_id) is not None

    def exit_code(self, node_id: str) -> int | None:
        """The exit status of the node's container once it has stopped (else None)."""
        container = self._container(node_id)
        if container is None or container.status not in ("exited", "dead"):
            return None
        return int(container.attrs["State"]["ExitCode"])

    def log_tail(self, node_id: str, lines: int = 20) -> list[str]:
        """The last lines of the node's latest run: the container's output, else node.log's."""
        container = self._container(node_id)
        if container is not None:
            text = container.logs(tail=lines).decode("utf-8", errors="replace")
            return [line for line in text.splitlines() if line.strip()][-lines:]
        try:
            text = self.config.log_path(node_id).read_text(errors="replace")[-64 * 1024 :]
        except OSError:
            return []
        run = text.rsplit(START_MARK, 1)
        latest = run[1].split("\n", 1)[1] if len(run) == 2 and "\n" in run[1] else text
        return [line for line in latest.splitlines() if line.strip()][-lines:]

    # -- starting --------------------------------------------------------------------------

    def start(self, node_id: str) -> int:
        """Start one node's container (removing its stopped one first); the container's pid."""
        self.config.node(node_id)
        state = self.config.state_dir(node_id)
        locked = holder(state)
        if self.alive(node_id) or locked is not None:
            raise NodeRunning(
                node_id,
                self.pid(node_id) or locked,
                hint=f"stop it first with `tars cluster down --config {self.config.path}`, or leave it running",
            )
        for old in self.containers(node_id):
            self._remove(node_id, old)  # its output goes to node.log first
        keys = key_environment(self.config)  # an unset key is an error before any container
        state.mkdir(parents=True, exist_ok=True)
        image = self.image()
        argv = self.command(self.config, node_id)
        name = f"{self._prefix}-{node_id}"
        with self.config.log_path(node_id).open("a") as log:
            stamp = datetime.now().isoformat(" ", "seconds")
            log.write(f"{START_MARK}starting {node_id} at {stamp} in container {name} ({image}): ")
            log.write(" ".join(argv) + "\n")
        mounts, env = self._engine_access(image)
        env = {**env, **keys}  # the models' keys, as the node's own shell would have them
        container = self._run(node_id, name, image, argv, role="node", extra_mounts=mounts, env=env)
        (state / MARKER).write_text(container.id + "\n")
        container.reload()
        return int(container.attrs["State"]["Pid"])

    def _run(
        self,
        node_id: str,
        name: str,
        image: str,
        argv: list[str],
        *,
        role: str,
        extra_mounts: Sequence[Any] = (),
        env: Mapping[str, str] | None = None,
    ) -> Any:
        """Create and start one of the node's containers through the engine's API.

        The SDK's ``run`` has no way to say ``systempaths=unconfined`` (empty masked and
        read-only path lists).  ``role`` and ``extra_mounts`` are what a green container
        of a new version will differ by (its tree mounted read-only).
        """
        import docker.errors

        api = self.client.api
        labels = dict(label.split("=", 1) for label in self._labels(node_id, role))
        host = api.create_host_config(
            init=True,
            network_mode="host",
            mounts=[*container_mounts(self.config, node_id), *extra_mounts],
            security_opt=list(SECURITY_OPT),
            cap_add=list(CAP_ADD),
        )
        host["MaskedPaths"] = []
        host["ReadonlyPaths"] = []
        try:
            made = api.create_container(
                image,
                argv,
                name=name,
                labels={**labels, "tars.image": image},
                working_dir=str(self.config.base_dir),
                environment={"PYTHONUNBUFFERED": "1", **(env or {})},
                host_config=host,
            )
            api.start(made["Id"])
            return self.client.containers.get(made["Id"])
        except docker.errors.DockerException as exc:
            raise TarsError(
                f"cannot start {node_id}'s container {name}: {exc}",
                hint="check the engine's log; `docker ps -a` shows a leftover container to remove",
            ) from exc

    def _engine_access(self, image: str) -> tuple[list[Any], dict[str, str]]:
        """What a node needs to start its service's containers itself: its image's tag and
        the engine (``DOCKER_HOST``; a Unix socket is mounted at the same path). None of it
        reaches a candidate: the jail shows no host path but the ones it binds
        (runtime/jail.py), and a service container gets only its pool's folder."""
        section = getattr(self.config.model, "service", None)
        if section is not None and getattr(section, "placement", "auto") == "jail":
            return [], {}
        from docker.types import Mount

        host = os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
        env = {ENV_IMAGE: image, "DOCKER_HOST": host}
        if host.startswith("unix://"):
            path = host[len("unix://") :]
            return [Mount(path, path, type="bind", read_only=False)], env
        return [], env

    # -- stopping --------------------------------------------------------------------------

    def _remove(self, node_id: str, container: Any) -> None:
        """Keep the container's output in node.log, then remove it and the marker."""
        import docker.errors

        # By the label, not state_dir(): the node may have left cluster.yml since.
        folder = self.config.state_root / node_id if _ID.fullmatch(node_id) else None
        if folder is not None and folder.is_dir():
            with contextlib.suppress(docker.errors.DockerException, OSError):
                output = container.logs().decode("utf-8", errors="replace")
                with (folder / "node.log").open("a") as log:
                    log.write(output)
            (folder / MARKER).unlink(missing_ok=True)
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # its node is removing it too (a service container)
            if exc.status_code != 409:
                raise

    def down(self, ids: Iterable[str] | None = None, timeout: float = 10.0) -> dict[str, bool]:
        """Stop and remove the containers together; which nodes were running.

        With no ``ids`` every container with this cluster's labels goes, also those of
        nodes no longer in cluster.yml.
        """
        chosen = self._ids(ids)
        found = [
            (c.labels.get(LABEL_NODE, "?"), c)
            for c in self.containers(role=None)
            if ids is None or c.labels.get(LABEL_NODE) in chosen
        ]
        stopped = {node_id: False for node_id in chosen}

        def one(item: tuple[str, Any]) -> None:
            node_id, container = item
            if container.status in ("running", "paused", "restarting"):
                stopped[node_id] = True
                if container.status == "paused":
                    container.unpause()
                container.stop(timeout=max(0, round(timeout)))
            self._remove(node_id, container)

        if found:
            with ThreadPoolExecutor(max_workers=len(found)) as pool:
                list(pool.map(one, found))
        for node_id in chosen:
            (self.config.state_dir(node_id) / MARKER).unlink(missing_ok=True)
        return stopped

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> int:
        """Signal the node's container as a crash or a pause would; returns its pid.

        SIGSTOP and SIGCONT freeze and thaw the whole container (a signal would stop
        only its init); after SIGKILL this waits until the container has stopped.
        """
        container = self._container(node_id)
        pid = self.pid(node_id)
        if container is None or pid is None:
            raise TarsError(
                f"{node_id} is not running",
                hint=f"start it with `tars cluster up --config {self.config.path}`",
            )
        if sig == signal.SIGSTOP:
            container.pause()
        elif sig == signal.SIGCONT:
            container.unpause()
        else:
            container.kill(signal=int(sig))
        if sig == signal.SIGKILL:
            container.wait(timeout=30)
        return pid

    # -- readiness -------------------------------------------------------------------------

    def wait_ready(self, node_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the node's admin status until it answers; its status, or :class:`NodeNotReady`."""
        deadline = time.monotonic() + timeout
        last: TarsError | None = None
        log = self.config.log_path(node_id)
        while True:
            if not self.alive(node_id):
                code = self.exit_code(node_id)
                how = f"exited with code {code}" if code is not None else "is not running"
                raise NodeNotReady(
                    node_id,
                    f"{how} before it answered",
                    log,
                    self.log_tail(node_id),
                    hint=f"read `tars cluster logs --config {self.config.path} --id {node_id}`, "
                    "fix the cause and run `tars cluster up` again",
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f" (last: {last.message})" if last is not None else ""
                raise NodeNotReady(
                    node_id,
                    f"did not answer status within {timeout:g}s{why}",
                    log,
                    self.log_tail(node_id),
                    hint=f"check {self.config.endpoint(node_id)} is free on the host, or wait longer with --timeout",
                )
            try:
                reply = admin_request(
                    self.config, node_id, {"op": "status"}, timeout=min(1.0, remaining)
                )
                if isinstance(reply, dict):
                    return reply
            except TransportError as exc:
                last = exc
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))


def started_in_containers(config: ClusterConfig) -> bool:
    """True when a node of this cluster was last started by the docker backend and not
    brought down since (its state folder holds the container marker)."""
    return any((config.state_dir(node_id) / MARKER).is_file() for node_id in config.ids)
