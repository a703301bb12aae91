"""How candidates are measured: exact instruction counts against the raw counter and the timed A/B.

Prints one JSON object:

* ``counter``: one count of the demo genome's benchmark through the sandbox
  (``runtime.incubation.run_counted``: bwrap, cgroup, rlimits, clean environment) against
  valgrind run directly on a plain copy, interleaved, in the same run; the ratio of the
  wall times is our overhead over the raw tool, and the two counts should agree;
* ``repeatability``: the spread of the sandboxed count over the repeats (relative);
* ``timed``: the same benchmark's seconds, run as the A/B does (parent against itself):
  the spread of the per-pair log-ratio is the noise a timed decision must beat;
* ``decision``: wall time to judge one candidate each way (counts: its tests plus one
  count, the parent cached; timed: tests plus ``rounds`` A/B pairs).

Usage: ``python bench/bench_measure.py [--repeats N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from evolution.manifest import parse_manifest  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.incubation import (  # noqa: E402
    VALGRIND_FLAGS,
    bench_env,
    incubate,
    read_instructions,
    run_counted,
    valgrind,
)
from runtime.sandbox import RunResult, Sandbox  # noqa: E402

GENOME = ROOT / "genomes" / "logstats"


def raw_count(counter: str, folder: Path, bench: list[str]) -> tuple[float, float]:
    """valgrind straight on a plain copy: (instructions, wall seconds)."""
    argv = [
        counter,
        *VALGRIND_FLAGS,
        sys.executable if bench[0] == "python" else bench[0],
        *bench[1:],
    ]
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        **bench_env("instructions"),
    }
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    result = RunResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr, wall, None, "")
    return read_instructions(result), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="counts each way (interleaved)")
    parser.add_argument("--rounds", type=int, default=5, help="A/B pairs of the timed decision")
    args = parser.parse_args()
    counter = valgrind()
    if counter is None:
        print(json.dumps({"error": "valgrind is not installed (apt-get install valgrind)"}))
        sys.exit(2)
    manifest, tree = load_genome(GENOME)
    timed_manifest = parse_manifest(
        (GENOME / "genome.toml")
        .read_text(encoding="utf-8")
        .replace('measure = "instructions"', 'measure = "benchmark"')
    )
    work = Path(tempfile.mkdtemp(prefix="bench-measure-"))
    plain = work / "plain"
    shutil.copytree(GENOME, plain)
    ours_counts: list[float] = []
    ours_walls: list[float] = []
    raw_counts: list[float] = []
    raw_walls: list[float] = []
    try:
        with Sandbox(work / "sandbox") as sandbox:
            for _ in range(args.repeats):
                count, wall = raw_count(counter, plain, list(manifest.commands.bench))
                raw_counts.append(count)
                raw_walls.append(wall)
                with sandbox.workspace(tree) as workdir:
                    result = run_counted(sandbox, workdir, manifest)
                ours_counts.append(read_instructions(result))
                ours_walls.append(result.wall_seconds)
            started = time.perf_counter()
            timed = incubate(
                sandbox, timed_manifest, "self", tree, tree, rounds=args.rounds, measure="benchmark"
            )
            timed_wall = time.perf_counter() - started
            started = time.perf_counter()
            counted = incubate(sandbox, manifest, "self", tree, tree, measure="instructions")
            counted_wall = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    d = [
        math.log(p / c) for p, c in zip(timed.parent_samples, timed.candidate_samples, strict=True)
    ]
    print(
        json.dumps(
            {
                "counter": {
                    "ours_wall_median_s": round(statistics.median(ours_walls), 3),
                    "raw_wall_median_s": round(statistics.median(raw_walls), 3),
                    "overhead_ratio": round(
                        statistics.median(ours_walls) / statistics.median(raw_walls), 3
                    ),
                    "ours_count": int(statistics.median(ours_counts)),
                    "raw_count": int(statistics.median(raw_counts)),
                    "count_difference_relative": round(
                        abs(statistics.median(ours_counts) - statistics.median(raw_counts))
                        / statistics.median(raw_counts),
                        6,
                    ),
                },
                "repeatability": {
                    "counts": [int(c) for c in ours_counts],
                    "spread_relative": round(
                        (max(ours_counts) - min(ours_counts)) / min(ours_counts), 9
                    ),
                },
                "timed": {
                    "pairs": len(d),
                    "log_ratio_sd": round(statistics.stdev(d), 4) if len(d) > 1 else None,
                    "same_code_ratio": round(math.exp(statistics.mean(d)), 4) if d else None,
                },
                "decision": {
                    "counted_s": round(counted_wall, 2),
                    "timed_s": round(timed_wall, 2),
                    "counted_runs": counted.runs,
                    "timed_runs": timed.runs,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
