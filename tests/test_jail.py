"""Issue 9, item 1: each attack a candidate made on a node, written as a genome's test or
benchmark and run through the real Incubator code (``run_tests``, ``incubate``) in the
real jail (bwrap, cgroups, real children), and through a real node's validation path.

Every attack is contained under the default isolation: ``Sandbox(root)`` with nothing
said.  What "contained" means is checked on the host (files, /proc, cgroupfs), never
only by what the candidate claims.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from evolution.errors import SandboxError
from evolution.manifest import Manifest, parse_manifest
from runtime.cgroups import MEMORY_ROOT, PIDS_ROOT
from runtime.incubation import incubate, run_tests
from runtime.keys import write_keypair
from runtime.sandbox import Sandbox
from runtime.testing import processes_with

ROOT = os.geteuid() == 0

if not ROOT or not Path("/sys/fs/cgroup/memory").is_dir() or not Path("/usr/bin/bwrap").exists():
    pytest.skip(
        "the full jail needs root, bwrap and cgroup v1 memory here", allow_module_level=True
    )


def manifest(test: str = "attack.py", bench: str = "bench.py", **limits: int) -> Manifest:
    table = "\n".join(f"{key} = {value}" for key, value in {"wall_seconds": 20, **limits}.items())
    return parse_manifest(
        textwrap.dedent(f"""
            [genome]
            name = "attack"
            sources = ["*.py"]
            [commands]
            test = ["python", "{test}"]
            bench = ["python", "{bench}"]
            [fitness]
            metric = "seconds"
            direction = "minimize"
            rounds = 2
            [limits]
            {table}
        """)
    )


def genome(attack: str, bench: str = "print('{\"seconds\": 1.0}')\n") -> dict[str, str]:
    return {"attack.py": textwrap.dedent(attack), "bench.py": textwrap.dedent(bench)}


def report(stdout: str) -> dict[str, str]:
    """The attack's own account: the last JSON line it printed."""
    return json.loads(stdout.strip().splitlines()[-1])


class NodeState:
    """A node's state folder as `tars keys` and a node make it: keys, store, journal."""

    def __init__(self, base: Path) -> None:
        self.dir = base / "node-1"
        self.dir.mkdir(parents=True)
        self.keys = base / "keys"
        write_keypair(self.keys, "node-1")
        self.secret_file = self.keys / "node-1.key_secret"
        self.secret_text = self.secret_file.read_text()
        self.secret_key = self.secret_text.split('secret-key = "')[1].split('"')[0]
        from events.store import GenomeStore

        self.store_path = self.dir / "store.db"
        GenomeStore.open(f"sqlite:///{self.store_path}").close()
        self.planted = base / f"planted-{uuid.uuid4().hex}"
        self.planted.write_text("TOP-SECRET-" + uuid.uuid4().hex)


@pytest.fixture
def state(tmp_path: Path) -> NodeState:
    return NodeState(tmp_path)


@pytest.fixture
def sandbox(state: NodeState) -> Iterator[Sandbox]:
    with Sandbox(state.dir / "sandbox") as box:  # the default: nothing accepted
        assert box.jailed
        yield box


READ_ATTACK = """
    import json, sys
    seen = {}
    for path in PATHS:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            seen[path] = "read " + data[:80].decode("latin-1")
            print(data.decode("latin-1"), file=sys.stderr)  # a test that prints it on failure
        except OSError as exc:
            seen[path] = "refused " + exc.strerror
    print(json.dumps(seen))
    sys.exit(1 if any(v.startswith("read") for v in seen.values()) else 0)
"""


def test_secrets_outside_the_workdir_cannot_be_read(state: NodeState, sandbox: Sandbox) -> None:
    paths = [
        str(state.planted), str(state.secret_file), str(state.store_path), "/etc/shadow",
        "/root/.bash_history", "/proc/1/environ", os.path.realpath(__file__),
    ]  # fmt: skip
    result = run_tests(sandbox, genome(READ_ATTACK.replace("PATHS", repr(paths))), manifest())
    assert result.ok, result
    seen = report(result.stdout)
    assert all(v.startswith("refused") for v in seen.values()), seen
    for secret in (state.secret_key, state.planted.read_text()):
        assert secret not in result.stdout + result.stderr


