"""The Governor's policy: adopt, reject, or hold a proven candidate for a human.

The decision is a pure function of the evidence the incubator gathered and the policy
in force, so every node judging the same evidence reaches the same verdict, and the
verdict can be re-derived from the log when someone asks "why was this adopted?".

Order of the tests, and why:

1. A candidate that crashed, hung or failed a test is rejected outright: no gain pays
   for a wrong answer.
2. The gain must be *significant*: the low end of the confidence interval above 1.0.
   A ratio of 1.08 measured on noise of ±10 % is a coin toss, and adopting coin tosses
   makes the genome random-walk instead of improve.
3. The gain must be *worth it*: the measured ratio at or above the threshold, because
   every adoption costs a consensus round, a deploy and a place in the lineage.  And it
   must not be bought with something else: the benchmark's work counts exactly the
   parent's, and no limit of the manifest broken (:mod:`evolution.fitness`); these
   rejections come first among the reasons.
4. Only a candidate that would be adopted is checked for risk; a risky one is *held*
   (not rejected) so a human can still take the gain with ``tars approve``.

The risk checks weigh the evidence, not the size alone: a big patch with an *exact* gain
(an instruction count, zero-width interval) that passed every test is not the same risk as
a big patch with a noisy one, so the line limit grows with an exact gain
(:func:`size_allowance`); a timed gain keeps the plain limit, because its interval is
what the size limit protects against.  A change a language model wrote is held for a
human by default, whatever its evidence (``approval_on_model``), and a gain at or above
``approval_above`` (off unless the manifest's ``[policy]`` sets it) is too good to take
unseen.  Every hold reason names its rule, so the held event says which rule held it; the
manifest's ``[policy]`` sets the rules per genome (:meth:`Policy.demanding`).
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from evolution.fitness import limit_reasons, work_reasons
from evolution.manifest import Fitness, FitnessLimit, HoldRules
from evolution.stats import Comparison

#: Standard-library modules a mutator may introduce without approval: pure, no I/O, no
#: process or network access, and the ones the built-in AST rewrites actually need.
SAFE_IMPORTS = frozenset(
    {"functools", "heapq", "re", "itertools", "collections", "bisect", "operator", "math"}
)


@dataclass(frozen=True)
class Policy:
    """What the governor demands; defaults match the manifest's ``[fitness]`` defaults."""

    threshold: float = 1.05
    confidence: float = 0.95
    max_patch_lines: int = 40
    approval_on_new_imports: bool = True
    approval_on_protected: bool = True
    #: a model-written candidate waits for a human, whatever its evidence
    approval_on_model: bool = True
    #: a gain at or above this ratio waits for a human (too good to take unseen); None: never
    approval_above: float | None = None
    #: an exact gain of this ratio doubles the line limit, its square triples it, …
    size_step: float = 1.10
    #: the line limit never grows past this many times ``max_patch_lines``
    max_size_factor: float = 5.0
    #: the manifest's other objectives (``[[fitness.limits]]``): a broken one is a rejection
    limits: tuple[FitnessLimit, ...] = ()
    #: the manifest's work counts (``[fitness] work``): a changed one is a rejection
    work: tuple[str, ...] = ()

    def demanding(self, fitness: Fitness, rules: HoldRules | None = None) -> Policy:
        """This policy with the manifest's limits and work counts, which always apply, and
        its ``[policy]`` hold rules where it sets them (the genome's owner knows its risks)."""
        return replace(self, limits=tuple(fitness.limits), work=tuple(fitness.work)).with_rules(
            rules
        )

    def with_rules(self, rules: HoldRules | None) -> Policy:
        """This policy with the hold rules ``rules`` sets (cluster.yml's ``evolution.policy``,
        a manifest's ``[policy]``); a rule it leaves out keeps this policy's value."""
        chosen = {k: v for k, v in (rules.model_dump() if rules else {}).items() if v is not None}
        return replace(self, **chosen) if chosen else self


@dataclass(frozen=True)
class Evidence:
    """What incubation found out about one candidate."""

    tests_passed: bool
    comparison: Comparison | None
    patch_lines: int
    touched: tuple[str, ...]
    protected_touched: tuple[str, ...]
    new_imports: tuple[str, ...]
    failure: str | None = None
    #: who wrote the change: a mutator's name, or ``llm:<model>`` for a language model
    generated_by: str = ""
    #: the figures besides the main metric, per side (:func:`evolution.fitness.summarise`)
    parent_figures: Mapping[str, float] = field(default_factory=dict)
    candidate_figures: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """A verdict with the short reasons shown to users and stored in the log."""

    verdict: Literal["adopt", "reject", "hold"]
    reasons: tuple[str, ...]
    #: the policy rules that held a candidate (``max_patch_lines``, ``approval_on_model``, …)
    rules: tuple[str, ...] = ()


