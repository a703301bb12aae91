"""Where the figures of the rewrite priors (evolution/priors.py) come from, measured.

Under ``measure = "instructions"`` the analyzer's profile counts profiler events (calls
and returns), so a C call that sorts 80 items weighs one event, as ``len`` does.  The
prior of a rewrite kind never measured on a genome says instead what the rewrite removes
per execution of its site, in instructions; this script measures those costs with the
same counter the fitness uses (cachegrind, exact), on this interpreter:

* ``sort_per_nlogn``: ``sorted(xs)`` of n shuffled small ints, per n·log2(n) (fitted
  over n = 16, 64, 256); small ints are the cheapest items CPython compares, so a prior
  built on them is a lower bound for tuples or strings;
* ``scan_per_item``: ``max(xs)`` of the same, per item;
* ``set_per_item``: ``set(xs)``, per item; ``copy_per_item``: ``list(xs)``, per item;
* ``builtin_call``: ``len(xs)``, one C call;
* ``instructions_per_event``: for each genome given, the benchmark's instructions (as
  its fitness counts them) over its profile's events (as the analyzer's counting clock
  counts them): how many instructions one event of the profile stands for.

    python bench/bench_kind_costs.py [--genomes logstats,seqdiff,tomlparse]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--branch-sim=no",
            "--cachegrind-out-file=/dev/null"]  # fmt: skip
REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
REPS = 2000

SNIPPET = """
import random, sys
n, reps, what, items = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
xs = list(range(n)); random.Random(1).shuffle(xs)
if items == "floats":
    xs = [x * 1.5 for x in xs]
elif items == "strs":
    xs = ["/api/%05d" % x for x in xs]
elif items == "tuples":
    xs = [(x * 1.5, "/p%d" % (x % 20)) for x in xs]
def run(xs=xs):
    for _ in range(reps):
        {body}
run()
"""
BODIES = {
    "base": "xs",
    "sort": "sorted(xs)",
    "scan": "max(xs)",
    "set": "set(xs)",
    "copy": "list(xs)",
    "call": "len(xs)",
}

EVENTS = """
import cProfile, itertools, os, runpy, sys
sys.argv = ["bench.py"]; sys.path[0] = os.getcwd()
p = cProfile.Profile(itertools.count().__next__, 1.0)
p.enable()
try:
    runpy.run_path("bench.py", run_name="__main__")
except SystemExit:
    pass
p.disable()
print("EVENTS", max(v[3] for v in __import__("pstats").Stats(p).stats.values()))
"""


def count(argv: list[str], cwd: Path | None = None) -> int:
    """Instructions of ``argv`` under cachegrind."""
    out = subprocess.run(
        [*VALGRIND, *argv], cwd=cwd, capture_output=True, text=True, check=True,
        env={"TARS_MEASURE": "instructions", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    found = REFS.search(out.stderr)
    if found is None:
        raise SystemExit(f"no count in: {out.stderr[-500:]}")
    return int(found.group(1).replace(",", ""))


#: the items a program commonly sorts or scans: their costs differ by 3x (CPython
#: specialises the sort's comparison per type), and a rewrite site does not say which
ITEMS = ("ints", "floats", "strs", "tuples")


def per_op(what: str, n: int, items: str = "ints") -> float:
    """Instructions of one ``what`` on n ``items``, the loop's own cost taken off."""
    with tempfile.TemporaryDirectory() as work:
        figures = {}
        for body in ("base", what):
            script = Path(work) / f"{body}.py"
            script.write_text(SNIPPET.replace("{body}", BODIES[body]))
            argv = [sys.executable, "-S", str(script), str(n), str(REPS), body, items]
            figures[body] = count(argv)
    return (figures[what] - figures["base"]) / REPS


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def per_event(genome: Path) -> dict[str, float]:
    """A genome's bench: instructions, profiler events, and their ratio."""
    instructions = count([sys.executable, "-S", "bench.py"], cwd=genome)
    out = subprocess.run(
        [sys.executable, "-S", "-c", EVENTS], cwd=genome, capture_output=True, text=True,
        check=True, env={"TARS_MEASURE": "instructions", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    events = float(out.stdout.rsplit("EVENTS", 1)[1])
    return {"instructions": instructions, "events": events, "ratio": round(instructions / events)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", default="logstats,seqdiff,tomlparse")
    args = parser.parse_args()
    sizes = (16, 64, 256)
    nlogn = {n: n * math.log2(n) for n in sizes}
    sort_fit: dict[str, float] = {}
    scan_fit: dict[str, float] = {}
    for items in ITEMS:
        sorts = {n: per_op("sort", n, items) for n in sizes}
        # least squares through the origin: instructions = a · n·log2(n)
        sort_fit[items] = sum(sorts[n] * nlogn[n] for n in sizes) / sum(
            nlogn[n] ** 2 for n in sizes
        )
        scan_fit[items] = per_op("scan", 256, items) / 256
    result = {
        "python": sys.version.split()[0],
        "sort_per_nlogn": {k: round(v, 1) for k, v in sort_fit.items()},
        "scan_per_item": {k: round(v, 1) for k, v in scan_fit.items()},
        "sort_per_nlogn_geomean": round(geomean(list(sort_fit.values())), 1),
        "scan_per_item_geomean": round(geomean(list(scan_fit.values())), 1),
        "set_per_item": {k: round(per_op("set", 256, k) / 256, 1) for k in ("ints", "strs")},
        "copy_per_item": round(per_op("copy", 256) / 256, 1),
        "builtin_call": round(per_op("call", 16)),
        "instructions_per_event": {
            name: per_event(ROOT / "genomes" / name) for name in args.genomes.split(",") if name
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
