"""The starter that waits in the next run's cgroups (runtime/sandbox_starter.py).

What it must not change is checked from the host: a run started by a starter has its
processes in its own groups (read in ``/proc/<pid>/cgroup`` while it sleeps) with the
run's limits, two runs in a row get two fresh groups, a starter nobody used is gone
with its groups when the Sandbox closes (or is collected, or its node is killed), and
a starter that died before its run costs that run nothing but the saving.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import (
    CPUACCT_ROOT,
    MEMORY_ROOT,
    PIDS_ROOT,
    STANDBY_PREFIX,
    reap_stale_cgroups,
)
from runtime.sandbox import RunResult, Sandbox, SandboxLimits
from runtime.sandbox_starter import StarterPool
from runtime.testing import processes_with

if os.geteuid() != 0 or not MEMORY_ROOT.is_dir() or not Path("/usr/bin/bwrap").exists():
    pytest.skip("the starter needs root, bwrap and cgroup v1 here", allow_module_level=True)

ROOTS = (PIDS_ROOT, MEMORY_ROOT, CPUACCT_ROOT)
LIMITS = SandboxLimits(wall_seconds=20, memory_mb=300, processes=12)


def pool_of(sandbox: Sandbox) -> StarterPool:
    assert sandbox.jailed  # the probe makes the pool
    pool = sandbox._starters
    assert pool is not None, "the full jail on cgroup v1 keeps a starter"
    return pool


def candidates_with(marker: str) -> list[int]:
    """The candidate's own processes (uid 65534), not the jail's wrappers that carry its argv."""
    found = []
    for pid in processes_with(marker):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        if uid == "65534":
            found.append(pid)
    return found


def groups_of(pid: int) -> dict[str, str]:
    """controller -> group path, from the host's view of ``pid``."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            found[controller] = path
    return found


def standby_groups(prefix: str) -> list[Path]:
    """The standby groups whose name starts with ``prefix``, in every hierarchy."""
    return [p for root in ROOTS for p in root.glob(f"{prefix}*")]


