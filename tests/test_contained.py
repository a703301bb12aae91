"""Service workers in a container of the node's image (runtime/service/contained.py).

A real engine and the node image (tests/dockerkit.py); the tests skip, saying why, only
when no engine can be started. A pool's container is attacked from inside as a hostile
version would: the node's state and keys, the engine's socket, the network, its own tree.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servicekit import BASE, variant
from swarmkit import wait

from evolution.manifest import parse_manifest
from runtime.sandbox import Sandbox
from runtime.service.contained import ContainerSpec
from runtime.service.workers import WorkerPool

pytestmark = pytest.mark.timeout(600)

#: a module a hostile version adds: each attempt says "refused: …" or what it got
PROBE = """
import os, socket

def attempt(what, target):
    try:
        if what == "read":
            with open(target, "rb") as handle:
                return "got: " + handle.read(64).hex()
        if what == "list":
            return "got: " + ",".join(sorted(os.listdir(target)))
        if what == "unix":
            end = socket.socket(socket.AF_UNIX)
            end.connect(target)
            return "got: connected"
        if what == "tcp":
            end = socket.create_connection(("127.0.0.1", int(target)), timeout=2)
            return "got: connected"
        if what == "write":
            with open(target, "w") as handle:
                handle.write("x")
            return "got: written"
        if what == "whoami":
            return "got: %d:%d" % (os.getuid(), os.getgid())
    except OSError as exc:
        return "refused: %s" % exc
    return "unknown attempt"
"""
ATTEMPT = """
[service.functions.attempt]
call = "svc.probe:attempt"
args = { what = "str", target = "str" }
example = { what = "whoami", target = "" }
"""


def _spec(engine: Any, image: str, name: str) -> ContainerSpec:
    return ContainerSpec(
        engine=lambda: engine, image=lambda: image, labels={"tars.cluster": name}, prefix=name
    )


def _ours(engine: Any, name: str) -> list[Any]:
    return list(
        engine.containers.list(
            all=True, filters={"label": f"tars.cluster={name}"}, ignore_removed=True
        )
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    yield Sandbox(tmp_path / "state" / "sandbox")


def _pool(sandbox: Sandbox, spec: ContainerSpec, tree: dict[str, str], version: str) -> WorkerPool:
    manifest = parse_manifest(tree["genome.toml"], "svc/genome.toml")
    assert manifest.service is not None
    pool = WorkerPool(
        sandbox, "svc", version, tree, manifest.service, manifest.limits,
        colour="green", containers=spec,
    )  # fmt: skip
    pool.start(120)
    return pool


def test_a_pool_runs_in_a_new_container_locked_down_and_removed_with_it(
    engine: Any, image: str, sandbox: Sandbox
) -> None:
    spec = _spec(engine, image, "contained-basics")
    pool = _pool(sandbox, spec, dict(BASE), "v-basic")
    try:
        assert pool.call("svc.calc", "add", {"a": 2, "b": 3}).result(30).result == 5
        (box,) = _ours(engine, "contained-basics")
        host = box.attrs["HostConfig"]
        assert box.attrs["Config"]["Image"] == image
        assert box.labels["tars.role"] == "service" and box.labels["tars.version"] == "v-basic"
        assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
        assert box.attrs["Config"]["User"] == "65534:65534"
        assert host["Memory"] > 0 and host["PidsLimit"] > 0
        mounts = sorted((m["Source"], m["RW"]) for m in box.attrs["Mounts"])
        # the pool's folder (its sockets' folder again at a short path), read-only; nothing else
        assert mounts == [(str(pool.folder), False), (str(pool.folder / "sock"), False)]
    finally:
        pool.stop()
    assert _ours(engine, "contained-basics") == []


def test_a_hostile_version_in_its_container_reaches_nothing_of_the_node(
    engine: Any, image: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    """The attacks a version's code would try, from inside its container."""
    keys = tmp_path / "state" / "keys"
    keys.mkdir(parents=True)
    (keys / "node-1.key_secret").write_text("the node's secret\n")
    engine_socket = _engine_socket()
    listener = socket.create_server(("127.0.0.1", 0))  # a port of the node's, on the host
    tree = {**BASE, "svc/probe.py": PROBE, "genome.toml": BASE["genome.toml"] + ATTEMPT}
    pool = _pool(sandbox, _spec(engine, image, "contained-attacks"), tree, "v-attack")

    def attempt(what: str, target: str) -> str:
        reply = pool.call("svc.probe", "attempt", {"what": what, "target": target}).result(30)
        assert reply.ok, reply
        return str(reply.result)

    try:
        assert attempt("whoami", "") == "got: 65534:65534"
        assert attempt("read", str(keys / "node-1.key_secret")).startswith("refused")
        assert attempt("list", str(tmp_path / "state")) == "got: sandbox"  # the mount point only
        assert attempt("list", str(sandbox.root)) == f"got: {pool.folder.name}"
        assert attempt("tcp", str(listener.getsockname()[1])).startswith("refused")
        if engine_socket is not None:
            assert attempt("unix", engine_socket).startswith("refused")
        assert attempt("write", str(pool.folder / "v" / "v-attack" / "svc" / "calc.py")).startswith(
            "refused"
        )
        assert attempt("write", "/usr/local/bin/python3").startswith("refused")
        assert attempt("read", "/etc/shadow").startswith("refused")
    finally:
        pool.stop()
        listener.close()


