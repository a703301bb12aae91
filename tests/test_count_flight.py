"""Two incubators asking for the count of one uncounted version pay for one run, not two.

The count cache (runtime/counting.py) is shared by the incubator pool's threads; without
one flight per version both would run the benchmark under valgrind for the same figure.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from fitkit import collatz

from runtime.counting import Count, count_cached, forget_counts, valgrind
from runtime.genome_files import load_genome
from runtime.sandbox import RunResult, Sandbox, SandboxLimits


class _Tally(Sandbox):
    """The real jail, counting the counted runs it starts (valgrind's cachegrind in argv)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.counted = 0
        self._lock = threading.Lock()

    def run(
        self,
        workdir: Path,
        argv: Sequence[str],
        limits: SandboxLimits,
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
    ) -> RunResult:
        if any("cachegrind" in arg for arg in argv):
            with self._lock:
                self.counted += 1
        return super().run(workdir, argv, limits, env=env, stdin=stdin)


def test_two_threads_counting_one_version_run_the_counter_once(tmp_path: Path) -> None:
    if valgrind() is None:
        pytest.skip("valgrind is not installed")
    forget_counts()
    manifest, tree = load_genome(collatz(tmp_path, measure="instructions"))
    got: list[Count] = []
    start = threading.Barrier(2)

    def count(sandbox: Sandbox) -> None:
        start.wait()
        got.append(count_cached(sandbox, tree, manifest))

    with _Tally(tmp_path / "sandbox") as sandbox:
        threads = [threading.Thread(target=count, args=(sandbox,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not any(thread.is_alive() for thread in threads)
        assert sandbox.counted == 1
    assert len(got) == 2 and got[0].instructions == got[1].instructions is not None
    assert sorted(c.spent > 0 for c in got) == [False, True]  # one paid, one read the cache
    forget_counts()