def test_a_key_that_leaks_anyway_is_scrubbed_from_the_output(state: NodeState) -> None:
    """Defence in depth: the node's key text never reaches a result (and so an event)."""
    leaky = genome(f"""
        import sys
        print("key: {state.secret_key}")
        print("file: " + {state.secret_text!r}, file=sys.stderr)
        sys.exit("{state.secret_key}")
    """)
    with Sandbox(state.dir / "sb2", secrets=[state.secret_text]) as box:
        result = run_tests(box, leaky, manifest())
    assert not result.ok
    for text in (result.stdout, result.stderr, result.detail):
        assert state.secret_key not in text
    assert "key: [secret removed]" in result.stdout
    assert result.detail == "exit code 1: [secret removed]"


def test_writes_outside_do_not_land(state: NodeState, sandbox: Sandbox) -> None:
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    pth = Path(site) / f"tars-evil-{uuid.uuid4().hex}.pth"
    targets = [
        f"/etc/tars-evil-{uuid.uuid4().hex}", str(state.dir / "evil"), str(state.keys / "evil"),
        str(pth), str(state.dir.parent / "evil"), "/usr/tars-evil", "/root/evil",
    ]  # fmt: skip
    attack = f"""
        import json
        seen = {{}}
        for path in {targets!r}:
            try:
                with open(path, "w") as fh:
                    fh.write("import os; os.system('touch /tmp/pwned')\\n")
                seen[path] = "wrote"
            except OSError as exc:
                seen[path] = "refused " + exc.strerror
        print(json.dumps(seen))
    """
    result = run_tests(sandbox, genome(attack), manifest())
    assert result.ok, result
    assert all(v.startswith("refused") for v in report(result.stdout).values())
    for target in targets:
        assert not Path(target).exists(), target
    assert state.secret_file.read_text() == state.secret_text


def test_cgroupfs_is_out_of_reach(sandbox: Sandbox) -> None:
    attack = """
        import json, os
        seen = {"whoami": os.getuid(), "sys": os.path.exists("/sys"), "cgroup": open("/proc/self/cgroup").read()}
        for path in ("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                open(path, "w").write("max")
                seen[path] = "wrote"
            except OSError as exc:
                seen[path] = "refused " + exc.strerror
        try:
            os.mkdir("/sys")
            seen["mkdir"] = "made"
        except OSError as exc:
            seen["mkdir"] = "refused " + exc.strerror
        print(json.dumps(seen))
    """
    before = {p.name for p in PIDS_ROOT.iterdir()}
    result = run_tests(sandbox, genome(attack), manifest())
    seen = report(result.stdout)
    assert seen["whoami"] == 65534 and seen["sys"] is False
    assert "pids:/tars-" in seen["cgroup"]  # it is in the run's group (it may read its name)
    assert seen["mkdir"].startswith("refused")
    assert all(seen[p].startswith("refused") for p in seen if p.startswith("/sys"))
    assert {p.name for p in PIDS_ROOT.iterdir()} - before == set()


def test_raising_pids_max_does_not_lift_the_fork_limit(sandbox: Sandbox) -> None:
    attack = """
        import glob, os, time
        for path in glob.glob("/sys/fs/cgroup/**/pids.max", recursive=True):
            try:
                open(path, "w").write("max")
            except OSError:
                pass
        while True:
            if os.fork() == 0:
                time.sleep(1000)
    """
    result = run_tests(sandbox, genome(attack), manifest(processes=16, wall_seconds=10))
    assert result.failure == "processes", result