def test_a_worker_killed_or_hostile_in_its_container_is_restarted_and_no_call_is_lost(
    engine: Any, image: str, sandbox: Sandbox
) -> None:
    pool = _pool(sandbox, _spec(engine, image, "contained-restart"), variant("hostile"), "v-host")
    replies: list[Any] = []
    halt = threading.Event()

    def caller(a: int) -> None:
        while not halt.is_set():
            replies.append(pool.call("svc.calc", "add", {"a": a, "b": 1}).result(60))

    callers = [threading.Thread(target=caller, args=(n,)) for n in range(4)]
    try:
        for thread in callers:
            thread.start()
        wait(lambda: len(replies) > 50, 60, "calls answered")
        (box,) = _ours(engine, "contained-restart")
        # SIGKILL one worker process from inside, as the OOM killer or a crash would
        kill_one = (
            "import os\n"
            "found = [p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid())\n"
            "         and b'worker_main' in open(f'/proc/{p}/cmdline', 'rb').read()]\n"
            "os.kill(int(min(found, key=int)), 9)\n"
        )
        killed = box.exec_run(["python", "-c", kill_one], user="65534")
        assert killed.exit_code == 0, killed.output
        wait(lambda: pool.restarts >= 1, 60, "the killed worker restarted")
        count = len(replies)
        wait(lambda: len(replies) > count + 50, 60, "calls answered again")
        halt.set()
        for thread in callers:
            thread.join(60)
        # a worker that writes garbage on its frames is killed, the call tried once more
        # (its second worker does the same), and the pool serves on with new workers
        garbage = pool.call("svc.calc", "words", {"text": "garbage"}).result(60)
        assert not garbage.ok and garbage.kind == "crash", garbage
        wait(lambda: all(w.ready for w in pool.workers) and pool.restarts >= 3, 60, "restarted")
        assert pool.call("svc.calc", "add", {"a": 1, "b": 1}).result(60).result == 2
    finally:
        halt.set()
        for thread in callers:
            thread.join(60)
        pool.stop()
    lost = [r for r in replies if not r.ok]
    assert replies and not lost, lost[:3]


def test_a_version_that_cannot_load_says_why_from_its_container(
    engine: Any, image: str, sandbox: Sandbox
) -> None:
    tree = {**BASE, "svc/calc.py": BASE["svc/calc.py"] + "\nraise SystemExit('no luck here')\n"}
    manifest = parse_manifest(tree["genome.toml"], "svc/genome.toml")
    assert manifest.service is not None
    pool = WorkerPool(
        sandbox, "svc", "v-broken", tree, manifest.service, manifest.limits,
        colour="green", containers=_spec(engine, image, "contained-broken"),
    )  # fmt: skip
    with pytest.raises(Exception, match="not ready") as caught:
        pool.start(20)
    assert "no luck here" in str(caught.value)
    assert _ours(engine, "contained-broken") == []  # a pool that never served leaves nothing


def _engine_socket() -> str | None:
    import os

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return host[len("unix://") :] if host.startswith("unix://") else None
