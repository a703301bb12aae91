"""The docker backend end to end: a real engine, the node image, three containers.

The engine and the node image are the session's (tests/dockerkit.py, through
conftest.py): a private engine is started when none answers, and the tests skip, saying
why, only when no engine can be started.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from swarmkit import LocalSwarm
from typer.testing import CliRunner

from cli.demo import write_cluster
from cli.main import app
from evolution.errors import ConfigError
from runtime.config import load_cluster
from runtime.docker_launcher import LABEL_CLUSTER, DockerLauncher
from runtime.launcher import START_MARK, NodeNotReady, launcher_for

pytestmark = pytest.mark.timeout(900)

TINY = Path(__file__).parent / "data" / "tiny"
#: The sandbox's own probe, run inside a node container: the jail it would use there.
PROBE = (
    "import tempfile, pathlib; from runtime.isolation import probe; "
    "i = probe('auto', pathlib.Path(tempfile.mkdtemp())); print(i.mode, i.cgroups, i.notes)"
)


def _ours(engine: Any, name: str) -> list[Any]:
    return list(
        engine.containers.list(
            all=True, filters={"label": f"{LABEL_CLUSTER}={name}"}, ignore_removed=True
        )
    )


def test_three_containers_elect_commit_survive_a_kill_and_go_down(
    engine: Any, image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    swarm = LocalSwarm(tmp_path / "swarm", cycles=1, candidates=1)
    launcher = DockerLauncher(swarm.config, client=engine, image=image)
    swarm.launcher = launcher  # type: ignore[assignment]
    try:
        began = {}
        for node_id in swarm.ids:
            began[node_id] = time.monotonic()
            launcher.start(node_id)
        ready = {}
        for node_id in swarm.ids:
            launcher.wait_ready(node_id, timeout=120)
            ready[node_id] = time.monotonic() - began[node_id]
        with capsys.disabled():
            shown = ", ".join(f"{n} {s:.2f} s" for n, s in ready.items())
            print(f"\nup to ready per container: {shown}")

        for container in _ours(engine, swarm.config.name):
            host = container.attrs["HostConfig"]
            assert host["NetworkMode"] == "host" and host["Init"] is True
            assert container.labels["tars.node"] in swarm.ids
        inside = launcher.containers("node-1")[0]
        keys = swarm.config.keys_dir
        assert inside.exec_run(["cat", str(keys / "node-1.key_secret")]).output
        assert inside.exec_run(["cat", str(keys / "node-2.key_secret")]).output == b""  # hidden
        assert inside.exec_run(["ls", str(swarm.config.state_dir("node-2"))]).output == b""
        jail = inside.exec_run(["python", "-c", PROBE])
        assert jail.output.decode().split()[:2] == ["bwrap", "True"], jail.output  # mode, cgroups
        assert inside.exec_run(["valgrind", "--version"]).exit_code == 0

        leader = swarm.leader(timeout=60)
        swarm.wait_for(
            lambda: all(s and swarm.genome in s["heads"] for s in swarm.statuses().values()),
            120,
            "every container applied the tiny genome's register entry",
        )
        swarm.kill(leader)
        assert not launcher.alive(leader) and launcher.exit_code(leader) == 128 + signal.SIGKILL
        rest = [n for n in swarm.ids if n != leader]
        swarm.leader(timeout=60, among=rest)
        swarm.up([leader])  # its stopped container is replaced by a new one
        assert len([c for c in _ours(engine, swarm.config.name) if c.status == "running"]) == 3
        swarm.check_invariants(60)

        again = launcher_for(swarm.config)  # cluster.yml says process: the markers say docker
        assert isinstance(again, DockerLauncher)
        assert all(again.down().values())
        assert _ours(engine, swarm.config.name) == []
        assert "stopped cleanly" in swarm.config.log_path(leader).read_text()
    finally:
        launcher.down(timeout=2)


def test_a_node_that_dies_at_start_shows_its_exit_and_output(
    engine: Any, image: str, tmp_path: Path
) -> None:
    config = load_cluster(write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    launcher = DockerLauncher(
        config,
        client=engine,
        image=image,
        command=lambda cfg, node_id: ["sh", "-c", f"echo {node_id} cannot start; exit 3"],
    )
    try:
        launcher.start("node-1")
        with pytest.raises(NodeNotReady) as caught:
            launcher.wait_ready("node-1", timeout=60)
        assert "exited with code 3" in str(caught.value)
        assert "node-1 cannot start" in caught.value.tail
    finally:
        launcher.down(timeout=2)
    assert "node-1 cannot start" in launcher.log_tail("node-1")  # kept in node.log after down


def test_down_removes_the_container_of_a_node_no_longer_in_cluster_yml(
    engine: Any, image: str, tmp_path: Path
) -> None:
    config = load_cluster(write_cluster(tmp_path, 2, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    echo = ["sh", "-c", "echo gone with its node; sleep 600"]
    DockerLauncher(config, client=engine, image=image, command=lambda c, n: echo).start("node-2")
    assert len(_ours(engine, "demo")) == 1
    smaller = config.remove_node("node-2")
    assert DockerLauncher(smaller, client=engine, image=image).down(timeout=1) == {
        "node-1": False,
        "node-2": True,
    }
    assert _ours(engine, "demo") == []
    assert "gone with its node" in (tmp_path / "node-2" / "node.log").read_text()


LLM_SECTION = (
    "llm:\n  models:\n    - name: hosted\n      endpoint: http://127.0.0.1:9/v1\n"
    "      model: m-1\n      api_key_env: TARS_DOCKER_LLM_KEY\n  max_requests: 2\n"
)


def test_a_node_container_gets_the_models_key_variables_and_no_other(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cluster.yml names the key's variable; the container gets that one from the shell
    that starts it, and not the rest of the shell's environment (an unrelated secret)."""
    path = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    path.write_text(path.read_text() + LLM_SECTION)
    config = load_cluster(path)
    config.ensure_keys()
    sleep = ["sh", "-c", "sleep 600"]
    launcher = DockerLauncher(config, client=engine, image=image, command=lambda c, n: sleep)
    monkeypatch.delenv("TARS_DOCKER_LLM_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        launcher.start("node-1")
    assert "TARS_DOCKER_LLM_KEY is not set" in str(caught.value)
    assert _ours(engine, "demo") == []  # refused before any container was made
    monkeypatch.setenv("TARS_DOCKER_LLM_KEY", "sk-docker-key-0123456789")
    monkeypatch.setenv("TARS_UNRELATED_SECRET", "not-for-the-node")
    try:
        launcher.start("node-1")
        (inside,) = launcher.containers("node-1")
        env = inside.exec_run(["env"]).output.decode()
        assert "TARS_DOCKER_LLM_KEY=sk-docker-key-0123456789" in env
        assert "TARS_UNRELATED_SECRET" not in env
    finally:
        launcher.down(timeout=1)


def test_cli_up_backend_docker_status_logs_down(engine: Any, image: str, tmp_path: Path) -> None:
    path = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["cluster", "up", "--config", str(path), "--backend", "docker"])
        assert up.exit_code == 0, up.output
        assert image in up.output  # the same sources give the same image
        status = runner.invoke(app, ["cluster", "status", "--config", str(path), "--json"])
        assert '"up": true' in status.output, status.output
        logs = runner.invoke(app, ["cluster", "logs", "--config", str(path), "--id", "node-1"])
        assert "node-1 ready on" in logs.output, logs.output
        again = runner.invoke(app, ["cluster", "up", "--config", str(path)])  # no flag now
        assert again.exit_code == 0 and "already running" in again.output, again.output
        assert "node image" not in again.output  # nothing to start, nothing built
    finally:
        down = runner.invoke(app, ["cluster", "down", "--config", str(path)])
    assert down.exit_code == 0 and "stopped node-1" in down.output, down.output
    assert _ours(engine, "demo") == []


