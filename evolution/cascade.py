"""The evaluation cascade's rules: cheap checks first, the exact count last.

Proving a candidate of a counted genome is its tests (a fraction of a second) and one
run under valgrind's instruction counter (seconds: 95 % of the cost). A candidate that
fails a cheap check need not pay for the count, so the incubation
(:mod:`runtime.incubation`) runs, in order: the *short count*, the benchmark on a short
input counted exactly, parent and candidate (:func:`short_run`, :func:`short_passes`:
deterministic, so on wherever the manifest says how to run short; first, because it
rejects most candidates of a uniform mix and needs no passing tests to say "no
better"); the tests stopping at their first failure (:func:`failfast`), which every
survivor still passes; the *quick run*, the benchmark timed natively, parent and
candidate interleaved, whose verdict is :func:`quick_verdict`; and only then the full
exact count.

The quick run must never reject a candidate that would win: a timed pair on a shared
machine is noisy (parent against itself, logstats' one-pass benchmark: 0.81–1.05× over
20 pairs), so it rejects only when *every* pair of up to :data:`QUICK_PAIRS` shows the
candidate below the floor (``[fitness] quick``, default :data:`QUICK_FLOOR`: 10 %
slower); one pair at or above the floor sends it on to the count at once, so a candidate
that passes pays for one pair only.  Pure: figures in, a verdict out (docs/sandbox.md,
"The evaluation cascade").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Literal

from evolution.manifest import Fitness, Manifest

#: the quick run rejects only a candidate whose every pair is below this ratio of its
#: parent (1.0 = as fast; 0.9 = 10 % slower); the manifest's ``[fitness] quick`` sets it
QUICK_FLOOR = 0.9
#: how many timed pairs the quick run takes at most before it rejects
QUICK_PAIRS = 3

Verdict = Literal["pass", "more", "reject"]

_FAILFAST = {"unittest": "--failfast", "pytest": "-x"}
_ALREADY = {"-f", "--failfast", "-x", "--exitfirst"}


def failfast(command: Sequence[str]) -> list[str]:
    """``command`` stopping at its first failing test, where its runner is one TARS knows.

    ``python -m unittest …`` gets ``--failfast``, ``pytest`` / ``python -m pytest`` get
    ``-x``; any other command is returned as it is (a failing candidate then pays for
    its whole suite, never for the count).
    """
    args = list(command)
    runner = _runner(args)
    if runner is None or _ALREADY.intersection(args):
        return args
    return [*args, _FAILFAST[runner]]


def _runner(args: Sequence[str]) -> str | None:
    """ "unittest" or "pytest" when ``args`` runs one of them, else None."""
    if not args:
        return None
    program = PurePath(args[0]).name
    if program in ("pytest", "py.test"):
        return "pytest"
    if not program.startswith("python"):
        return None
    for index, arg in enumerate(args[1:], 1):
        if arg == "-m" and index + 1 < len(args):
            module = args[index + 1]
            return module if module in _FAILFAST else None
        if not arg.startswith("-"):
            return None  # a script: the runner is not known
    return None


def quick_verdict(
    ratios: Sequence[float], floor: float = QUICK_FLOOR, pairs: int = QUICK_PAIRS
) -> Verdict:
    """What the quick run's pairs so far say: "pass" to the count, "more" pairs, or "reject".

    ``ratios`` are the candidate's gains over its parent, one per timed pair (> 1 is
    better).  One pair at or above ``floor`` passes; ``pairs`` pairs all below it reject.
    """
    if any(ratio >= floor for ratio in ratios):
        return "pass"
    return "reject" if len(ratios) >= pairs else "more"


def quick_reason(ratios: Sequence[float], floor: float = QUICK_FLOOR) -> str:
    """Why the quick run rejected: the candidate's best pair, the pairs and the floor, in words."""
    shown = ", ".join(f"{ratio:.2f}×" for ratio in ratios)
    return (
        f"rejected at the quick run: {max(ratios):.2f}× its parent at best "
        f"({len(ratios)} timed pairs: {shown}; every pair below the {floor:.2f}× floor), "
        "so it was not counted"
    )


