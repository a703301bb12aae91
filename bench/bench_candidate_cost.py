"""Cost per candidate judged, today's path against the evaluation cascade, in one run.

Today's path (``incubate(..., cascade=False)``): the genome's whole test suite, then one
exact count of the candidate under valgrind (the parent's count is cached per version,
as in a real run).  The cascade (``cascade=True``, the default since issue 10): tests
stopping at the first failure, then the quick run (native, timed pairs; a candidate
whose every pair is below ``[fitness] quick`` of its parent is rejected; off unless the
manifest sets it), then the short count (the benchmark on ``[fitness] short_scale`` of
its input, counted exactly; a candidate below the short margin is rejected), then the
full count.  Both paths prove the same candidates, alternating which goes first so
drift of the shared machine hits both alike; each path counts the candidate afresh.
The parent's full and short counts are paid once per version: they are reported apart,
and folded into a cost per cycle of ``--per-cycle`` candidates.  The shipped manifests
leave the short count off; ``--short-scale`` (default 0.1) turns it on for the run.

``--evolve-cycles N`` also evolves the genome from scratch with and without the short
count on the same seeds (``--evolve-seeds``), and reports the gains adopted after each
cycle: the short count must not lose winners.

The mix: ``--candidates N`` drawn uniformly from every (site, mutator) pair the
analyzer finds on the genome's head (the random planner's draw, seeded), which is what
a run's candidates look like before the planner learns: most lose.  Where the time goes
is reported per phase (copy-in, tests, quick run, count, and the jail's own start per
run, measured on ``python -c pass`` in the same run), with the profile the analyzer
takes once per version beside it.

    python bench/bench_candidate_cost.py [--genome genomes/logstats] [--candidates 20] [--seed 1]
        [--short-scale 0.1] [--evolve-cycles 4 --evolve-seeds 1,2]

Prints JSON.  Goal (issue 10): the cascade at most half of today's cost per candidate.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from actors.messages import Analyze, Generate, PlanCycle  # noqa: E402
from evolution.cascade import short_margin, short_run  # noqa: E402
from evolution.compose import MERGE_FLOOR  # noqa: E402
from evolution.patch import apply_patch  # noqa: E402
from evolution.planner import Outcomes  # noqa: E402
from evolution.tree import version_id  # noqa: E402
from node import Node, NodeConfig  # noqa: E402
from runtime.counting import count_cached, count_instructions, forget_count  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.incubation import IncubationReport, incubate  # noqa: E402
from runtime.sandbox import SandboxLimits  # noqa: E402

PHASES = ("copy", "tests", "quick", "short", "count", "short_parent", "count_parent")
#: the stages whose children report CPU seconds (the copy is the node's own work)
CPU_PHASES = PHASES[1:]


def jail_start_ms(node: Node, runs: int = 15) -> float:
    """The jail's own cost per run: ``python -c pass`` in the sandbox, median of ``runs``."""
    times = []
    with node.sandbox.workspace({"x.txt": "x"}) as workdir:
        for _ in range(runs):
            started = time.perf_counter()
            node.sandbox.run(workdir, ["python", "-c", "pass"], SandboxLimits())
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def mix(
    node: Node, folder: Path, size: int, seed: int
) -> tuple[Any, dict[str, str], list[Any], float]:
    """The manifest, the head's tree, ``size`` candidates drawn uniformly, and the profile's seconds."""
    manifest, tree = load_genome(folder)
    version = version_id(tree)
    started = time.perf_counter()
    found = node.supervisor.ask("analyzer", Analyze(version, tree, manifest))
    profile = time.perf_counter() - started
    plans = node.supervisor.ask(
        "planner", PlanCycle(version, tree, manifest, found, Outcomes(), seed, 1, size, "random")
    )
    generated = node.supervisor.ask("generator", Generate(version, tree, plans))
    return manifest, tree, generated.candidates[:size], profile


def phases(report: IncubationReport, kind: str = "stage") -> dict[str, float]:
    """Seconds per stage of one candidate: wall ("stage") or its children's CPU ("cpu")."""
    names = PHASES if kind == "stage" else CPU_PHASES
    return {phase: report.extra.get(f"{kind}:{phase}", 0.0) for phase in names}


def cpu_seconds(report: IncubationReport) -> float:
    """The CPU seconds of every child the candidate ran (the jail's start included)."""
    return sum(phases(report, "cpu").values())