def test_the_parent_cannot_be_killed(state: NodeState, sandbox: Sandbox) -> None:
    attack = """
        import json, os, signal
        seen = {}
        for name, pid in (("parent", os.getppid()), ("init", 1), ("everyone", -1)):
            try:
                os.kill(pid, signal.SIGKILL)
                seen[name] = "sent"
            except OSError as exc:
                seen[name] = "refused " + exc.strerror
        print(json.dumps(seen))
    """
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        result = run_tests(sandbox, genome(attack), manifest())
        assert runner.poll() is None  # a host process beside the node: untouched
    finally:
        runner.kill()
        runner.wait()
    seen = report(result.stdout)
    assert seen["parent"].startswith("refused") and seen["init"].startswith("refused"), seen
    assert result.ok  # the run itself (and so the sandbox runner) survived its own attack


def test_no_daemon_outlives_the_run(sandbox: Sandbox) -> None:
    marker = f"tars-daemon-{uuid.uuid4().hex}"
    bench = f"""
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(1000)", "{marker}"])
            os._exit(0)
        time.sleep(0.5)
        print('{{"seconds": 1.0}}')
    """
    found = incubate(sandbox, manifest(), "c", genome("pass", bench), genome("pass", bench))
    assert found.failure is None, found
    assert processes_with(marker) == []


@pytest.mark.parametrize("where", ["workdir", "/tmp", "/dev/shm"])
def test_filling_the_disk_stops_at_the_quota(where: str, state: NodeState) -> None:
    attack = f"""
        import os
        folder = "{where}" if "{where}" != "workdir" else "."
        for i in range(40):  # 40 x 8 MiB: past a 64 MiB quota, each file under file_mb
            with open(os.path.join(folder, f"fill-{{i}}"), "wb") as fh:
                fh.write(b"x" * (8 << 20))
    """
    root = state.dir / "sandbox"
    with Sandbox(root, disk_mb=64) as box:
        result = run_tests(box, genome(attack), manifest(file_mb=16, memory_mb=512))
    assert result.failure == "disk", result
    assert "disk quota" in result.detail and "64 MB" in result.detail
    leftovers = [
        p for p in root.rglob("*")
        if not p.is_symlink() and p.is_file() and p.stat().st_size > 1 << 20
    ]  # fmt: skip
    assert leftovers == []
    assert not list(root.glob("ws-*"))


def test_memory_is_limited_for_all_processes_together(sandbox: Sandbox) -> None:
    """3 x 400 MB in three processes against a 1 GB limit: each is under RLIMIT_AS."""
    attack = """
        import os, sys, time
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                block = bytearray(b"x" * (400 << 20))
                time.sleep(5)
                os._exit(0)
            children.append(pid)
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
        sys.exit(1 if any(statuses) else 0)
    """
    result = run_tests(sandbox, genome(attack), manifest(memory_mb=1024, wall_seconds=30))
    assert result.failure == "memory", result
    assert "together" in result.detail and "1024 MB" in result.detail
    assert not [p for p in MEMORY_ROOT.glob(f"tars-{os.getpid()}-*")]


OWNER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {project!r})
from runtime.sandbox import Sandbox, SandboxLimits
box = Sandbox(Path({root!r}))
with box.workspace({{"c.py": "import time; time.sleep(1000)"}}) as wd:
    print("running", flush=True)
    box.run(wd, ["python", "c.py", {head!r} + {tail!r}], SandboxLimits(wall_seconds=600))
