"""A run's peak memory: every process of the run together, from its memory cgroup.

Two processes holding 48 MiB each at the same moment are a 96 MiB run, though neither
process alone ever was; where the cgroup gives no figure the run has none: no other figure
(``ru_maxrss``, the largest single process) would be right.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.cgroups import RunCgroup
from runtime.sandbox import Sandbox, SandboxLimits

#: two children each fill 48 MiB, say so, and hold it until the parent lets them go
TWO_AT_ONCE = textwrap.dedent(
    """
    import subprocess, sys
    child = "b = b'x' * (48 << 20); print('ready', flush=True); sys.stdin.read()"
    kids = [subprocess.Popen([sys.executable, "-c", "import sys; " + child],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2)]
    for kid in kids:
        assert kid.stdout.readline().strip() == b"ready"
    for kid in kids:
        kid.stdin.close()
        kid.wait()
    """
)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sandbox") as box:
        yield box


def run(sandbox: Sandbox, code: str) -> float:
    with sandbox.workspace({"main.py": code}) as workdir:
        result = sandbox.run(workdir, ["python", "main.py"], SandboxLimits(memory_mb=512))
    assert result.ok, result.detail
    assert result.peak_memory_mb is not None
    return result.peak_memory_mb


def test_the_peak_counts_every_process_of_the_run_together(sandbox: Sandbox) -> None:
    idle = run(sandbox, "x = 1\n")
    both = run(sandbox, TWO_AT_ONCE)
    assert idle < 48, idle
    assert both >= 96, both  # two 48 MiB processes at once: one run of at least 96 MiB


def test_without_a_cgroup_figure_a_run_has_no_peak_not_a_wrong_one(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ru_maxrss`` would be wrong both ways: bwrap's pid namespace hides the command from
    it, and outside the jail it keeps the node's own memory copied at the fork."""
    monkeypatch.setattr(RunCgroup, "peak_memory_bytes", lambda self: None)
    with Sandbox(tmp_path / "bare", "none", accept_weak_isolation=True) as bare:
        for box in (sandbox, bare):
            with box.workspace({"main.py": TWO_AT_ONCE}) as workdir:
                result = box.run(workdir, ["python", "main.py"], SandboxLimits(memory_mb=512))
            assert result.ok and result.peak_memory_mb is None, (box.isolation, result)


def test_a_group_without_the_file_gives_no_figure(tmp_path: Path) -> None:
    group = RunCgroup.__new__(RunCgroup)
    group.layout, group.paths = "v2", {"memory": tmp_path}
    assert group.peak_memory_bytes() is None  # a v2 kernel before 5.19 has no memory.peak
    (tmp_path / "memory.peak").write_text("123456\n")
    assert group.peak_memory_bytes() == 123456
    group.layout = "v1"
    (tmp_path / "memory.max_usage_in_bytes").write_text("not a number\n")
    assert group.peak_memory_bytes() is None