def fixed_cost(node: Node, manifest: Any, tree: dict[str, str]) -> dict[str, float]:
    """What a count costs before the benchmark does any work: valgrind and the interpreter
    starting (``python -S -c pass`` counted in the jail), against a native ``pass``."""
    from runtime.counting import VALGRIND_FLAGS, counting_limits, valgrind

    limits = counting_limits(SandboxLimits.from_manifest(manifest.limits))
    out: dict[str, float] = {}
    with node.sandbox.workspace({"x.txt": "x"}) as workdir:
        for label, argv in (
            (
                "valgrind_python_pass",
                [str(valgrind()), *VALGRIND_FLAGS, sys.executable, "-S", "-c", "pass"],
            ),
            ("native_python_pass", [sys.executable, "-S", "-c", "pass"]),
        ):
            runs = [node.sandbox.run(workdir, argv, limits) for _ in range(3)]
            out[f"{label}_wall"] = round(statistics.median(r.wall_seconds for r in runs), 3)
            out[f"{label}_cpu"] = round(statistics.median(r.cpu_seconds or 0.0 for r in runs), 3)
    return out


def prove(
    node: Node, manifest: Any, tree: dict[str, str], candidate: Any, cascade: bool
) -> IncubationReport:
    child = apply_patch(tree, candidate.patch)
    forget_count(child, manifest)  # each path counts the candidate afresh
    forget_count(child, manifest, short_run(manifest.fitness))
    return incubate(node.sandbox, manifest, candidate.id, tree, child, cascade=cascade)


def outcome(report: IncubationReport) -> str:
    if report.failure == "short":  # before its tests (they were not run)
        return "rejected at the short count"
    if not report.tests_passed:
        return "tests failed"
    if report.failure == "quick":
        return "rejected at the quick run"
    if report.failure is not None:
        return "failed"
    gain = report.parent_samples[0] / report.candidate_samples[0]
    return "gain" if gain >= MERGE_FLOOR else "no gain"


def summary(reports: list[IncubationReport], jail_ms: float) -> dict[str, Any]:
    per = [r.total_seconds for r in reports]
    split = {p: round(statistics.fmean(phases(r)[p] for r in reports), 3) for p in PHASES}
    cpu = {p: round(statistics.fmean(phases(r, "cpu")[p] for r in reports), 3) for p in CPU_PHASES}
    runs = statistics.fmean(r.runs for r in reports)
    return {
        "seconds_per_candidate": round(statistics.fmean(per), 3),
        "median_seconds": round(statistics.median(per), 3),
        "cpu_seconds_per_candidate": round(statistics.fmean(cpu_seconds(r) for r in reports), 3),
        "phases_seconds_per_candidate": split,
        "phases_cpu_seconds_per_candidate": cpu,
        "children_per_candidate": round(runs, 2),
        "jail_start_seconds_per_candidate": round(runs * jail_ms / 1000, 3),
        "outcomes": {
            o: sum(1 for r in reports if outcome(r) == o)
            for o in sorted({outcome(r) for r in reports})
        },
    }


def per_version(node: Node, manifest: Any, tree: dict[str, str]) -> dict[str, float]:
    """The parent's full and short counts, paid once per version (seconds each)."""
    full = count_cached(node.sandbox, tree, manifest).spent
    short = short_run(manifest.fitness)
    spent = 0.0
    if short is not None:
        spent = count_cached(node.sandbox, tree, manifest, short=short).spent
    return {"parent_full_count": round(full, 3), "parent_short_count": round(spent, 3)}


def judged(
    node: Node, manifest: Any, tree: dict[str, str], candidates: list[Any]
) -> tuple[list[IncubationReport], list[IncubationReport], list[dict[str, Any]]]:
    """Every candidate proven both ways (order alternating); a row per candidate."""
    today: list[IncubationReport] = []
    cascade: list[IncubationReport] = []
    rows: list[dict[str, Any]] = []
    with Progress(console=Console(stderr=True)) as progress:  # stdout is the JSON
        task = progress.add_task("candidates (today, cascade)", total=len(candidates))
        for index, candidate in enumerate(candidates):
            order = (False, True) if index % 2 == 0 else (True, False)
            pair = {flag: prove(node, manifest, tree, candidate, flag) for flag in order}
            today.append(pair[False])
            cascade.append(pair[True])
            plain = pair[False]
            gain = (
                plain.parent_samples[0] / plain.candidate_samples[0]
                if plain.failure is None and plain.candidate_samples
                else None
            )
            rows.append(
                {
                    "mutator": candidate.mutator,
                    "candidate": candidate.id[:12],
                    "gain": None if gain is None else round(gain, 4),
                    "short_gain": (
                        round(pair[True].extra["short_gain"], 4)
                        if "short_gain" in pair[True].extra
                        else None
                    ),
                    "today": outcome(plain),
                    "cascade": outcome(pair[True]),
                }
            )
            progress.advance(task)
    return today, cascade, rows


def lost(rows: list[dict[str, Any]], floor: float) -> list[str]:
    """Candidates rejected early by the cascade whose full count gains at least ``floor``."""
    return [
        f"{r['mutator']} {r['candidate']} ({r['gain']}x; short {r['short_gain']}x)"
        for r in rows
        if r["cascade"].startswith("rejected at") and r["gain"] is not None and r["gain"] >= floor
    ]


