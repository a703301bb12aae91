"""The sandbox contains each hazard a candidate can pose, in every isolation mode it offers.

Hazard tests run in each mode this machine supports (bwrap, unshare, none) so the
fallbacks are proven too, not only the preferred path.  Limits are tiny to keep the
file fast; the marker argument lets us find any process left behind by scanning /proc.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolution.errors import SandboxError
from runtime.sandbox import OUTPUT_LIMIT, RunResult, Sandbox, SandboxLimits, classify
from runtime.testing import processes_with

IS_ROOT = os.geteuid() == 0
SMALL = SandboxLimits(wall_seconds=1.5, cpu_seconds=10, memory_mb=256, processes=16, file_mb=1)

_cache: dict[str, Sandbox | str] = {}


def _sandbox_for(mode: str, root: Path) -> Sandbox:
    """One probed Sandbox per mode for the session; skip the mode if this machine refuses it."""
    cached = _cache.get(mode)
    if cached is None:
        try:
            # the fallbacks are what a weaker machine runs once the flag accepts them
            sb = Sandbox(root / mode, mode, accept_weak_isolation=mode != "bwrap")
            sb.isolation  # noqa: B018 - the probe raises when the mode is unavailable
            cached = sb
        except SandboxError as exc:
            cached = str(exc)
        _cache[mode] = cached
    if isinstance(cached, str):
        pytest.skip(f"isolation {mode!r} unavailable here: {cached}")
    return cached


@pytest.fixture(scope="session")
def sandbox_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sandboxes")
    yield root
    for sb in _cache.values():
        if isinstance(sb, Sandbox):
            sb.close()


@pytest.fixture(params=["bwrap", "unshare", "none"])
def any_sandbox(request: pytest.FixtureRequest, sandbox_root: Path) -> Sandbox:
    return _sandbox_for(request.param, sandbox_root)


@pytest.fixture(params=["bwrap", "unshare"])
def net_sandbox(request: pytest.FixtureRequest, sandbox_root: Path) -> Sandbox:
    return _sandbox_for(request.param, sandbox_root)


@pytest.fixture
def bwrap_sandbox(sandbox_root: Path) -> Sandbox:
    return _sandbox_for("bwrap", sandbox_root)


def _run_code(sb: Sandbox, code: str, limits: SandboxLimits = SMALL) -> tuple[RunResult, str]:
    marker = f"tars-marker-{uuid.uuid4().hex}"
    with sb.workspace({"candidate.py": textwrap.dedent(code)}) as workdir:
        result = sb.run(workdir, ["python", "candidate.py", marker], limits)
    return result, marker


needs_cgroup_as_root = pytest.mark.skipif(
    IS_ROOT and not os.access("/sys/fs/cgroup/pids", os.W_OK),
    reason="as root only a writable cgroup v1 pids controller bounds forks",
)


# -- the ordinary path -------------------------------------------------------------


def test_normal_command_returns_stdout_and_workspace_is_removed(bwrap_sandbox: Sandbox) -> None:
    with bwrap_sandbox.workspace({"pkg/hello.py": "print('hello from', __name__)\n"}) as workdir:
        assert (workdir / "pkg" / "hello.py").is_file()
        result = bwrap_sandbox.run(workdir, ["python", "pkg/hello.py"], SMALL)
    assert result.ok, result
    assert result.failure is None and result.returncode == 0
    assert result.stdout == "hello from __main__\n"
    assert result.argv == ("python", "pkg/hello.py")
    assert not workdir.exists()


def test_workspace_removed_even_when_child_locks_files(any_sandbox: Sandbox) -> None:
    code = "import os\nos.makedirs('d/e')\nopen('d/e/f','w').write('x')\nos.chmod('d/e/f', 0)\nos.chmod('d/e', 0o500)\nos.chmod('d', 0)\n"
    with any_sandbox.workspace({"c.py": code}) as workdir:
        assert any_sandbox.run(workdir, ["python", "c.py"], SMALL).ok
    assert not workdir.exists()


def test_environment_is_clean_and_stdin_is_passed(
    bwrap_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARS_SECRET_TOKEN", "leak")
    code = "import os, sys\nprint(sorted(os.environ))\nprint(os.environ['HOME'] == os.getcwd())\nprint(sys.stdin.read())\n"
    with bwrap_sandbox.workspace({"c.py": code}) as workdir:
        result = bwrap_sandbox.run(
            workdir, ["python", "c.py"], SMALL, env={"EXTRA": "1"}, stdin="piped"
        )
    assert result.ok, result
    names, home_ok, piped = result.stdout.splitlines()[:3]
    assert "TARS_SECRET_TOKEN" not in names
    allowed = {
        "EXTRA",
        "HOME",
        "LANG",
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONHASHSEED",
        "TMPDIR",
    }
    allowed |= {"PWD", "LC_CTYPE"}  # set by the cgroup-joining sh / by Python's C-locale coercion
    assert set(eval(names)) <= allowed  # noqa: S307 - our own repr
    assert {"HOME", "PATH", "TMPDIR", "EXTRA"} <= set(eval(names))  # noqa: S307
    assert home_ok == "True" and piped == "piped"


def test_failing_command_reports_exit_code(any_sandbox: Sandbox) -> None:
    result, _ = _run_code(any_sandbox, "raise SystemExit('bad things')\n")
    assert result.failure == "exit" and result.returncode == 1
    assert result.detail == "exit code 1: bad things"
    assert not result.ok


def test_isolation_line_names_what_is_in_force(bwrap_sandbox: Sandbox) -> None:
    # issue 9: the line names the full jail (it said "bwrap (read-only root, …)" when the
    # whole host was bound read-only)
    line = bwrap_sandbox.isolation
    assert line.startswith("jail: bwrap, uid 65534, memory 1 GiB/run, disk 512 MiB/run, no network")
    assert "pid namespace" in line
    if IS_ROOT:
        assert "cgroup (memory, pids, cpu)" in line
    assert "\n" not in line


def test_unknown_isolation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="unknown sandbox isolation"):
        Sandbox(tmp_path, "chroot")


def test_workspace_refuses_paths_that_leave_it(bwrap_sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError), bwrap_sandbox.workspace({"../evil.py": "x"}):
        pass


# -- the five hazards --------------------------------------------------------------


def test_busy_loop_is_killed_at_wall_limit(any_sandbox: Sandbox) -> None:
    result, marker = _run_code(any_sandbox, "while True:\n    pass\n")
    assert result.failure == "timeout", result
    assert result.returncode is None
    assert result.detail == "killed after 1.5 s wall time"
    assert 1.4 < result.wall_seconds < 4.0
    assert processes_with(marker) == []


def test_sleeper_ignoring_sigterm_and_its_children_are_killed(any_sandbox: Sandbox) -> None:
    code = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()  # try to leave the process group too
                time.sleep(1000)
        time.sleep(1000)
    """
    result, marker = _run_code(any_sandbox, code)
    assert result.failure == "timeout", result
    assert processes_with(marker) == []