"""


def test_kill_9_of_the_owner_leaves_no_candidate_and_the_next_start_cleans_up(
    state: NodeState,
) -> None:
    root = state.dir / "sandbox"
    marker = f"tars-sleeper-{uuid.uuid4().hex}"
    project = str(Path(__file__).resolve().parent.parent)
    # the marker is put together in the owner, so only the candidate's argv carries it
    code = OWNER.format(project=project, root=str(root), head=marker[:12], tail=marker[12:])
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        _kill_the_owner(owner, root, marker)
    finally:
        owner.kill()
        owner.wait()


def _kill_the_owner(owner: subprocess.Popen[str], root: Path, marker: str) -> None:
    assert owner.stdout is not None and owner.stdout.readline().strip() == "running"
    deadline = time.monotonic() + 20
    while not processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker), "the candidate never started"
    groups = list(PIDS_ROOT.glob(f"tars-{owner.pid}-*")) + list(
        MEMORY_ROOT.glob(f"tars-{owner.pid}-*")
    )
    assert groups, (owner.pid, sorted(p.name for p in PIDS_ROOT.glob("tars-*")))
    os.kill(owner.pid, signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []
    stale = list(root.glob(f"ws-{owner.pid}-*"))
    assert stale  # kill -9 skipped the cleanup
    with Sandbox(root) as fresh:
        assert not any(p.exists() for p in stale)  # renamed aside at once
        fresh.reaper.join(timeout=30)
    assert not list(root.glob(".trash-*"))
    assert not any(g.exists() for g in groups)


def test_validation_on_a_real_node_cannot_read_its_keys_or_store(
    state: NodeState, tmp_path: Path
) -> None:
    """The path a peer's proposal takes on a node: Validate → Validator → run_tests."""
    from actors.messages import Validate
    from actors.validator import Validator
    from evolution.patch import make_patch
    from evolution.tree import version_id
    from node import Node, NodeConfig

    paths = [str(state.secret_file), str(state.store_path), str(state.planted)]
    parent = genome("print('{}')\n")
    attack = genome(READ_ATTACK.replace("PATHS", repr(paths)))
    config = NodeConfig("node-1", f"sqlite:///{state.store_path}", state.dir)
    with Node(config) as node:
        assert node.sandbox.jailed
        node.supervisor.start("validator", lambda: Validator.start(node.sandbox))
        message = Validate(
            "attack", "p1", version_id(attack), manifest(), parent, make_patch(parent, attack)
        )
        verdict = node.supervisor.ask("validator", message)
    assert verdict.yes, verdict  # every read was refused, so the attack's test passed
    assert state.secret_key not in verdict.reason


# -- refusing weaker isolation ------------------------------------------------------


