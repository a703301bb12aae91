"""Candidates judged per adoption: the learning planner against uniform random choice.

Same genomes, same budget (``--cycles`` cycles of ``--candidates`` candidates), same
seeds; the only difference is ``NodeConfig(planner=...)``: ``learning`` (the default:
calibrated analysis, bandit with weight priors, rejected-site memory, near-duplicates,
the stop rule) against ``random`` (an opportunity and a mutator drawn uniformly among
the applicable ones, seeded; nothing remembered).  Composition is on for both.  A
learning run that stops early has judged fewer candidates within the same budget.

Reported per genome and planner: candidates judged, adoptions, judged per adoption
(totals over the seeds), and the final exact gain; then learning over random (goal ≤ 0.5).

    python bench/bench_planner.py [--genomes logstats,seqdiff] [--seeds 1,2] [--cycles 6] [--candidates 3]
        [--planners learning,random]

Prints JSON.
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

PLANNERS = ("learning", "random")


def per_adoption(runs: list[Run]) -> dict[str, Any]:
    judged = sum(r.judged for r in runs)
    adopted = sum(r.adopted for r in runs)
    return {
        "judged": judged,
        "adopted": adopted,
        "judged_per_adoption": round(judged / adopted, 2) if adopted else None,
        "final_gain_median": round(
            statistics.median(r.gains[-1] if r.gains else 1.0 for r in runs), 4
        ),
        "stopped_early": sum(1 for r in runs if r.stopped),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", default="logstats,seqdiff")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--candidates", type=int, default=3)
    parser.add_argument(
        "--planners", default=",".join(PLANNERS), help="a subset, to re-run one side only"
    )
    args = parser.parse_args()
    planners = tuple(p for p in PLANNERS if p in args.planners.split(","))
    genomes = args.genomes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[str, list[Run]]] = {g: {p: [] for p in planners} for g in genomes}
    with Progress(console=Console(stderr=True)) as progress:  # stdout is the JSON
        task = progress.add_task("runs", total=len(genomes) * len(seeds) * len(planners))
        for genome in genomes:
            for seed in seeds:
                for planner in planners:
                    progress.update(task, description=f"{genome}, seed {seed}, {planner}")
                    runs[genome][planner].append(
                        evolve(
                            ROOT / "genomes" / genome,
                            seed=seed,
                            cycles=args.cycles,
                            candidates=args.candidates,
                            planner=planner,
                        )  # fmt: skip
                    )
                    progress.advance(task)
    report: dict[str, Any] = {}
    for genome in genomes:
        table = {p: per_adoption(runs[genome][p]) for p in planners}
        learning, rand = (
            table.get("learning", {}).get("judged_per_adoption"),
            table.get("random", {}).get("judged_per_adoption"),
        )
        if "random" not in table or "learning" not in table:
            ratio: Any = "one side only (--planners)"
        elif learning is not None and rand is not None:
            ratio = round(learning / rand, 3)
        elif learning is not None:
            ratio = f"random adopted nothing in {table['random']['judged']} candidates"
        else:
            ratio = "learning adopted nothing"
        report[genome] = {
            **table,
            "learning_over_random": ratio,
            "met": isinstance(ratio, float)
            and ratio <= 0.5
            or isinstance(ratio, str)
            and ratio.startswith("random"),
            "runs": {p: [r.as_dict() for r in runs[genome][p]] for p in planners},
        }
    print(
        json.dumps(
            {
                "budget": f"{args.cycles} cycles x {args.candidates} candidates",
                "seeds": seeds,
                "goal": "learning <= 0.5 x random candidates judged per adoption",
                "genomes": report,
            },
            indent=2,
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
