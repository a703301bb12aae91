"""How much of a genome's exact count is the measured work, and how much is fixed cost.

A genome's count is everything its benchmark process executes: interpreter start-up, the
imports (compiling the evolved module too: the jail's tree has no ``__pycache__``), the
input it generates, then the measured work.  A rewrite can only speed up the last part,
so the share of the work caps the gain any rewrite can show (docs/genomes.md).  This
counts each genome twice as the incubator does (cachegrind without cache or branch
simulation, ``python -S bench.py``, ``TARS_MEASURE=instructions``, ``PYTHONHASHSEED=0``,
no bytecode cache, on a fresh copy): once whole, once with ``TARS_BENCH_SCALE=0`` (the
genomes' bench.py then skip the measured work), and reports the split, the wall time of
one count, and the speed-up of the work alone that a 1.25x overall gain needs.

    python bench/bench_genome_share.py [genomes/seqdiff genomes/shellsplit genomes/tomlparse]

Prints JSON.  Needs valgrind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT = ["genomes/seqdiff", "genomes/shellsplit", "genomes/tomlparse"]
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(genome: Path, scale: str | None) -> tuple[int, float]:
    """(instructions, wall seconds) of one counted run of the genome's bench.py on a fresh copy."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / genome.name
        shutil.copytree(genome, work, ignore=shutil.ignore_patterns("__pycache__"))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TARS_MEASURE": "instructions",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if scale is not None:
            env["TARS_BENCH_SCALE"] = scale
        cmd = [valgrind, "--tool=cachegrind", "--cache-sim=no", "--branch-sim=no"]
        cmd += ["--cachegrind-out-file=/dev/null", sys.executable, "-S", "bench.py"]
        start = time.monotonic()
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, check=True)
        wall = time.monotonic() - start
    found = _REFS.search(done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind on {genome}: {done.stderr[-500:]}")
    return int(found.group(1).replace(",", "")), wall


def main(args: list[str]) -> None:
    """One JSON line per genome: the whole count, its fixed part, the work's share."""
    for name in args or DEFAULT:
        whole, wall = count(Path(name), None)
        fixed, _ = count(Path(name), "0")
        share = (whole - fixed) / whole
        needed = share / (share - 0.2) if share > 0.2 else None
        print(
            json.dumps(
                {
                    "genome": name,
                    "count": whole,
                    "fixed": fixed,
                    "work": whole - fixed,
                    "work_share": round(share, 4),
                    "count_wall_seconds": round(wall, 2),
                    "work_speedup_for_1.25x": round(needed, 3) if needed else None,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
