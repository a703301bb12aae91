"""The process launcher, with real processes running a tiny stand-in for a node.

No test needs the real node: the command is a ``python -c`` script that sleeps, exits,
ignores SIGTERM or starts a child, so start/stop/kill/stale-pid behaviour is checked
against the kernel rather than mocks.  Every fixture stops what it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.cluster import app as cluster_app
from evolution.errors import ConfigError, TarsError, TransportError
from runtime.config import ClusterConfig, load_cluster
from runtime.launcher import ProcessLauncher, launcher_for

CLUSTER = """\
cluster:
  state: state
  keys: keys
nodes:
  - {id: node-1, host: 127.0.0.1, port: 17101}
  - {id: node-2, host: 127.0.0.1, port: 17102}
  - {id: node-3, host: 127.0.0.1, port: 17103}
"""

SLEEPER = "import sys, time; print('fake node', sys.argv[1], flush=True); time.sleep(600)"
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(600)"
)
CRASHER = "import sys; print('boom: cannot bind', flush=True); sys.exit(3)"
PARENT = (
    "import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "open(sys.argv[2], 'w').write(str(child.pid)); time.sleep(600)"
)


def script(code: str, *extra: str) -> Any:
    def command(node_id: str) -> list[str]:
        return [sys.executable, "-c", code, node_id, *extra]

    return command


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    path = tmp_path / "cluster.yml"
    path.write_text(CLUSTER)
    return load_cluster(path)


@pytest.fixture
def launchers(config: ClusterConfig) -> Iterator[list[ProcessLauncher]]:
    """Launchers to build in a test; whatever they started is stopped at the end."""
    made: list[ProcessLauncher] = []
    yield made
    for launcher in made:
        launcher.down(timeout=0.5)


def make(
    launchers: list[ProcessLauncher],
    config: ClusterConfig,
    code: str = SLEEPER,
    *extra: str,
    **kw: Any,
) -> ProcessLauncher:
    launcher = ProcessLauncher(config, command=script(code, *extra), **kw)
    launchers.append(launcher)
    return launcher


def gone(pid: int) -> bool:
    """Whether pid has ended (a zombie has: only its parent's bookkeeping is left); bounded, not timed."""
    for _ in range(400):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.025)
    return False


def wait_for_log(config: ClusterConfig, node_id: str, text: str) -> str:
    for _ in range(400):
        log = config.log_path(node_id).read_text() if config.log_path(node_id).exists() else ""
        if text in log:
            return log
        time.sleep(0.025)
    raise AssertionError(f"{text!r} never reached the log")