def evolved(folder: Path, seeds: list[int], cycles: int, scale: float) -> dict[str, Any]:
    """The gains adopted cycle by cycle with and without the short count, same seeds."""
    from bench.evolvekit import evolve

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as work:
        copies = {}
        for label, setting in (("with_short", f"short_scale = {scale}\n"), ("without_short", "")):
            copies[label] = Path(work) / label / folder.name
            shutil.copytree(folder, copies[label])
            toml = copies[label] / "genome.toml"
            lines = [x for x in toml.read_text().splitlines(True) if not x.startswith("short_")]
            toml.write_text("".join(lines).replace("[fitness]\n", "[fitness]\n" + setting, 1))
        for seed in seeds:
            for label, where in copies.items():
                run = evolve(where, seed=seed, cycles=cycles)
                out[f"seed {seed} {label}"] = {
                    "gains": [round(g, 4) for g in run.gains],
                    "judged": run.judged,
                    "adopted": run.adopted,
                    "seconds": round(run.walls[-1], 1) if run.walls else None,
                    "short_rejected": len(run.short_rejected),
                }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", type=Path, default=ROOT / "genomes" / "logstats")
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-cycle", type=int, default=3, help="candidates per version")
    parser.add_argument(
        "--short-scale", type=float, default=0.1, help="[fitness] short_scale; 0: the manifest's"
    )
    parser.add_argument("--evolve-cycles", type=int, default=0)
    parser.add_argument("--evolve-seeds", default="1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        config = NodeConfig(
            "bench", f"sqlite:///{work}/store.db", Path(work) / "node", incubators=1
        )
        with Node(config) as node:
            jail_ms = jail_start_ms(node)
            fixed = fixed_cost(node, *load_genome(args.genome))
            manifest, tree, candidates, profile = mix(node, args.genome, args.candidates, args.seed)
            if args.short_scale:  # the shipped manifests leave the short count off
                fitness = manifest.fitness.model_copy(update={"short_scale": args.short_scale})
                manifest = manifest.model_copy(update={"fitness": fitness})
            versioned = per_version(node, manifest, tree)
            count_instructions(node.sandbox, tree, manifest)  # cached: costs nothing now
            today, cascade, rows = judged(node, manifest, tree, candidates)
    before, after = summary(today, jail_ms), summary(cascade, jail_ms)
    ratio = after["seconds_per_candidate"] / before["seconds_per_candidate"]
    cpu_ratio = after["cpu_seconds_per_candidate"] / before["cpu_seconds_per_candidate"]
    # the stage costs s/f + p of today's path (s, f: a short and a full count's CPU; p the
    # share of candidates that pass it), so it pays while p < 1 - s/f
    reached = [r for r in cascade if "cpu:short" in r.extra]
    short_cpu = statistics.fmean(r.extra["cpu:short"] for r in reached) if reached else 0.0
    full_cpu = before["phases_cpu_seconds_per_candidate"]["count"]
    passed = sum(1 for r in reached if r.failure != "short")
    k = args.per_cycle
    cycle_before = versioned["parent_full_count"] + k * before["seconds_per_candidate"]
    cycle_after = sum(versioned.values()) + k * after["seconds_per_candidate"]
    result: dict[str, Any] = {
        "genome": args.genome.name,
        "candidates": len(candidates),
        "seed": args.seed,
        "mutators": sorted({c.mutator for c in candidates}),
        "short": short_run(manifest.fitness),
        "short_margin": round(short_margin(manifest.fitness), 4),
        "jail_start_ms_per_run": round(jail_ms, 1),
        "profile_seconds_per_version": round(profile, 3),
        "seconds_per_version": versioned,
        "today": before,
        "cascade": after,
        "fixed_cost_of_a_count": fixed,
        "cascade_over_today": round(ratio, 3),
        "cascade_over_today_by_cpu": round(cpu_ratio, 3),
        "short_over_full_count_by_cpu": round(short_cpu / full_cpu, 3) if full_cpu else None,
        "short_pays_while_pass_share_below": round(1 - short_cpu / full_cpu, 3)
        if full_cpu
        else None,
        "pass_share_at_the_short_count": round(passed / len(reached), 3) if reached else None,
        f"per_cycle_of_{k}_cascade_over_today": round(cycle_after / cycle_before, 3),
        "goal": "<= 0.5",
        "met": ratio <= 0.5,
        "met_by_cpu": cpu_ratio <= 0.5,
        "rejected_early_with_gain_at_merge_floor": lost(rows, MERGE_FLOOR),
        "rejected_early_with_gain_at_threshold": lost(rows, manifest.fitness.threshold),
        "candidates_judged": rows,
    }
    if args.evolve_cycles:
        seeds = [int(s) for s in args.evolve_seeds.split(",")]
        scale = args.short_scale or manifest.fitness.short_scale or 0.1
        result["evolved"] = evolved(args.genome, seeds, args.evolve_cycles, scale)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
