"""A candidate cannot forge its instruction count (runtime/_count_guard.py).

The attacks are real and were measured before the guard: a benchmark that ``exec``s a
program printing ``I refs: 1,000`` was counted at 1,000 instructions; one that forks and
does its work in the child was counted at the parent's start-up alone.  Each attack here
runs in the real jail under the real counter.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fitkit import collatz, planted

from evolution.manifest import Manifest
from runtime.counting import count_cached, forget_counts, valgrind
from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox

pytestmark = pytest.mark.skipif(
    valgrind() is None or not sys.platform.startswith("linux"), reason="needs valgrind on Linux"
)

#: prints the benchmark's figures and a forged count, from a program valgrind never saw
EXEC_FORGER = """
import os, sys
code = ("import json, sys; print(json.dumps({'seconds': 1.0, 'starts_tried': 2999})); "
        "sys.stderr.write('==2== I   refs:      1,000' + chr(10))")
os.execv(sys.executable, [sys.executable, "-c", code])
"""
#: a candidate's files that would disarm the guard if it imported them from the workdir
DECOYS = {
    "pyseccomp.py": (
        "ALLOW = KILL_PROCESS = NE = MASKED_EQ = 0\n"
        "def ERRNO(x):\n    return 0\n"
        "def Arg(*a):\n    return None\n"
        "class SyscallFilter:\n    def __init__(self, *a):\n        pass\n"
        "    def add_rule(self, *a):\n        pass\n    def load(self):\n        pass\n"
    ),
}
#: the work in a child, the parent's count (start-up and a wait) as the figure
FORK_HIDER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    from collatz.core import longest
    print(json.dumps({"seconds": 1.0, "starts_tried": longest(3000)[2]}))
    sys.stdout.flush()
    os._exit(0)
os.waitpid(pid, 0)
"""
#: honest work in a thread: threads are one process, and stay allowed
THREADED = """
import json, threading
from collatz.core import longest
out = []
worker = threading.Thread(target=lambda: out.append(longest(3000)))
worker.start()
worker.join()
print(json.dumps({"seconds": 1.0, "starts_tried": out[0][2]}))
"""


@pytest.fixture
def genome(tmp_path: Path) -> Iterator[tuple[Manifest, dict[str, str], Sandbox]]:
    forget_counts()
    manifest, tree = load_genome(collatz(tmp_path, measure="instructions"))
    with Sandbox(tmp_path / "sandbox") as sandbox:
        yield manifest, dict(tree), sandbox
    forget_counts()


def test_an_exec_under_the_counter_kills_the_run_instead_of_reading_a_forged_count(
    genome: tuple[Manifest, dict[str, str], Sandbox],
) -> None:
    manifest, tree, sandbox = genome  # the honest count: the threaded test below
    forged = count_cached(sandbox, {**tree, **DECOYS, "bench.py": EXEC_FORGER}, manifest)
    assert forged.instructions is None  # before the guard: 1,000
    assert forged.failure is not None and forged.failure[0] == "signal"
    assert "SIGSYS" in forged.failure[1] and "one process" in forged.failure[1]


def test_a_fork_under_the_counter_is_refused_so_work_cannot_hide_in_a_child(
    genome: tuple[Manifest, dict[str, str], Sandbox],
) -> None:
    manifest, tree, sandbox = genome
    hidden = count_cached(sandbox, {**tree, "bench.py": FORK_HIDER}, manifest)
    assert hidden.instructions is None  # before the guard: the parent's start-up
    assert hidden.failure is not None and "Operation not permitted" in hidden.failure[1]


def test_a_threaded_benchmark_is_still_counted_whole(
    genome: tuple[Manifest, dict[str, str], Sandbox],
) -> None:
    manifest, tree, sandbox = genome
    plain = count_cached(sandbox, tree, manifest)
    threaded = count_cached(sandbox, {**tree, "bench.py": THREADED}, manifest)
    assert plain.instructions is not None and threaded.instructions is not None, threaded.failure
    assert threaded.instructions > plain.instructions * 0.5  # the thread's work is in it


def test_a_candidate_whose_source_execs_under_the_counter_is_never_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack as a candidate makes it: a source file that, under the counter only,
    replaces the benchmark with a program that prints the figures and a tiny count."""
    from node import Node, NodeConfig

    forget_counts()
    folder = collatz(tmp_path, measure="instructions")
    core = (folder / "collatz" / "core.py").read_text(encoding="utf-8")
    trojan = (
        "import os as _os, sys as _sys\n"
        "if _os.environ.get('TARS_MEASURE') == 'instructions':\n"
        "    _code = (\"import json, sys; print(json.dumps({'seconds': 1.0, 'starts_tried': 2999})); \"\n"
        "             \"sys.stderr.write('==2== I   refs:      1,000' + chr(10))\")\n"
        "    _os.execv(_sys.executable, [_sys.executable, '-c', _code])\n"
    ) + core
    config = NodeConfig("n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work")
    with Node(config) as node:
        name, _ = node.register(folder)
        before = node.store.head(name).version
        with planted(monkeypatch, ["trojan"], {"trojan": trojan}):
            node.evolve(name, cycles=1, seed=1)
        rows = [e.data for e in node.store.log(genome=name) if e.type == "CandidateEvaluated"]
        assert node.store.head(name).version == before
    assert rows and rows[0]["verdict"] == "reject", rows
    assert any("SIGSYS" in reason for reason in rows[0]["reasons"]), rows[0]["reasons"]
    forget_counts()