def test_background_child_is_killed_when_main_exits(any_sandbox: Sandbox) -> None:
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(1000)\nprint('parent done')\n"
    result, marker = _run_code(any_sandbox, code)
    assert result.ok and result.stdout == "parent done\n", result
    assert result.wall_seconds < 1.5
    assert processes_with(marker) == []


def test_unbounded_allocation_fails_with_memory(any_sandbox: Sandbox) -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    code = "data = bytearray()\nwhile True:\n    data += b'x' * (8 << 20)\n"
    result, _ = _run_code(any_sandbox, code)
    assert result.failure == "memory", result
    assert result.detail == "ran out of memory (limit 256 MB)"
    assert resource.getrlimit(resource.RLIMIT_AS) == before  # the test process is unharmed
    assert len(bytearray(300 << 20)) == 300 << 20


@needs_cgroup_as_root
def test_fork_bomb_fails_and_leaves_nothing(any_sandbox: Sandbox) -> None:
    code = """
        import os, time
        while True:
            if os.fork() == 0:
                time.sleep(1000)
    """
    result, marker = _run_code(any_sandbox, code)
    assert result.failure == "processes", result
    assert result.detail.startswith("hit the process limit (16")
    assert processes_with(marker) == []


def test_socket_to_localhost_fails(net_sandbox: Sandbox) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'hi')\nprint('connected')\n"
        result, _ = _run_code(net_sandbox, code)
        assert result.failure == "exit", result
        assert "connected" not in result.stdout
        assert "Error" in result.detail  # ConnectionRefusedError / Network is unreachable
        with pytest.raises(BlockingIOError):
            server.accept()


