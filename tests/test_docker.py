"""The docker backend end to end: a real engine, the node image, three containers.

The engine and the node image are the session's (tests/dockerkit.py, through
conftest.py): a private engine is started when none answers, and the tests skip, saying
why, only when no engine can be started.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from swarmkit import LocalSwarm
from typer.testing import CliRunner

from cli.demo import write_cluster
from cli.main import app
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
    return list(engine.containers.list(all=True, filters={"label": f"{LABEL_CLUSTER}={name}"}))


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
