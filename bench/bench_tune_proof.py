"""How often the tune search's proof adopts noise, and how often it proves a real gain.

A scripted objective (the user's side of the search): each measurement is the value set's
effect times a log-normal noise of ``--noise`` (one value per list item). For every
repeat count, ``--trials`` trials of values with no effect measure the false adoptions of
:func:`evolution.lang.tune.prove` (the interval of the paired gain above the threshold),
beside the rule it replaced (the first repeat's ratio alone at or above the threshold:
"a lucky run adopts"); then trials of each ``--effects`` gain measure its power.  Pure
arithmetic: the same seed gives the same figures on any machine.

    python bench/bench_tune_proof.py [--trials 4000] [--repeats 3,5] [--noise 0.02,0.05]
        [--effects 1.08,1.15,1.25] [--threshold 1.05] [--seed 1]

Prints JSON.  Goal (issue 13, item 4): a parameter whose effect is noise is not adopted
(false adoptions well under the 2.5 % a one-sided 95 % interval allows).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evolution.lang.tune import prove  # noqa: E402


def rates(
    trials: int, repeats: int, noise: float, effect: float, threshold: float, seed: int
) -> tuple[float, float]:
    """(proven share, first-repeat-alone share) over ``trials`` trials of ``effect``."""
    rng = random.Random(f"{seed}:{repeats}:{noise}:{effect}")
    proven = lucky = 0
    seeds = list(range(repeats))
    for i in range(trials):
        base = [math.exp(rng.gauss(0.0, noise)) for _ in seeds]
        figures = [effect * math.exp(rng.gauss(0.0, noise)) for _ in seeds]
        proof = prove({"i": i}, seeds, base, figures, threshold=threshold, confidence=0.95,
                      rng=random.Random(f"{seed}:{i}"))  # fmt: skip
        proven += proof.proven
        lucky += figures[0] / base[0] >= threshold
    return proven / trials, lucky / trials


def main() -> None:
    """Print the false-adoption and power table as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--repeats", default="3,5")
    parser.add_argument("--noise", default="0.02,0.05")
    parser.add_argument("--effects", default="1.08,1.15,1.25")
    parser.add_argument("--threshold", type=float, default=1.05)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for repeats in (int(r) for r in args.repeats.split(",")):
        for noise in (float(n) for n in args.noise.split(",")):
            for effect in [1.0, *(float(e) for e in args.effects.split(","))]:
                trials = args.trials if effect == 1.0 else max(1, args.trials // 5)
                proven, lucky = rates(trials, repeats, noise, effect, args.threshold, args.seed)
                rows.append({"repeats": repeats, "noise": noise, "effect": effect,
                             "trials": trials, "proven": round(proven, 5),
                             "single_measurement_rule": round(lucky, 5)})  # fmt: skip
    print(json.dumps({"threshold": args.threshold, "confidence": 0.95, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