@pytest.mark.parametrize("where", ["under-tmp", "outside-tmp"])
def test_writes_outside_the_workdir_do_not_land(
    where: str, bwrap_sandbox: Sandbox, tmp_path: Path
) -> None:
    """Under /tmp the neighbour lands in the private tmpfs; elsewhere the root is read-only."""
    sb, cleanup = bwrap_sandbox, None
    if where == "outside-tmp":
        cleanup = Path("/var/tmp") / f"tars-test-{uuid.uuid4().hex}"
        sb = Sandbox(cleanup, "bwrap")
    token = uuid.uuid4().hex
    escape_tmp = Path(f"/tmp/tars-escape-{token}")
    code = f"""
        import os, pathlib
        # the workdir's neighbour on the host (the child sees its workdir at a fixed path,
        # but a candidate could guess the host's)
        targets = ['/tmp/tars-escape-{token}', NEIGHBOUR]
        for target in targets:
            try:
                pathlib.Path(target).write_text('escaped')
                print('wrote', target)
            except OSError as exc:
                print('refused', target, exc.strerror)
        pathlib.Path('inside.txt').write_text('fine')
        print('inside', pathlib.Path('inside.txt').read_text())
    """
    try:
        with sb.workspace({}) as workdir:
            neighbour = workdir.parent / f"escape-{token}"
            (workdir / "candidate.py").write_text(
                textwrap.dedent(code).replace("NEIGHBOUR", repr(str(neighbour)))
            )
            result = sb.run(workdir, ["python", "candidate.py"], SMALL)
            # issue 9: the jail's workdir is a copy on its own tmpfs, so a write inside it
            # works but never reaches the host tree (this asserted the host file before)
            assert not (workdir / "inside.txt").exists()
        assert result.ok, result
        assert "inside fine" in result.stdout
        assert not escape_tmp.exists()
        assert not neighbour.exists()
        if where == "outside-tmp":  # the host's folders are not even there
            assert f"refused {neighbour}" in result.stdout
    finally:
        if cleanup is not None:
            sb.close()
            shutil.rmtree(cleanup, ignore_errors=True)


# -- the other limits --------------------------------------------------------------


def test_cpu_limit_reports_cpu(any_sandbox: Sandbox) -> None:
    limits = SandboxLimits(wall_seconds=5, cpu_seconds=1, memory_mb=256, processes=16, file_mb=1)
    result, _ = _run_code(any_sandbox, "while True:\n    pass\n", limits)
    assert result.failure == "cpu", result
    assert result.returncode == -signal.SIGXCPU


def test_big_file_reports_file_size(any_sandbox: Sandbox) -> None:
    result, _ = _run_code(any_sandbox, "open('big', 'wb').write(b'x' * (3 << 20))\n")
    assert result.failure == "file-size", result


