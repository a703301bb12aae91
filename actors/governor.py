"""Governor: judges proven candidates against the policy."""

from __future__ import annotations

import random
from typing import ClassVar

from actors.base import RoleActor
from actors.messages import Judge
from evolution.generate import Candidate
from evolution.manifest import Manifest
from evolution.patch import apply_patch, patch_size, touched_files
from evolution.policy import Decision, Evidence, Policy, decide, new_imports
from evolution.stats import Comparison, compare, exact
from evolution.tree import Tree
from runtime.incubation import IncubationReport


class Governor(RoleActor):
    role: ClassVar[str] = "governor"
    handlers: ClassVar[dict[type, str]] = {Judge: "on_judge"}

    def on_judge(self, message: Judge) -> list[tuple[Decision, Evidence]]:
        return [
            judge(message.manifest, message.tree, candidate, report, message.policy, message.seed)
            for candidate, report in zip(message.candidates, message.reports, strict=True)
        ]


def judge(
    manifest: Manifest,
    tree: Tree,
    candidate: Candidate,
    report: IncubationReport,
    policy: Policy,
    seed: int,
) -> tuple[Decision, Evidence]:
    """Evidence from a report, then the policy's verdict; pure apart from the seeded rng.

    The manifest's work counts and limits apply whatever policy the caller gave: they
    say what "better" means for this genome, as the metric does; so do its ``[policy]``
    hold rules, which say what its owner wants to see before it is adopted.
    """
    policy = policy.demanding(manifest.fitness, manifest.policy)
    comparison: Comparison | None = None
    if (
        report.failure is None
        and report.measure == "instructions"
        and report.parent_samples
        and report.candidate_samples
    ):
        # An exact count: fewer instructions is better whatever the benchmark metric's direction.
        comparison = exact(
            report.parent_samples[0], report.candidate_samples[0], direction="minimize"
        )
    elif report.failure is None and len(report.parent_samples) >= 2:
        comparison = compare(
            report.parent_samples,
            report.candidate_samples,
            direction=manifest.fitness.direction,
            confidence=manifest.fitness.confidence,
            rng=random.Random(f"{seed}:{candidate.id}"),
        )
    touched = tuple(touched_files(candidate.patch))
    new_tree = apply_patch(tree, candidate.patch)
    imports: list[str] = []
    for path in touched:
        if path.endswith(".py") and path in new_tree:
            imports.extend(new_imports(tree.get(path, ""), new_tree[path]))
    evidence = Evidence(
        tests_passed=report.tests_passed,
        comparison=comparison,
        patch_lines=patch_size(candidate.patch),
        touched=touched,
        protected_touched=tuple(p for p in touched if not manifest.is_source(p)),
        new_imports=tuple(sorted(set(imports))),
        failure=None if report.failure is None else f"{report.failure}: {report.detail}",
        generated_by=candidate.mutator,
        parent_figures=dict(report.parent_figures),
        candidate_figures=dict(report.candidate_figures),
    )
    return decide(evidence, policy), evidence