def test_start_writes_pid_and_log_and_refuses_a_second_start(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    launcher = make(launchers, config)
    pid = launcher.start("node-1")
    assert launcher.alive("node-1") and launcher.pid("node-1") == pid
    assert config.pid_path("node-1").read_text().split()[0] == str(pid)
    log = wait_for_log(config, "node-1", "fake node node-1")
    assert "tars launcher: starting node-1" in log
    assert (
        os.getsid(pid) == pid
    )  # its own session: a Ctrl-C in the CLI's terminal does not reach it
    with pytest.raises(ConfigError, match=rf"node-1 is already running, pid {pid}\b"):
        launcher.start("node-1")
    # Another launcher (a later `tars cluster …` command) finds it through the pid file.
    other = make(launchers, config)
    assert other.pid("node-1") == pid
    with pytest.raises(ConfigError, match="already running"):
        other.start("node-1")
    assert launcher.stop("node-1") is True
    assert not launcher.alive("node-1") and not config.pid_path("node-1").exists()
    assert launcher.stop("node-1") is False


def test_stop_from_another_launcher_reaps(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    first = make(launchers, config)
    pid = first.start("node-2")
    second = make(launchers, config)
    assert second.stop("node-2") is True
    assert gone(pid)
    assert not first.alive("node-2")


def test_kill_leaves_a_stale_pid_file_that_start_ignores(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    launcher = make(launchers, config)
    pid = launcher.start("node-1")
    assert launcher.kill("node-1") == pid
    assert not launcher.alive("node-1")
    assert config.pid_path("node-1").exists()  # as a crash would leave it
    assert make(launchers, config).pid("node-1") is None
    again = launcher.start("node-1")
    assert again != pid and launcher.alive("node-1")
    wait_for_log(config, "node-1", "fake node node-1\n")
    assert (
        config.log_path("node-1").read_text().count("tars launcher: starting node-1") == 2
    )  # appended, not replaced


def test_kill_of_a_stopped_node_is_an_error(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    with pytest.raises(TarsError, match="node-3 is not running"):
        make(launchers, config).kill("node-3")


def test_pause_and_resume_with_signals(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    launcher = make(launchers, config)
    launcher.start("node-1")
    launcher.kill("node-1", signal.SIGSTOP)
    assert launcher.alive("node-1")
    launcher.kill("node-1", signal.SIGCONT)
    assert launcher.stop("node-1")


def test_pid_file_of_a_dead_or_reused_pid_is_stale(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    launcher = make(launchers, config)
    config.state_dir("node-1").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    config.pid_path("node-1").write_text(f"{dead.pid}\n")
    assert launcher.pid("node-1") is None
    # A live pid whose start time differs belongs to someone else (the kernel reused it).
    config.pid_path("node-1").write_text(f"{os.getpid()}\n1\n")
    assert launcher.pid("node-1") is None
    config.pid_path("node-1").write_text("garbage\n")
    assert launcher.pid("node-1") is None
    pid = launcher.start("node-1")
    assert launcher.pid("node-1") == pid != os.getpid()


def test_stop_escalates_to_sigkill(config: ClusterConfig, launchers: list[ProcessLauncher]) -> None:
    launcher = make(launchers, config, STUBBORN)
    pid = launcher.start("node-1")
    wait_for_log(config, "node-1", "ignoring SIGTERM")
    assert launcher.stop("node-1", timeout=0.2) is True
    assert not launcher.alive("node-1") and gone(pid)


def test_stop_takes_the_nodes_children_along(
    config: ClusterConfig, launchers: list[ProcessLauncher], tmp_path: Path
) -> None:
    marker = tmp_path / "child.pid"
    launcher = make(launchers, config, PARENT, str(marker))
    launcher.start("node-1")
    for _ in range(400):
        if marker.exists() and marker.read_text():
            break
        time.sleep(0.025)
    child = int(marker.read_text())
    assert launcher.stop("node-1")
    assert gone(child)


def test_up_and_down_every_node(config: ClusterConfig, launchers: list[ProcessLauncher]) -> None:
    launcher = make(launchers, config)
    pids = launcher.up()
    assert sorted(pids) == ["node-1", "node-2", "node-3"] and len(set(pids.values())) == 3
    assert launcher.up() == pids  # running nodes are left alone
    launcher.stop("node-2")
    assert launcher.up(["node-2"])["node-2"] != pids["node-2"]
    assert launcher.down() == {"node-1": True, "node-2": True, "node-3": True}
    assert not any(launcher.alive(node_id) for node_id in config.ids)
    assert launcher.down(["node-1"]) == {"node-1": False}


def test_unknown_node_id(config: ClusterConfig, launchers: list[ProcessLauncher]) -> None:
    with pytest.raises(ConfigError, match="node 'node-9' is not in"):
        make(launchers, config).start("node-9")


def test_a_command_that_does_not_exist(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    launcher = ProcessLauncher(config, command=lambda node_id: ["/nonexistent/tars-node"])
    launchers.append(launcher)
    with pytest.raises(TarsError, match="cannot start node-1"):
        launcher.start("node-1")


def test_wait_ready_returns_the_status(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    calls: list[float] = []

    def probe(node_id: str, timeout: float) -> dict[str, Any]:
        calls.append(timeout)
        if len(calls) < 3:
            raise TransportError("no reply yet")
        return {"node": node_id, "role": "follower"}

    launcher = make(launchers, config, probe=probe)
    launcher.start("node-1")
    assert launcher.wait_ready("node-1", timeout=60) == {"node": "node-1", "role": "follower"}
    assert len(calls) == 3 and all(0 < t <= 1.0 for t in calls)


def test_wait_ready_reports_a_crash_with_the_log(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    def probe(node_id: str, timeout: float) -> dict[str, Any]:
        raise TransportError("no reply")

    launcher = make(launchers, config, CRASHER, probe=probe)
    launcher.start("node-1")
    with pytest.raises(TransportError) as caught:
        launcher.wait_ready("node-1", timeout=60)
    message = str(caught.value)
    assert (
        "node-1 exited with code 3" in message
        and "boom: cannot bind" in message
        and "\n" not in message
    )
    assert str(config.log_path("node-1")) in message
    launcher.start("node-1")  # the pid file of the crashed run is stale
    with pytest.raises(TransportError):
        launcher.wait_ready("node-1", timeout=60)
    assert config.log_path("node-1").read_text().splitlines().count("boom: cannot bind") == 2
    assert launcher.log_tail("node-1").count("boom: cannot bind") == 1  # the latest run only


def test_wait_ready_times_out_with_the_last_error(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    def probe(node_id: str, timeout: float) -> dict[str, Any]:
        raise TransportError("request to tcp://127.0.0.1:17102 timed out")

    launcher = make(launchers, config, probe=probe)
    launcher.start("node-2")
    with pytest.raises(
        TransportError,
        match=r"node-2 did not answer status within 0.3s \(last: request to .* timed out\).*fake node",
    ):
        launcher.wait_ready("node-2", timeout=0.3)
    assert launcher.alive("node-2")  # waiting never kills


def test_launcher_for_follows_the_flag_then_the_file(tmp_path: Path) -> None:
    from runtime.docker_launcher import DockerLauncher

    path = tmp_path / "cluster.yml"
    path.write_text(CLUSTER.replace("  state: state", "  backend: docker\n  state: state"))
    config = load_cluster(path)
    assert isinstance(launcher_for(config), DockerLauncher)  # no engine is asked yet
    assert isinstance(launcher_for(config, "process"), ProcessLauncher)
    with pytest.raises(ConfigError, match="unknown backend 'k8s'"):
        launcher_for(config, "k8s")


# -- `tars cluster status|down` with nodes that are not running ----------------------------------


def test_status_shows_down_nodes_and_exits_zero(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    config.ensure_keys()
    launcher = make(launchers, config)
    pid = launcher.start("node-3")  # running, but not a node: it never answers
    runner = CliRunner()
    result = runner.invoke(
        cluster_app, ["status", "--config", str(config.path), "--timeout", "0.2"]
    )
    assert result.exit_code == 0, result.output
    rows = {
        line.split()[1]: line
        for line in result.stdout.splitlines()
        if "node-" in line and "│" in line
    }
    assert "down" in rows["node-1"] and "down" in rows["node-2"]
    assert "not answering" in rows["node-3"] and str(pid) in rows["node-3"]
    assert "0 of 3 nodes answering" in result.stdout
    as_json = runner.invoke(
        cluster_app, ["status", "--config", str(config.path), "--timeout", "0.2", "--json"]
    )
    assert as_json.exit_code == 0 and as_json.stdout.count('"up": false') == 3
    stopped = runner.invoke(cluster_app, ["down", "--config", str(config.path)])
    assert stopped.exit_code == 0, stopped.output
    assert (
        f"stopped node-3 (pid {pid})" in stopped.stdout
        and "node-1 was not running" in stopped.stdout
    )


def test_status_without_admin_keys_is_one_line(config: ClusterConfig) -> None:
    result = CliRunner().invoke(cluster_app, ["status", "--config", str(config.path)])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "admin.key" in lines[0] and "tars keys" in lines[0], result.stderr


def test_add_and_remove_with_no_swarm_running(config: ClusterConfig) -> None:
    runner = CliRunner()
    added = runner.invoke(
        cluster_app,
        ["add", "-c", str(config.path), "--id", "node-4", "--port", "17104", "--timeout", "0.2"],
    )
    assert added.exit_code != 0
    assert "wrote node-4 (127.0.0.1:17104)" in added.stdout
    assert "node-4 is in" in added.stderr and "did not add it" in added.stderr
    grown = load_cluster(config.path)
    assert grown.ids[-1] == "node-4" and grown.keypair("node-4")[0]
    refused = runner.invoke(
        cluster_app, ["remove", "-c", str(config.path), "--id", "node-4", "--timeout", "0.2"]
    )
    assert refused.exit_code != 0 and "--force" in refused.stderr
    assert "node-4" in load_cluster(config.path).ids
    forced = runner.invoke(
        cluster_app,
        ["remove", "-c", str(config.path), "--id", "node-4", "--timeout", "0.2", "--force"],
    )
    assert forced.exit_code == 0, forced.output
    assert load_cluster(config.path).ids == ["node-1", "node-2", "node-3"]


def test_tied_nodes_die_with_the_process_that_launched_them(
    config: ClusterConfig, tmp_path: Path
) -> None:
    """A killed `tars demo` must not leave its nodes running."""
    pidfile = tmp_path / "node.pid.txt"
    launcher_code = (
        "import sys, time\n"
        "from runtime.config import load_cluster\n"
        "from runtime.launcher import ProcessLauncher\n"
        f"code = {SLEEPER!r}\n"
        "launcher = ProcessLauncher(load_cluster(sys.argv[1]), tied=True,\n"
        "    command=lambda node: [sys.executable, '-c', code, node])\n"
        "open(sys.argv[2], 'w').write(str(launcher.start('node-1')))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", launcher_code, str(config.path), str(pidfile)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        node_pid = int(pidfile.read_text())
        os.kill(node_pid, 0)  # running
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(node_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(node_pid, signal.SIGKILL)
            raise AssertionError("the tied node outlived its launcher")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_tied_launcher_refuses_to_start_a_node_from_a_worker_thread(
    config: ClusterConfig, launchers: list[ProcessLauncher]
) -> None:
    """The kernel ties the node to the forking thread: from a thread that ends, the node
    would be killed with it, so the launcher says so instead of starting it."""
    launcher = make(launchers, config, tied=True)
    caught: list[BaseException] = []

    def start() -> None:
        try:
            launcher.start("node-1")
        except TarsError as exc:
            caught.append(exc)

    worker = threading.Thread(target=start, name="starter")
    worker.start()
    worker.join(30)
    assert len(caught) == 1 and "from thread starter" in str(caught[0])
    assert "main thread" in caught[0].hint
    assert launcher.pid("node-1") is None  # nothing was started