def test_endless_output_is_cut_and_reported(bwrap_sandbox: Sandbox) -> None:
    result, marker = _run_code(
        bwrap_sandbox, "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    )
    assert result.failure == "output", result
    assert len(result.stdout) <= OUTPUT_LIMIT + 100
    assert result.stdout.endswith("[tars: output cut at 1024 KiB]\n")
    assert processes_with(marker) == []


def test_signal_death_is_reported(any_sandbox: Sandbox) -> None:
    result, _ = _run_code(any_sandbox, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert result.failure == "signal" and result.returncode == -signal.SIGSEGV, result
    assert result.detail == "killed by SIGSEGV"


# -- profiling ---------------------------------------------------------------------


def test_run_profiled_returns_rows_for_workdir_files(bwrap_sandbox: Sandbox) -> None:
    tree = {
        "logstats/__init__.py": "",
        "logstats/parse.py": "def parse_line(line):\n    return line.split()\n",
        "bench.py": (
            "import json\nfrom logstats.parse import parse_line\n"
            "for i in range(500):\n    parse_line(f'a b {i}')\n"
            "print(json.dumps({'seconds': 0.1}))\n"
        ),
    }
    with bwrap_sandbox.workspace(tree) as workdir:
        result, rows = bwrap_sandbox.run_profiled(workdir, ["python", "bench.py"], SMALL)
        leftovers = sorted(p.name for p in (workdir / ".tars-tmp").iterdir())
    assert result.ok, result
    assert result.argv == ("python", "bench.py")
    assert result.stdout.strip().endswith('{"seconds": 0.1}')
    row = next(r for r in rows if r["function"] == "parse_line")
    assert row == {**row, "file": "logstats/parse.py", "line": 1, "calls": 500}
    assert isinstance(row["tottime"], float) and isinstance(row["cumtime"], float)
    assert {r["file"] for r in rows} <= {"bench.py", "logstats/parse.py", "logstats/__init__.py"}
    assert leftovers == []


def test_run_profiled_keeps_the_exit_code(bwrap_sandbox: Sandbox) -> None:
    with bwrap_sandbox.workspace({"bench.py": "import sys\nsys.exit(3)\n"}) as workdir:
        result, _rows = bwrap_sandbox.run_profiled(workdir, ["python", "bench.py"], SMALL)
    assert result.failure == "exit" and result.returncode == 3


def test_run_profiled_refuses_non_python(bwrap_sandbox: Sandbox) -> None:
    with bwrap_sandbox.workspace({}) as workdir, pytest.raises(SandboxError):
        bwrap_sandbox.run_profiled(workdir, ["sh", "-c", "true"], SMALL)


# -- classification (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stderr", "cpu", "refused", "failure"),
    [
        (0, "", 0.0, 0, None),
        (-signal.SIGXCPU, "", 10.0, 0, "cpu"),
        (-signal.SIGKILL, "", 11.0, 0, "cpu"),
        (-signal.SIGKILL, "", 0.1, 0, "signal"),
        (-signal.SIGXFSZ, "", 0.1, 0, "file-size"),
        (1, "Traceback...\nMemoryError\n", 0.1, 0, "memory"),
        (1, "OSError: [Errno 27] File too large\n", 0.1, 0, "file-size"),
        (1, "BlockingIOError: [Errno 11] Resource temporarily unavailable\n", 0.1, 0, "processes"),
        (1, "anything", 0.1, 3, "processes"),
        (2, "usage: oops\n", 0.1, 0, "exit"),
    ],
)
def test_classify(code: int, stderr: str, cpu: float, refused: int, failure: str | None) -> None:
    assert classify(code, stderr, SMALL, cpu, refused)[0] == failure


def test_concurrent_runs_from_threads(bwrap_sandbox: Sandbox) -> None:
    """The Incubator runs a pool of sandboxes from threads: runs must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        with bwrap_sandbox.workspace({"c.py": f"print({i})\n"}) as workdir:
            return bwrap_sandbox.run(workdir, ["python", "c.py"], SMALL).stdout

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(one, range(8))) == [f"{i}\n" for i in range(8)]


def test_no_cgroups_left_behind(bwrap_sandbox: Sandbox) -> None:
    pids_root = Path("/sys/fs/cgroup/pids")
    if not pids_root.is_dir():
        pytest.skip("no cgroup v1 pids controller here")
    before = {p.name for p in pids_root.glob("tars-*")}  # other tests may kill -9 a node
    _run_code(bwrap_sandbox, "print('x')\n")
    assert {p.name for p in pids_root.glob("tars-*")} - before == set()


def test_stale_cgroups_of_a_killed_node_are_reaped(tmp_path: Path) -> None:
    from runtime.isolation import PIDS_ROOT, reap_stale_cgroups

    if os.geteuid() != 0 or not PIDS_ROOT.is_dir():
        pytest.skip("needs root and the cgroup v1 pids controller")
    stale = PIDS_ROOT / "tars-stale-test"
    stale.mkdir(exist_ok=True)
    os.utime(stale, (0, 0))
    assert reap_stale_cgroups() >= 1
    assert not stale.exists()


def test_isolation_line_states_refusals() -> None:
    from runtime.isolation import Isolation

    iso = Isolation(
        mode="none", bwrap=None, unshare=(), prlimit="/usr/bin/prlimit", sh="/bin/sh",
        cgroups=False, root=True,
        notes=("no network namespace: unshare refused (Operation not permitted); network not isolated",),
    )  # fmt: skip
    line = iso.describe()
    assert line.startswith("none + rlimits")
    assert "unshare refused (Operation not permitted); network not isolated" in line


def test_an_interpreter_under_tmp_stays_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node installed under /tmp (a CI clone) must still find its Python inside bwrap."""
    from runtime.isolation import bwrap_args

    venv = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        monkeypatch.setattr(sys, "prefix", str(venv))
        args = bwrap_args("bwrap", tmp_path, 1 << 20)
        tmpfs = args.index("/tmp", args.index("--tmpfs"))
        bind = args.index(str(venv))
        assert args[bind - 1] == "--ro-bind" and bind > tmpfs  # after the tmpfs, so it wins
    finally:
        shutil.rmtree(venv)


# -- the flag and the cluster.yml key that accept weaker isolation (issue 9) ------------


def test_cluster_yml_sandbox_section(tmp_path: Path) -> None:
    from runtime.cluster_config import sandbox_settings
    from runtime.config import parse_cluster

    text = "nodes:\n  - {id: node-1, port: 7101}\nsandbox:\n  accept_weak_isolation: true\n  disk_mb: 256\n"
    settings = sandbox_settings(parse_cluster(text, tmp_path / "cluster.yml"))
    assert settings.accept_weak_isolation and settings.disk_mb == 256
    plain = sandbox_settings(parse_cluster(text.split("sandbox:")[0], tmp_path / "cluster.yml"))
    assert not plain.accept_weak_isolation and plain.disk_mb == 512


@pytest.mark.parametrize(
    "command", [["demo"], ["evolve", "run"], ["evolve", "validate"], ["evolve", "analyze"],
                ["node", "start"]]
)  # fmt: skip
def test_every_command_that_runs_candidates_takes_the_flag(command: list[str]) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "--accept-weak-isolation" in result.output
