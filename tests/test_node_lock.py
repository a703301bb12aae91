"""A node's lock on its state folder, tried as the issue found it: a second start, either way.

Real processes throughout: stand-ins that take the lock as `tars node start` does (fast,
for the rules), and one real node started by `tars node start` (as a user would), then
`tars cluster up`, a second `tars node start` and `tars cluster down` against it.  The
attack of the issue was `cluster up` after `node start`: a duplicate that overwrote
``node.pid`` with its own dead pid, so `cluster down` left the real node running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.cluster import app as cluster_app
from cli.demo import write_cluster
from evolution.errors import ConfigError
from runtime.config import ClusterConfig, load_cluster
from runtime.launcher import ProcessLauncher
from runtime.node_lock import LOCK_NAME, NodeRunning, StateLock, holder, read_pid_file

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny"

#: A stand-in node that takes the lock exactly as `tars node start` does, then waits.
LOCKER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from runtime.node_lock import StateLock\n"
    "lock = StateLock(Path(sys.argv[1]), sys.argv[2]).acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(600)\n"
)


def wait_for(check: object, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].startswith("Z")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts by hand; every one still alive at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def locker(
    processes: list[subprocess.Popen[bytes]], state: Path, node_id: str = "node-1"
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(state), node_id],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    processes.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"locked\n"
    return proc


def test_the_lock_names_its_holder_and_refuses_a_second_holder(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "node-1"
    assert holder(state) is None  # no folder yet: nobody runs
    first = locker(processes, state)
    assert holder(state) == first.pid
    assert read_pid_file(state / "node.pid") == read_pid_file(state / LOCK_NAME)
    assert read_pid_file(state / "node.pid")[0] == first.pid  # type: ignore[index]
    with pytest.raises(NodeRunning, match=rf"node-1 is already running, pid {first.pid}\b"):
        StateLock(state, "node-1").acquire(patience=0.1)
    # A second process refuses too, before it writes anything: the pid file stays the first's.
    second = subprocess.run(
        [sys.executable, "-c", LOCKER, str(state), "node-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0 and f"node-1 is already running, pid {first.pid}" in second.stderr
    assert read_pid_file(state / "node.pid")[0] == first.pid  # type: ignore[index]
    # SIGKILL: the kernel drops the lock; the pid file left behind names a dead process.
    first.kill()
    first.wait()
    assert holder(state) is None
    with StateLock(state, "node-1") as mine:
        assert mine.held and read_pid_file(state / "node.pid")[0] == os.getpid()  # type: ignore[index]
    assert not (state / "node.pid").exists() and (state / LOCK_NAME).exists()


CLUSTER = """\
cluster:
  state: state
  keys: keys
nodes:
  - {id: node-1, host: 127.0.0.1, port: 17201}
  - {id: node-2, host: 127.0.0.1, port: 17202}
"""


@pytest.fixture
def config(tmp_path: Path) -> ClusterConfig:
    path = tmp_path / "cluster.yml"
    path.write_text(CLUSTER)
    return load_cluster(path)


def test_the_launcher_finds_a_node_it_did_not_start_and_stops_it(
    config: ClusterConfig, processes: list[subprocess.Popen[bytes]]
) -> None:
    outside = locker(processes, config.state_dir("node-2"), "node-2")
    config.pid_path("node-2").unlink()  # not even the pid file: the lock alone tells
    launcher = ProcessLauncher(
        config, command=lambda node_id: [sys.executable, "-c", "import time; time.sleep(600)"]
    )
    try:
        assert launcher.pid("node-2") == outside.pid
        with pytest.raises(ConfigError, match=rf"node-2 is already running, pid {outside.pid}\b"):
            launcher.start("node-2")
        assert launcher.up(["node-2"]) == {"node-2": outside.pid}  # no duplicate
        assert not config.log_path("node-2").exists()  # refused before touching anything
        assert launcher.down(["node-2"], timeout=5) == {"node-2": True}
        outside.wait(timeout=10)  # (its status was reaped by the launcher's liveness check)
        assert gone(outside.pid)
        assert holder(config.state_dir("node-2")) is None and launcher.pid("node-2") is None
    finally:
        launcher.down(timeout=0.5)


# -- a real node, started by `tars node start` -------------------------------------------------


@pytest.fixture
def real(tmp_path: Path) -> ClusterConfig:
    """A one-node cluster.yml with its keys, for a real node that does not evolve."""
    config = load_cluster(write_cluster(tmp_path / "work", 1, TINY, 1, 1, 3, 1))
    config.ensure_keys()
    return config


def node_start(config: ClusterConfig, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "node",
        "start",
        "--config",
        str(config.path),
        "--id",
        "node-1",
        "--no-evolve",
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """The lock and pid files (the running node itself writes its store and journal)."""
    return {
        name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns)
        for name in (LOCK_NAME, "node.pid")
    }


@pytest.mark.timeout(180)
def test_a_node_started_by_hand_is_not_started_twice_and_cluster_down_stops_it(
    real: ClusterConfig, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = (tmp_path / "by-hand.log").open("wb")
    node = subprocess.Popen(
        node_start(real), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    processes.append(node)
    state = real.state_dir("node-1")
    wait_for(lambda: holder(state) == node.pid or node.poll() is not None, "the node's lock")
    launcher = ProcessLauncher(real)
    launcher.wait_ready("node-1", timeout=90)  # found by its lock, answering status
    assert read_pid_file(real.pid_path("node-1"))[0] == node.pid  # type: ignore[index]
    assert holder(state) == node.pid
    before = snapshot(state)

    # `tars cluster up` leaves it alone and says so: no duplicate, the pid file is untouched.
    runner = CliRunner()
    up = runner.invoke(cluster_app, ["up", "--config", str(real.path), "--no-wait"])
    assert up.exit_code == 0, up.output
    assert f"node-1 is already running, pid {node.pid}" in up.stdout
    assert "started node-1" not in up.stdout
    # A second `tars node start` refuses before touching anything.
    again = subprocess.run(node_start(real), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode != 0
    assert f"node-1 is already running, pid {node.pid}" in again.stderr, again.stderr
    assert "tars cluster down" in again.stderr
    assert snapshot(state) == before
    assert read_pid_file(real.pid_path("node-1"))[0] == node.pid  # type: ignore[index]

    # `tars cluster down` stops the node it never started; the node leaves no pid file.
    down = runner.invoke(cluster_app, ["down", "--config", str(real.path)])
    assert down.exit_code == 0, down.output
    assert f"stopped node-1 (pid {node.pid})" in down.stdout
    assert node.wait(timeout=30) == 0  # stopped cleanly by SIGTERM, not killed
    wait_for(lambda: gone(node.pid), "the node's exit")
    assert holder(state) is None and not real.pid_path("node-1").exists()
    assert b"node-1 stopped cleanly" in (tmp_path / "by-hand.log").read_bytes()


def test_a_folder_that_cannot_be_locked_is_one_line_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"node-1: cannot lock its state folder /proc/tars-"):
        StateLock(Path("/proc/tars-nowhere/node-1"), "node-1").acquire()