#: the environment variable that tells a genome's benchmark the share of its counted
#: input to run for the short count (``[fitness] short_scale``)
SHORT_SCALE_ENV = "TARS_BENCH_SCALE"


def short_run(fitness: Fitness) -> tuple[tuple[str, ...], dict[str, str]] | None:
    """How the benchmark runs short: (arguments to append, environment to add), or None.

    None when the manifest sets neither ``short_scale`` nor ``short_args``: the genome
    has no short input, and the cascade goes straight to the full count.
    """
    if fitness.short_scale is None and not fitness.short_args:
        return None
    env = {} if fitness.short_scale is None else {SHORT_SCALE_ENV: repr(fitness.short_scale)}
    return tuple(fitness.short_args), env


def short_margin(fitness: Fitness) -> float:
    """The short gain a candidate needs to be counted in full: the manifest's, or half the threshold's gain."""
    if fitness.short_margin is not None:
        return fitness.short_margin
    return 1.0 + (fitness.threshold - 1.0) / 2.0


def short_gain(parent: float, candidate: float, parent_full: float, fitness: Fitness) -> float:
    """The candidate's gain on the full input as its short count foretells it.

    With ``short_scale``: the instructions it saved on the short input, divided by the
    scale (the input they stand for), as a gain on the parent's *full* count.  A run's
    fixed cost (the interpreter, the imports: over half of logstats' short count) is the
    same at any scale, so the plain short ratio dilutes every gain (``memoize``, 1.029×
    in full, was 1.006× short and lost to the margin); scaled, it is not diluted.  A
    saving in the fixed part is overstated, which only sends a candidate on.  With
    ``short_args`` alone the scale is not known: the plain short ratio.
    """
    scale = fitness.short_scale
    if scale is None:
        return parent / candidate
    rest = parent_full - (parent - candidate) / scale
    return parent_full / rest if rest > 0 else float("inf")


def short_passes(gain: float, fitness: Fitness) -> bool:
    """Whether a candidate whose :func:`short_gain` is ``gain`` goes on to the full count."""
    return gain >= short_margin(fitness)


def short_reason(parent: float, candidate: float, gain: float, fitness: Fitness) -> str:
    """Why the short count rejected: both counts, the foretold gain and the margin, in words."""
    return (
        f"rejected at the short count: {gain:.4f}× its parent foretold from the short input "
        f"({candidate / 1e6:,.1f} M instructions against {parent / 1e6:,.1f} M; it needs "
        f"{short_margin(fitness):.4f}×), so it was not counted in full"
    )


#: what a short count costs against a full count of the same genome (CPU: 0.46–0.48 on
#: logstats, docs/benchmarks.md "Where the time goes, session 18"): a short count is
#: mostly the interpreter starting under valgrind, so it is about half a full one
SHORT_COST = 0.5
#: how many candidates must have reached the short count before their pass share decides
SHORT_EVIDENCE = 6


def short_pays(
    reached: int, passed: int, cost: float = SHORT_COST, evidence: int = SHORT_EVIDENCE
) -> bool:
    """Whether the short count still pays for a genome, from the candidates of its run so far.

    With a share ``p`` of the candidates that reach it passing (and then paying the full
    count too), the stage costs ``cost + p`` of the path without it: it pays while
    ``p < 1 - cost``.  A learning planner draws likely winners, most of which pass (8 of
    14 in session 18's learning runs), and the stage then only adds; a uniform or a
    model's mix is mostly near-parent losers (2 of 12 passed), where it halves the count.
    Before ``evidence`` candidates have reached it, it stays on.
    """
    if reached < evidence:
        return True
    return passed / reached < 1.0 - cost


def without_short(manifest: Manifest) -> Manifest:
    """``manifest`` with no short count (the incubation then goes straight to the full count)."""
    fitness = manifest.fitness.model_copy(update={"short_scale": None, "short_args": []})
    return manifest.model_copy(update={"fitness": fitness})