def run_sleeper(
    sandbox: Sandbox, starter: int | None = None
) -> tuple[dict[str, str], Path, RunResult]:
    """Run a candidate that sleeps; check its limits from the host; return its groups.

    ``starter``: the pid expected to have become the run's bwrap, in the same groups.
    """
    marker = f"tars-starter-{uuid.uuid4().hex}"
    code = "import sys, time\ntime.sleep(float(sys.argv[1]))\nprint('woke')\n"
    results: list[RunResult] = []
    with sandbox.workspace({"c.py": code}) as workdir:
        thread = threading.Thread(
            target=lambda: results.append(
                sandbox.run(workdir, ["python", "c.py", "1.5", marker], LIMITS)
            )
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not candidates_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = candidates_with(marker)
        assert pids, "the candidate never started"
        groups = groups_of(pids[0])
        group = PIDS_ROOT / groups["pids"].lstrip("/")
        limits = (group / "pids.max").read_text().strip()
        memory = (MEMORY_ROOT / groups["memory"].lstrip("/") / "memory.limit_in_bytes").read_text()
        assert limits == str(LIMITS.processes + 4)
        if starter is not None:
            assert os.path.basename(os.readlink(f"/proc/{starter}/exe")) == "bwrap"
            assert groups_of(starter) == groups
        assert int(memory) == LIMITS.memory_mb << 20
        thread.join(timeout=30)
    assert results and results[0].ok and results[0].stdout == "woke\n", results
    return groups, group, results[0]


def wait_dead(pid: int) -> None:
    """Until ``pid`` has exited (a zombie counts: its parent may not have reaped it yet)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    pytest.fail(f"process {pid} is still alive")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path / "sandbox")
    assert box.jailed
    yield box
    box.close()


def test_a_run_from_a_starter_is_in_its_own_groups_with_its_limits(sandbox: Sandbox) -> None:
    starter = pool_of(sandbox).wait_ready()
    assert starter is not None
    groups, group, _ = run_sleeper(sandbox, starter)
    name = f"/tars-{os.getpid()}-"
    assert all(groups[c].startswith(name) for c in ("pids", "memory", "cpuacct")), groups
    assert groups["pids"] == groups["memory"] == groups["cpuacct"]
    assert not Path(f"/proc/{starter}").exists()
    assert not group.exists()  # the run's groups went with the run


def test_two_runs_in_a_row_each_get_fresh_groups(sandbox: Sandbox) -> None:
    pool = pool_of(sandbox)
    first_starter = pool.wait_ready()
    first, first_group, _ = run_sleeper(sandbox, first_starter)
    second_starter = pool.wait_ready()
    second, second_group, _ = run_sleeper(sandbox, second_starter)
    assert first_starter is not None and second_starter is not None
    assert first_starter != second_starter  # a starter serves one run
    assert first["pids"] != second["pids"]
    assert not first_group.exists() and not second_group.exists()


def test_a_starter_left_at_close_is_killed_and_its_groups_removed(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "sandbox")
    pid = pool_of(box).wait_ready()
    groups = standby_groups(pool_of(box)._name)
    assert pid is not None and len(groups) == 3
    assert all(str(pid) in (g / "cgroup.procs").read_text().split() for g in groups)
    box.close()
    assert not Path(f"/proc/{pid}").exists()
    assert not any(g.exists() for g in groups)


def test_a_sandbox_never_closed_takes_its_starter_with_it(tmp_path: Path) -> None:
    box = Sandbox(tmp_path / "sandbox")
    pid = pool_of(box).wait_ready()
    groups = standby_groups(pool_of(box)._name)
    assert pid is not None and len(groups) == 3
    del box
    gc.collect()
    assert not Path(f"/proc/{pid}").exists()
    assert not any(g.exists() for g in groups)


def test_a_starter_killed_before_its_run_is_replaced(sandbox: Sandbox) -> None:
    pool = pool_of(sandbox)
    pid = pool.wait_ready()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    with sandbox.workspace({"c.py": "print('ran')\n"}) as workdir:
        result = sandbox.run(workdir, ["python", "c.py"], LIMITS)
    assert result.ok and result.stdout == "ran\n", result
    again = pool.wait_ready()
    assert again is not None and again != pid
    groups, _, _ = run_sleeper(sandbox, again)
    assert groups["pids"].startswith(f"/tars-{os.getpid()}-")


def test_stdin_and_results_reach_a_starter_run(sandbox: Sandbox) -> None:
    """The pipes a starter made in advance are the run's: stdin in, profile rows out."""
    assert pool_of(sandbox).wait_ready() is not None
    code = "import sys\nprint(sys.stdin.read().upper())\n"
    with sandbox.workspace({"c.py": code}) as workdir:
        result = sandbox.run(workdir, ["python", "c.py"], LIMITS, stdin="piped")
        assert pool_of(sandbox).wait_ready() is not None
        _, rows = sandbox.run_profiled(workdir, ["python", "c.py"], LIMITS)
    assert result.stdout == "PIPED\n", result
    assert any(row["file"] == "c.py" for row in rows)


def test_arguments_and_environment_reach_a_starter_run_intact(sandbox: Sandbox) -> None:
    assert pool_of(sandbox).wait_ready() is not None
    code = "import json, os, sys\nprint(json.dumps([sys.argv[1:], os.environ['TARS_X']]))\n"
    args = ["a b", "é\nz", "", "--x=1"]
    with sandbox.workspace({"c.py": code}) as workdir:
        result = sandbox.run(workdir, ["python", "c.py", *args], LIMITS, env={"TARS_X": "1=2\n3"})
    assert result.ok and json.loads(result.stdout) == [args, "1=2\n3"], result


def test_what_popen_refuses_is_refused_and_the_starter_goes(sandbox: Sandbox) -> None:
    pid = pool_of(sandbox).wait_ready()
    before = {p.name for p in PIDS_ROOT.glob(f"tars-{os.getpid()}-*")}
    with sandbox.workspace({"c.py": "print('ran')\n"}) as workdir:
        with pytest.raises(ValueError):
            sandbox.run(workdir, ["python", "c.py"], LIMITS, env={"A=B": "1"})
        assert pid is not None and not Path(f"/proc/{pid}").exists()
        assert {p.name for p in PIDS_ROOT.glob(f"tars-{os.getpid()}-*")} <= before
        assert sandbox.run(workdir, ["python", "c.py"], LIMITS).stdout == "ran\n"


def test_a_starter_run_has_the_signal_dispositions_of_a_direct_one(sandbox: Sandbox) -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an exec keeps what is ignored: the starter
    restores them, so a file-size limit still kills (as it does for a direct start)."""
    argv = ["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status"]
    with sandbox.workspace({"c.py": ""}) as workdir:
        assert pool_of(sandbox).wait_ready() is not None
        from_starter = sandbox.run(workdir, argv, LIMITS)
        pool_of(sandbox).close()  # from here on, runs start the ordinary way
        direct = sandbox.run(workdir, argv, LIMITS)
    assert from_starter.ok and direct.ok, (from_starter, direct)
    assert from_starter.stdout == direct.stdout and "SigIgn" in direct.stdout


OWNER = """
import sys, time
sys.path.insert(0, {project!r})
from pathlib import Path
from runtime.sandbox import Sandbox
box = Sandbox(Path({root!r}))
box.isolation
print(box._starters.wait_ready(), flush=True)
time.sleep(600)
"""


def test_kill_9_of_the_owner_takes_its_waiting_starter_and_groups(tmp_path: Path) -> None:
    root = tmp_path / "sandbox"
    project = str(Path(__file__).resolve().parent.parent)
    code = OWNER.format(project=project, root=str(root))
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        starter = int(owner.stdout.readline())
        groups = standby_groups(f"{STANDBY_PREFIX}{owner.pid}-")
        assert len(groups) == 3
        reap_stale_cgroups()  # what another Sandbox's start does: a live owner's stay
        assert all(g.exists() for g in groups)
        assert str(starter) in (groups[0] / "cgroup.procs").read_text().split()
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
    finally:
        owner.kill()
        owner.wait()
    wait_dead(starter)  # its control pipe closed: it exits
    with Sandbox(root) as fresh:
        fresh.reaper.join(timeout=30)
    assert not any(g.exists() for g in groups)
