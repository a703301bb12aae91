"""Cycles and wall time for the demo's evolution to reach 1.5×, with and without
composition and the learning planner, over several seeds.

The demo genome (``genomes/logstats``) evolves as ``tars demo`` runs it on its leader:
three candidates per cycle, one incubator, judged by exact instruction counts; here on a
single node (no swarm: the votes do not change what is adopted).  Four settings per
seed, each from scratch (fresh store, count cache emptied):

* ``learning+compose`` — the defaults (issue 10: composition of winners, the planner that
  learns: calibration, stop rule, near-duplicates, rejected-site memory, weight priors);
* ``learning`` — composition off (``NodeConfig(compose=False)``);
* ``plain+compose`` — the Thompson bandit alone (``planner="plain"``);
* ``plain`` — both off.

A run stops at the target (1.5× by exact count), at ``--cycles`` (reported as "not
reached"), or when the learning planner says nothing is left worth a try.  Reported per
setting: cycles and seconds to reach, median and worst over the seeds; and the issue's
must-show, per seed, cycles with composition over cycles without (goal ≤ 0.5).

    python bench/bench_reach.py [--seeds 1,2,3,4,5] [--cycles 20] [--settings learning+compose,learning]

Prints JSON (each run's gain after every cycle included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from bench.evolvekit import Run, evolve  # noqa: E402

SETTINGS = {
    "learning+compose": ("learning", True),
    "learning": ("learning", False),
    "plain+compose": ("plain", True),
    "plain": ("plain", False),
}


def figures(runs: list[Run], target: float) -> dict[str, Any]:
    """Median and worst cycles and seconds to reach ``target``; "not reached" counts as worst."""
    reached = [run.reached(target) for run in runs]
    cycles = [c for c, _ in reached if c is not None]
    seconds = [s for _, s in reached if s is not None]
    missed = len(runs) - len(cycles)
    return {
        "reached": f"{len(cycles)} of {len(runs)} seeds",
        "cycles_median": statistics.median(cycles)
        if cycles and not missed * 2 >= len(runs)
        else "not reached",
        "cycles_worst": "not reached" if missed else max(cycles),
        "seconds_median": round(statistics.median(seconds), 1)
        if cycles and not missed * 2 >= len(runs)
        else None,
        "seconds_worst": None if missed else round(max(seconds), 1),
        "final_gain_median": round(statistics.median(run.gains[-1] for run in runs), 4),
    }


def must_show(by_setting: dict[str, list[Run]], target: float) -> dict[str, Any]:
    """Per seed, cycles to ``target`` with composition over cycles without (same planner).

    When the run without composition never reached it, its cap stands in for its cycles,
    so the ratio is an upper bound (marked); not reached with composition is not met.
    """
    out: dict[str, Any] = {}
    for planner in ("learning", "plain"):
        with_ = {r.seed: r for r in by_setting.get(f"{planner}+compose", [])}
        without = {r.seed: r for r in by_setting.get(planner, [])}
        shown: dict[str, str] = {}
        values: list[float | None] = []
        for seed in sorted(set(with_) & set(without)):
            a, _ = with_[seed].reached(target)
            b, _ = without[seed].reached(target)
            if a is None:
                shown[str(seed)], value = "not reached with composition", None
            elif b is None:
                value = a / len(without[seed].gains)
                shown[str(seed)] = (
                    f"<= {value:.2f} ({a} cycles; not reached without in {len(without[seed].gains)})"
                )
            else:
                value = a / b
                shown[str(seed)] = f"{value:.2f} ({a} / {b} cycles)"
            values.append(value)
        if shown:
            numbers = [v for v in values if v is not None]
            out[planner] = {
                "cycles_with_over_without": shown,
                "median": round(statistics.median(numbers), 3) if numbers else None,
                "goal": "<= 0.5 on every seed",
                "met": all(v is not None and v <= 0.5 for v in values),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genome", type=Path, default=ROOT / "genomes" / "logstats")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--cycles", type=int, default=20, help="cap per run")
    parser.add_argument("--candidates", type=int, default=3, help="per cycle (tars demo: 3)")
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    chosen = args.settings.split(",")
    by_setting: dict[str, list[Run]] = {name: [] for name in chosen}
    with Progress(console=Console(stderr=True)) as progress:  # stdout is the JSON
        task = progress.add_task("runs", total=len(seeds) * len(chosen))
        for seed in seeds:
            for name in chosen:
                planner, compose = SETTINGS[name]
                progress.update(task, description=f"seed {seed}, {name}")
                run = evolve(
                    args.genome, seed=seed, cycles=args.cycles, candidates=args.candidates,
                    planner=planner, compose=compose, target=args.target,
                )  # fmt: skip
                by_setting[name].append(run)
                progress.advance(task)
    print(
        json.dumps(
            {
                "genome": args.genome.name,
                "target": args.target,
                "cycles_cap": args.cycles,
                "candidates_per_cycle": args.candidates,
                "seeds": seeds,
                "settings": {name: figures(runs, args.target) for name, runs in by_setting.items()},
                "composition_must_show": must_show(by_setting, args.target),
                "runs": {name: [r.as_dict() for r in runs] for name, runs in by_setting.items()},
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