def _path_without_bwrap(tmp_path: Path) -> str:
    """A PATH with every tool the sandbox uses except bwrap (bubblewrap "not installed")."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("sh", "setpriv", "prlimit", "unshare", "true", "cp"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_without_bwrap_the_sandbox_refuses_and_says_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_without_bwrap(tmp_path))
    box = Sandbox(tmp_path / "sb")
    with pytest.raises(SandboxError) as refused:
        run_tests(box, genome("print('ran')"), manifest())
    assert "refusing to run candidate code" in str(refused.value)
    assert "bwrap: not installed" in str(refused.value)
    assert "apt-get install -y bubblewrap" in (refused.value.hint or "")
    assert "--accept-weak-isolation" in (refused.value.hint or "")
    with pytest.raises(SandboxError):
        box.isolation  # noqa: B018 - a node asks this at start and stops there


@pytest.mark.parametrize("mode", ["none", "unshare"])
def test_weaker_isolation_runs_only_when_accepted_and_says_weak(mode: str, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="refusing to run candidate code"):
        run_tests(Sandbox(tmp_path / "a", mode), genome("print('ran')"), manifest())
    box = Sandbox(tmp_path / "b", mode, accept_weak_isolation=True)
    assert box.isolation.startswith("weak isolation (accepted): ")
    assert not box.jailed
    result = run_tests(box, genome("print('ran')"), manifest())
    assert result.ok and result.stdout == "ran\n"


# -- the isolation in force, where a user sees it -------------------------------------


def test_a_real_node_logs_and_reports_its_isolation(tmp_path: Path) -> None:
    """`tars node start` writes the line to node.log; `status` (so `cluster status`) has it."""
    from swarmkit import LocalSwarm

    from cli.cluster_view import isolation_lines

    swarm = LocalSwarm(tmp_path, nodes=1, cycles=1)
    try:
        swarm.up()
        status = swarm.status("node-1")
        assert status is not None
        assert status["isolation"].startswith("jail: bwrap, uid 65534, memory 1 GiB/run")
        row = {"node": "node-1", "up": True, "isolation": status["isolation"]}
        assert isolation_lines([row]) == [f"node-1 candidate isolation: {status['isolation']}"]
    finally:
        swarm.down()
    log = swarm.config.log_path("node-1").read_text()
    assert "candidate isolation: jail: bwrap, uid 65534" in log


def test_older_leftovers_are_reaped_and_live_ones_kept(tmp_path: Path) -> None:
    """`ws-XXXX` (no owner, as older TARS named them) older than a minute goes; a live
    process's workspace stays; deletion happens off the caller's thread."""
    root = tmp_path / "sandbox"
    legacy = root / "ws-0a1b2c3d"
    (legacy / "deep").mkdir(parents=True)
    (legacy / "deep" / "big").write_bytes(b"x" * 1024)
    os.utime(legacy, (0, 0))
    fresh_legacy = root / "ws-9z8y7x6w"
    fresh_legacy.mkdir()
    mine = root / f"ws-{os.getpid()}-keepme"
    mine.mkdir()
    box = Sandbox(root)
    box.reaper.join(timeout=30)
    assert not legacy.exists() and not list(root.glob(".trash-*"))
    assert fresh_legacy.exists() and mine.exists()


def test_a_node_with_a_strict_umask_still_runs_candidates(tmp_path: Path) -> None:
    """The jail's nobody copies the tree: it must be readable whatever the node's umask."""
    tree = {**genome("import pkg.sub.m\n"), "pkg/__init__.py": "", "pkg/sub/__init__.py": "",
            "pkg/sub/m.py": "print('imported')\n"}  # fmt: skip
    old = os.umask(0o077)
    try:
        with Sandbox(tmp_path / "sb") as box:
            result = run_tests(box, tree, manifest())
    finally:
        os.umask(old)
    assert result.ok and result.stdout == "imported\n", result


def test_the_manifest_sets_the_disk_quota_of_a_run() -> None:
    from evolution.manifest import parse_manifest
    from runtime.sandbox_result import SandboxLimits

    text = (Path(__file__).parent / "data" / "tiny" / "genome.toml").read_text(encoding="utf-8")
    assert SandboxLimits.from_manifest(parse_manifest(text).limits).disk_mb == 512
    small = parse_manifest(text.replace("file_mb = 8", "file_mb = 8\ndisk_mb = 64"))
    assert SandboxLimits.from_manifest(small.limits).disk_mb == 64


def test_a_swarm_node_hands_its_own_and_the_admins_key_files_to_the_scrubber(
    tmp_path: Path,
) -> None:
    """What a swarm member tells its sandbox is secret: its key file and the admin's."""
    from cli.demo import write_cluster
    from node import _secrets
    from runtime.config import load_cluster
    from runtime.sandbox_result import SandboxLimits

    tiny = Path(__file__).parent / "data" / "tiny"
    config = load_cluster(write_cluster(tmp_path, 3, tiny, 1, 1, 3, 1))
    config.ensure_keys()
    secrets = _secrets(config, "node-1")
    own = (config.keys_dir / "node-1.key_secret").read_text(encoding="utf-8")
    admin = (config.keys_dir / "admin.key_secret").read_text(encoding="utf-8")
    assert secrets == (own, admin)
    other = (config.keys_dir / "node-2.key_secret").read_text(encoding="utf-8")
    assert other not in secrets
    secret_value = own.split('secret-key = "', 1)[1].split('"', 1)[0]
    with Sandbox(tmp_path / "sb", secrets=secrets) as box, box.workspace({}) as workdir:
        result = box.run(workdir, ["python", "-c", f"print({secret_value!r})"], SandboxLimits())
    assert secret_value not in result.stdout and "[secret removed]" in result.stdout