def test_cli_logs_shows_a_process_nodes_latest_run(tmp_path: Path) -> None:
    """`tars cluster logs` for the process backend: the last run of node.log, no engine."""
    path = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    log = load_cluster(path).log_path("node-1")
    log.parent.mkdir(parents=True)
    log.write_text(f"{START_MARK}starting node-1\nold run\n{START_MARK}starting node-1\nnew run\n")
    shown = CliRunner().invoke(app, ["cluster", "logs", "--config", str(path), "--id", "node-1"])
    assert shown.exit_code == 0 and shown.output == "new run\n", shown.output


CALL = {"words": ["the", "zebra", "of", "of"]}
SERVED = """
[service]
workers = 1

[service.functions.count_common]
call = "tiny.core:count_common"
args = { words = "list[str]" }
example = { words = ["the", "zebra", "of"] }

[rollout]
interval = 0.5
"""


def _post(url: str, args: dict[str, Any], answers: list[dict[str, Any]]) -> bool:
    """POST a call; True with its answer kept once it is 200 (a restarted node takes a moment
    between its container being up and its router serving the genome: 404 until then)."""
    request = urllib.request.Request(url, data=json.dumps(args).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            answers.append(json.loads(reply.read()))
            return True
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        return False


def _created(engine: Any, cluster: str, since: float) -> dict[str, list[str]]:
    """node -> the versions of the service containers the engine created for it since then."""
    found: dict[str, list[str]] = {}
    events = engine.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True,
        filters={"type": "container", "event": "create", "label": [f"{LABEL_CLUSTER}={cluster}", "tars.role=service"]},
    )  # fmt: skip
    for event in events:
        labels = event["Actor"]["Attributes"]
        found.setdefault(labels["tars.node"], []).append(labels["tars.version"])
    return found