def decide(evidence: Evidence, policy: Policy) -> Decision:
    """Judge one candidate; reasons are complete (every failed test is named), not just the first."""
    if evidence.failure:
        return Decision("reject", (f"candidate failed: {evidence.failure}",))
    if not evidence.tests_passed:
        return Decision("reject", ("tests failed",))
    comparison = evidence.comparison
    if comparison is None:
        return Decision("reject", ("no benchmark comparison",))

    exact = comparison.low == comparison.high
    gain = f"gain {comparison.ratio:.4f}×" if exact else f"gain {_x(comparison.ratio)}"
    interval = (
        "an exact count"
        if exact
        else f"{comparison.confidence:.0%} interval {_x(comparison.low)}–{_x(comparison.high)}"
    )
    rejections: list[str] = [
        *work_reasons(policy.work, evidence.parent_figures, evidence.candidate_figures),
        *limit_reasons(policy.limits, evidence.parent_figures, evidence.candidate_figures),
    ]
    if comparison.confidence + 1e-9 < policy.confidence:
        rejections.append(
            f"measured at {comparison.confidence:.0%} confidence, policy requires {policy.confidence:.0%}"
        )
    if comparison.low <= 1.0:
        rejections.append(
            f"no gain: {gain}, {interval}"
            if exact
            else f"not significant: {interval} includes no gain (1.00×)"
        )
    if comparison.ratio < policy.threshold:
        rejections.append(f"{gain} below threshold {_x(policy.threshold)}")
    if rejections:
        return Decision("reject", tuple(rejections))

    accepted = f"{gain} ({interval}) meets threshold {_x(policy.threshold)}"
    risks = _risks(evidence, comparison, policy, gain)
    if risks:
        return Decision(
            "hold", (*(why for why, _ in risks), accepted), tuple(rule for _, rule in risks)
        )
    return Decision("adopt", (accepted,))


def _risks(
    evidence: Evidence, comparison: Comparison, policy: Policy, gain: str
) -> list[tuple[str, str]]:
    """(reason, rule) for every risk of a candidate that would be adopted; each reason names its rule."""
    risks: list[tuple[str, str]] = []
    allowed = size_allowance(comparison, policy)
    if evidence.patch_lines > allowed:
        why = "" if allowed == policy.max_patch_lines else f" for an exact {gain}"
        risks.append(
            (
                f"patch changes {evidence.patch_lines} lines, over the {allowed}-line limit{why} "
                "(policy max_patch_lines)",
                "max_patch_lines",
            )
        )
    if policy.approval_on_protected and evidence.protected_touched:
        risks.append(
            (
                f"touches protected files: {', '.join(evidence.protected_touched)} "
                "(policy approval_on_protected)",
                "approval_on_protected",
            )
        )
    if policy.approval_on_new_imports:
        unsafe = unsafe_imports(evidence.new_imports)
        if unsafe:
            risks.append(
                (
                    f"new imports need approval: {', '.join(unsafe)} (policy approval_on_new_imports)",
                    "approval_on_new_imports",
                )
            )
    above = policy.approval_above
    if above is not None and comparison.ratio >= above:
        risks.append(
            (
                f"{gain} is at or above {_x(above)}: a gain this large waits for a human "
                "(policy approval_above)",
                "approval_above",
            )
        )
    if policy.approval_on_model and is_model_written(evidence.generated_by):
        risks.append(
            (
                f"written by a model ({evidence.generated_by}): model-written changes wait for a "
                "human (policy approval_on_model)",
                "approval_on_model",
            )
        )
    return risks


def size_allowance(comparison: Comparison, policy: Policy) -> int:
    """The line limit this evidence earns: the plain limit, grown by an exact gain.

    ``max_patch_lines × min(max_size_factor, 1 + log(gain) / log(size_step))`` for an exact
    count, so with the defaults an exact 1.10× doubles the 40 lines, an exact 1.21× triples
    them, and an exact 1.5× reaches the cap, 200 lines (5 × 40).  A timed gain earns nothing: its
    interval is exactly the uncertainty a size limit guards against.
    """
    if comparison.low != comparison.high or comparison.ratio <= 1.0:
        return policy.max_patch_lines
    steps = math.log(comparison.ratio) / math.log(max(policy.size_step, 1.0 + 1e-9))
    factor = min(policy.max_size_factor, 1.0 + steps)
    return max(policy.max_patch_lines, round(policy.max_patch_lines * factor))


def is_model_written(generated_by: str) -> bool:
    """Whether a candidate came from a language model (its generator is ``llm:<model>``)."""
    return generated_by.startswith("llm:") or generated_by == "llm"


def unsafe_imports(modules: tuple[str, ...]) -> tuple[str, ...]:
    """The imports outside :data:`SAFE_IMPORTS`, judged by top-level package (``collections.abc`` is safe)."""
    return tuple(m for m in modules if m.startswith(".") or m.split(".", 1)[0] not in SAFE_IMPORTS)


def new_imports(parent_source: str, candidate_source: str) -> tuple[str, ...]:
    """Modules the candidate imports that the parent did not, sorted.

    A file that does not parse imports nothing as far as this check can tell: an
    unparseable candidate fails its tests anyway, and an unparseable parent makes every
    candidate import count as new, which errs on the side of asking a human.
    """
    return tuple(sorted(_imports(candidate_source) - _imports(parent_source)))


@functools.lru_cache(maxsize=256)
def _imports(source: str) -> frozenset[str]:
    # Cached per text: every candidate of a version is judged against the same parent
    # file, and a candidate generated again on an unchanged head has the same text.
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    found: set[str] = set()
    for node in ast.walk(tree):  # imports inside functions count: they run too
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return frozenset(found)


def _x(ratio: float) -> str:
    return f"{ratio:.2f}×"


def needs_more_rounds(comparison: Comparison, policy: Policy) -> bool:
    """Whether the evidence is a close call worth more A/B rounds before deciding.

    Only a candidate whose point estimate is at (or just under) the threshold but whose
    interval still includes "no gain" is a close call: more data settles it, while a
    clear winner or a clear loser would be decided the same way after any more rounds.
    Deciding close calls on more data is what makes two runs with one seed agree.
    """
    clear_win = comparison.low > 1.0 and comparison.ratio >= policy.threshold
    promising = comparison.ratio >= policy.threshold
    return promising and not clear_win
