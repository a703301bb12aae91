"""A cycle's verdicts as the log keeps them: a record per candidate, the holds, the adoption.

The governor judged each candidate; this turns its verdicts into the records, the held
candidates and the one adoption the cycle proposes.  Among timed winners plan order picks
(a timed ratio is noisy: picking the biggest would make two runs with the same seed
adopt different patches); among exact counts the best count wins; a composition of the
winners (:mod:`evolution.compose`) wins over timed ones only when its whole interval is
above the chosen gain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from events.records import Adoption, CandidateRecord, Held
from evolution.compose import COMPOSED, MERGE_FLOOR
from evolution.fitness import trade_offs
from evolution.generate import Candidate
from evolution.manifest import Fitness
from evolution.patch import apply_patch
from evolution.policy import Decision, Evidence
from evolution.stats import Comparison, median
from evolution.tree import version_id
from runtime.incubation import IncubationReport


def verdicts(
    candidates: list[Candidate],
    reports: list[IncubationReport],
    judged: list[tuple[Decision, Evidence]],
    version: str,
    tree: dict[str, str],
    predicted: Mapping[str, float] | None = None,
    fitness: Fitness | None = None,
) -> tuple[list[CandidateRecord], Adoption | None, list[Held]]:
    """The records of every candidate, the held ones, and the adoption (or None).

    ``predicted`` maps a patch to the gain its plan predicted (kept with the record for
    the calibration); ``fitness`` names the main metric, the limits and the work counts,
    so every figure is kept with the candidate as a trade-off (``tars log show``).
    """
    records: list[CandidateRecord] = []
    adoption: Adoption | None = None
    held: list[Held] = []
    for candidate, report, (decision, evidence) in zip(candidates, reports, judged, strict=True):
        comparison = evidence.comparison
        figures = _figures(evidence, report, fitness)
        records.append(
            CandidateRecord(
                candidate=candidate.id,
                parent=version,
                patch=candidate.patch,
                mutator=candidate.mutator,
                kind=candidate.kind,
                verdict=decision.verdict,
                reasons=list(decision.reasons),
                ratio=comparison.ratio if comparison else None,
                low=comparison.low if comparison else None,
                high=comparison.high if comparison else None,
                tests_passed=report.tests_passed,
                expected_gain=(predicted or {}).get(candidate.patch),
                figures=figures,
            )
        )
        ev = _evidence_dict(candidate, report, evidence)
        if figures:
            ev["figures"] = figures
        if decision.rules:
            ev["held_by"] = list(decision.rules)
        if decision.verdict == "hold":
            held.append(
                Held(
                    candidate.id,
                    version,
                    candidate.patch,
                    candidate.mutator,
                    candidate.kind,
                    list(decision.reasons),
                    ev,
                )
            )
        # Plan order, not the measured ratio, picks among timed winners: a timed ratio is
        # noisy and would make two runs with the same seed adopt different patches. An
        # exact count is not noisy, so the best exact winner is taken.
        if (
            decision.verdict == "adopt"
            and comparison is not None
            and (adoption is None or _better(comparison, adoption, candidate.mutator))
        ):
            new_tree = apply_patch(tree, candidate.patch)
            adoption = Adoption(
                version=version_id(new_tree),
                parent=version,
                patch=candidate.patch,
                mutator=candidate.mutator,
                kind=candidate.kind,
                fitness_before=median(report.parent_samples),
                fitness_after=median(report.candidate_samples),
                ratio=comparison.ratio,
                low=comparison.low,
                high=comparison.high,
                evidence=ev,
            )
    return records, adoption, held


def _better(comparison: Comparison, adoption: Adoption, mutator: str) -> bool:
    """Whether a winner beats the one chosen so far: an exact count by its count; a
    composition of timed winners only when its whole interval is above the chosen gain."""
    if adoption.ratio is None:
        return False
    if comparison.low == comparison.high and adoption.low == adoption.high:
        return comparison.ratio > adoption.ratio
    return mutator == COMPOSED and comparison.low > adoption.ratio


def winners(
    candidates: Sequence[Candidate], judged: Sequence[tuple[Decision, Evidence]]
) -> list[tuple[float, Candidate]]:
    """What a composition may merge, as (measured gain, candidate), best first (plan order on ties).

    The candidates the governor would adopt, and those it rejected only for a gain below
    the threshold when that gain is an *exact* count of at least :data:`MERGE_FLOOR` with
    every test passing: three exact 1.01× wins are a real 1.03× together (seqdiff's
    `_calculate_ratio` inlined, measured 1.010× alone, is one).  The composition itself
    is judged against the threshold like any candidate; a held candidate is never merged.
    """
    won = [
        (-(evidence.comparison.ratio if evidence.comparison else 0.0), i, c)
        for i, (c, (decision, evidence)) in enumerate(zip(candidates, judged, strict=True))
        if c.mutator != COMPOSED
        and (decision.verdict == "adopt" or _exact_gain(decision, evidence))
    ]
    return [(-gain, c) for gain, _, c in sorted(won)]


def _exact_gain(decision: Decision, evidence: Evidence) -> bool:
    """A rejection whose only fault is its size: an exact count of at least MERGE_FLOOR, tests passing."""
    comparison = evidence.comparison
    return (
        decision.verdict == "reject"
        and evidence.tests_passed
        and evidence.failure is None
        and comparison is not None
        and comparison.low == comparison.high
        and comparison.ratio >= MERGE_FLOOR
    )


def _evidence_dict(
    candidate: Candidate, report: IncubationReport, evidence: Evidence
) -> dict[str, Any]:
    comparison = evidence.comparison
    return {
        "candidate": candidate.id,
        "description": candidate.description,
        "tests_passed": report.tests_passed,
        "parent_samples": list(report.parent_samples),
        "candidate_samples": list(report.candidate_samples),
        "ratio": comparison.ratio if comparison else None,
        "low": comparison.low if comparison else None,
        "high": comparison.high if comparison else None,
        "confidence": comparison.confidence if comparison else None,
        "patch_lines": evidence.patch_lines,
        "new_imports": list(evidence.new_imports),
        "failure": evidence.failure,
    }


def _figures(
    evidence: Evidence, report: IncubationReport, fitness: Fitness | None
) -> dict[str, Any]:
    """Every figure of both sides as the record keeps it: the main measurement's medians
    (the metric, or the instruction count: ``"main": True``), then every other figure."""
    if not evidence.parent_figures and not evidence.candidate_figures:
        return {}
    out = trade_offs(
        fitness.metric if fitness else "",
        fitness.limits if fitness else (),
        fitness.work if fitness else (),
        evidence.parent_figures,
        evidence.candidate_figures,
    )
    name = (
        "instructions"
        if report.measure == "instructions"
        else fitness.metric
        if fitness
        else "metric"
    )
    if report.parent_samples and report.candidate_samples and name not in out:
        out[name] = {
            "parent": median(report.parent_samples),
            "candidate": median(report.candidate_samples),
            "main": True,
        }
    return out