def test_a_docker_swarm_evolves_and_deploys_the_new_version_as_new_containers(
    engine: Any, image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11: three node containers serve the genome, each from a service container of
    its own image; the swarm evolves, and the adopted version goes live on every node as a
    new container started from that image with the new tree, the old one removed once green
    is promoted."""
    genome = tmp_path / "genome" / "tiny"
    shutil.copytree(TINY, genome)
    (genome / "genome.toml").write_text((TINY / "genome.toml").read_text() + SERVED)
    swarm = LocalSwarm(tmp_path / "swarm", genome=genome, cycles=3, candidates=2)
    launcher = DockerLauncher(swarm.config, client=engine, image=image)
    swarm.launcher = launcher  # type: ignore[assignment]
    began = time.time()

    def served() -> dict[str, set[str]]:
        """node -> versions of its running service containers"""
        found: dict[str, set[str]] = {n: set() for n in swarm.ids}
        for box in _ours(engine, swarm.config.name):
            mine = box.labels.get("tars.config") == str(swarm.config.path)
            if mine and box.labels.get("tars.role") == "service" and box.status == "running":
                found[box.labels["tars.node"]].add(box.labels["tars.version"])
        return found

    def heads() -> dict[str, str | None]:
        return {
            n: (s["heads"][swarm.genome]["version"] if s and swarm.genome in s["heads"] else None)
            for n, s in swarm.statuses().items()
        }

    try:
        for node_id in swarm.ids:
            launcher.start(node_id)
        for node_id in swarm.ids:
            launcher.wait_ready(node_id, timeout=120)
        swarm.wait_for(lambda: len(set(heads().values()) - {None}) == 1, 120, "registered")
        first = next(iter(heads().values()))
        swarm.wait_for(lambda: any(s and s["role"] == "leader" and s["stage"] == "cycle 3: done"
                                   for s in swarm.statuses().values()), 600, "evolution")  # fmt: skip
        swarm.wait_for(lambda: len(set(heads().values())) == 1, 60, "one head everywhere")
        evolved = next(iter(heads().values()))
        assert evolved is not None and evolved != first, "the swarm adopted nothing"
        try:
            swarm.wait_for(lambda: served() == {n: {evolved} for n in swarm.ids}, 180, "evolved")
        except AssertionError:
            raise AssertionError(f"not every node serves {evolved[:12]} from a container: "
                                 f"{served()}; heads {heads()}") from None  # fmt: skip
        # a head that moves again (a rollback to the first version, committed in the ledger)
        # goes live as yet another container on every node, and the evolved one is removed
        reply = swarm.request(swarm.ids[0], {"op": "rollback", "genome": swarm.genome,
                                             "to": first, "reason": "test"}, timeout=30)  # fmt: skip
        assert reply.get("ok"), reply
        swarm.wait_for(lambda: served() == {n: {first} for n in swarm.ids}, 180,
                       "every node serves the first version again, from a new container")  # fmt: skip
        made = _created(engine, swarm.config.name, began)
        for node_id in swarm.ids:  # the evolved version, then the first: new containers each
            assert {evolved, first} <= set(made[node_id]), made
        # a node killed outright leaves its service container behind; started again, it
        # removes that one and serves from a new container
        victim = swarm.ids[2]

        def boxes() -> list[str]:
            return [b.id for b in _ours(engine, swarm.config.name) if b.status == "running"
                    and b.labels.get("tars.node") == victim and b.labels["tars.role"] == "service"]  # fmt: skip

        orphans = boxes()
        swarm.kill(victim)
        assert boxes() == orphans and len(orphans) == 1  # outlived its node
        swarm.up([victim])
        swarm.wait_for(lambda: len(boxes()) == 1 and boxes() != orphans and served()[victim] == {first},
                       120, "the restarted node removed its old container and serves from a new one")  # fmt: skip
        with capsys.disabled():
            print(
                f"\nevolved, deployed and rolled back as containers in {time.time() - began:.1f} s"
            )
        for box in _ours(engine, swarm.config.name):
            if box.labels.get("tars.role") == "service":
                assert box.attrs["Config"]["Image"] == image  # the node's own image
                assert box.attrs["HostConfig"]["NetworkMode"] == "none"
        for node_id in swarm.ids:  # each node's front answers from its container (curl's way)
            host, port = swarm.config.http_bind(node_id)
            url = f"http://{host}:{port}/v1/tiny/count_common"
            answers: list[dict[str, Any]] = []
            swarm.wait_for(partial(_post, url, CALL, answers), 60, f"{node_id} answers")
            assert answers[-1]["result"] == 3 and answers[-1]["version"] == first, answers[-1]
    finally:
        launcher.down(timeout=2)
    assert _ours(engine, swarm.config.name) == []  # nodes and their service containers


#: inside the node image: the count guard before valgrind's tool, on a plain run, an exec
#: and a fork (runtime/_count_guard.py), each line "code exit-status last-words"
GUARDED = r"""
import os, subprocess, sys
from runtime.counting import _GUARD, counter_tool, valgrind
tool, env = counter_tool(valgrind())
for code in ("pass", "import os; os.execv('/bin/true', ['true'])", "import os; os.fork()"):
    run = subprocess.run(
        [sys.executable, "-I", "-c", _GUARD, tool, "--tool=cachegrind", "--cache-sim=no",
         "--branch-sim=no", "--cachegrind-out-file=/dev/null", sys.executable, "-c", code],
        env={**os.environ, **env}, capture_output=True, text=True,
    )
    words = [x for x in run.stderr.splitlines() if "refs" in x or "Error" in x or "guard" in x]
    print(code.split(";")[-1].strip(), run.returncode, words)
"""


def test_the_node_image_counts_one_process_under_the_guard(engine: Any, image: str) -> None:
    """libseccomp, pyseccomp and valgrind's tool are all in the image: a count runs, an
    exec under the counter is killed (SIGSYS), a fork refused."""
    from runtime.docker_launcher import SECURITY_OPT

    out = engine.containers.run(
        image, ["python", "-c", GUARDED], remove=True, security_opt=list(SECURITY_OPT)
    ).decode()
    lines = out.strip().splitlines()
    assert len(lines) == 3, out
    assert lines[0].startswith("pass 0 ") and "I   refs:" in lines[0], out
    assert " -31 " in lines[1], out  # SIGSYS
    assert lines[2].startswith("os.fork() 1 ") and "PermissionError" in lines[2], out
