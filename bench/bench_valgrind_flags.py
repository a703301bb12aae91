"""Which valgrind flags make a count cheaper and keep it exact: counts and CPU per flag set.

A short count is mostly valgrind's fixed cost (the interpreter and the imports
translated afresh in every process), so flags that translate faster looked like a way
to cut it.  A flag is only usable if the count of the same tree is identical with and
without it (counts are compared across versions and cached); this runs the genome's
short count in the jail with ``runtime.counting.VALGRIND_FLAGS`` plus each candidate
flag set, interleaved, and prints each set's counts, their difference from the plain
flags' and the CPU seconds of the run (wall time on a shared machine counts the others).

    python bench/bench_valgrind_flags.py [--genome genomes/logstats] [--scale 0.1] [--repeats 2]

Prints JSON.  Measured here: see docs/benchmarks.md ("the short count's fixed cost").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from runtime.counting import (  # noqa: E402
    VALGRIND_FLAGS,
    bench_env,
    counting_limits,
    read_instructions,
    valgrind,
)
from runtime.genome_files import load_genome  # noqa: E402
from runtime.sandbox import Sandbox, SandboxLimits  # noqa: E402

FLAG_SETS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "smc-check=none": ("--smc-check=none",),
    "vex-guest-chase=no": ("--vex-guest-chase=no",),
    "vex-iropt-level=1": ("--vex-iropt-level=1",),
    "vex-regalloc-version=2": ("--vex-regalloc-version=2",),
    "vex-guest-max-insns=100": ("--vex-guest-max-insns=100",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", type=Path, default=ROOT / "genomes" / "logstats")
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    manifest, tree = load_genome(args.genome)
    bench = manifest.commands.bench
    program = [sys.executable if bench[0] == "python" else bench[0], *bench[1:]]
    env = {**bench_env("instructions"), "TARS_BENCH_SCALE": repr(args.scale)}
    limits = counting_limits(SandboxLimits.from_manifest(manifest.limits))
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in FLAG_SETS}
    with (
        tempfile.TemporaryDirectory() as work,
        Sandbox(Path(work) / "sandbox") as sandbox,
        sandbox.workspace(tree) as workdir,
        Progress(console=Console(stderr=True)) as bar,
    ):
        task = bar.add_task("counts", total=args.repeats * len(FLAG_SETS))
        for _ in range(args.repeats):
            for name, flags in FLAG_SETS.items():
                argv = [str(valgrind()), *VALGRIND_FLAGS, *flags, *program]
                result = sandbox.run(workdir, argv, limits, env=env)
                runs[name].append((read_instructions(result), result.cpu_seconds or 0.0))
                bar.advance(task)
    plain = statistics.median(count for count, _ in runs["plain"])
    out: dict[str, Any] = {"genome": args.genome.name, "scale": args.scale, "flag_sets": {}}
    for name, got in runs.items():
        counts = [count for count, _ in got]
        out["flag_sets"][name] = {
            "counts": [int(c) for c in counts],
            "relative_difference_from_plain": round(statistics.median(counts) / plain - 1, 7),
            "cpu_seconds_median": round(statistics.median(cpu for _, cpu in got), 3),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
