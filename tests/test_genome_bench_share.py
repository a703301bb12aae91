"""The real-code genomes' bench.py count the library's work, not mostly start-up and input.

docs/genomes.md, "Benchmarks that measure the work": under the counter the measured calls
run ``PASSES`` times so the work is at least 85 % of the exact count; at
``TARS_BENCH_SCALE=0`` they do not run at all (the fixed part, which the split is
measured against); the work figures a candidate must not move are per pass, the same
whatever the number of passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench_genome_share import count  # noqa: E402

#: genome -> the figure that counts its work
WORK = {"seqdiff": "matches", "shellsplit": "tokens", "tomlparse": "keys"}


def _bench(name: str, **env: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-S", "bench.py"],
        cwd=ROOT / "genomes" / name,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", sorted(WORK))
def test_scale_zero_runs_no_work_and_passes_do_not_move_the_work_figures(name: str) -> None:
    fixed = _bench(name, TARS_MEASURE="instructions", TARS_BENCH_SCALE="0")
    assert fixed[WORK[name]] == 0 and fixed["seconds"] == 0.0
    short = _bench(name, TARS_MEASURE="instructions", TARS_BENCH_SCALE="0.05")
    assert short[WORK[name]] > 0
    # one pass's figures, however many passes ran: the work count is per pass
    module = (ROOT / "genomes" / name / "bench.py").read_text()
    assert "\nPASSES = " in module
    one = subprocess.run(
        [sys.executable, "-S", "-c", "import bench; bench.PASSES = 1; bench.main()"],
        cwd=ROOT / "genomes" / name,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",
            "TARS_MEASURE": "instructions",
            "TARS_BENCH_SCALE": "0.05",
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    single = json.loads(one.stdout.strip().splitlines()[-1])
    assert {k: v for k, v in single.items() if k != "seconds"} == {
        k: v for k, v in short.items() if k != "seconds"
    }


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/valgrind").exists(), reason="needs valgrind")
@pytest.mark.parametrize("name", sorted(WORK))
def test_the_work_is_most_of_the_exact_count(name: str) -> None:
    whole, _ = count(ROOT / "genomes" / name, None)
    fixed, _ = count(ROOT / "genomes" / name, "0")
    assert (whole - fixed) / whole >= 0.85, (name, whole, fixed)
