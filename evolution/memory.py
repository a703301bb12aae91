"""What one genome's search remembers between cycles, rebuilt from the log at start.

The planner's bandit and rejected sites (:class:`~evolution.planner.Outcomes`), the
analyzer's calibration per rewrite kind (:class:`~evolution.calibration.Calibration`) and
the normal forms of every tree already judged (:func:`~evolution.novelty.tree_key`) are
three views of the same history: the ``CandidateEvaluated`` rows of the log.  Keeping
them together means the coordinator feeds each cycle's verdicts to one object, and a
restarted node rebuilds the same memory from the same rows — on every node alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evolution import calibration as calibration_module
from evolution.analysis import Opportunity, calibrated
from evolution.calibration import Calibration
from evolution.compose import COMPOSED, MERGE_FLOOR
from evolution.errors import PatchError
from evolution.generate import Candidate
from evolution.novelty import tree_key
from evolution.patch import apply_patch
from evolution.planner import Outcomes
from evolution.stopping import worth_a_slot, worth_trying

TreeOf = Callable[[str], Mapping[str, str] | None]


@dataclass
class SearchMemory:
    """Outcomes, calibration and judged trees of one genome's search."""

    outcomes: Outcomes = field(default_factory=Outcomes)
    calibration: Calibration = field(default_factory=Calibration)
    #: normal-form keys of every candidate tree judged, per parent version
    judged: dict[str, set[str]] = field(default_factory=dict)
    #: what a composition may merge, per parent version: patch -> (exact gain, candidate).
    #: Kept across cycles: while the head does not move, a 1.01× found in cycle 2 and one
    #: found in cycle 3 are still two gains on the same code, worth merging together.
    gains: dict[str, dict[str, tuple[float, Candidate]]] = field(default_factory=dict)

    @classmethod
    def from_log(cls, rows: Iterable[Mapping[str, Any]], tree_of: TreeOf) -> SearchMemory:
        """The memory the log's ``CandidateEvaluated`` rows hold (``tree_of``: version → tree)."""
        rows = list(rows)
        memory = cls(Outcomes.from_log(rows, tree_of), calibration_module.from_log(rows))
        for row in rows:
            parent = tree_of(str(row.get("parent", "")))
            if parent is not None:
                memory._judge(str(row.get("parent")), parent, str(row.get("patch", "")))
            gain = _mergeable(row)
            if gain is not None:
                memory.mergeable(str(row["parent"]), [gain])
        return memory

    def mergeable(self, version: str, found: Iterable[tuple[float, Candidate]]) -> list[Candidate]:
        """Keep ``found`` (gain, candidate) for ``version``; every gain kept for it, best first."""
        kept = self.gains.setdefault(version, {})
        for gain, candidate in found:
            if candidate.patch not in kept or kept[candidate.patch][0] < gain:
                kept[candidate.patch] = (gain, candidate)
        ranked = sorted(kept.values(), key=lambda pair: (-pair[0], pair[1].id))
        return [candidate for _, candidate in ranked]

    def prepare(
        self,
        opportunities: Sequence[Opportunity],
        threshold: float,
        sources: Sequence[str],
        version: str = "",
        compose: bool = True,
    ) -> tuple[list[Opportunity], str | None]:
        """The sites worth a candidate this cycle, calibrated by what was measured, best
        first; or none, and why nothing is worth a try.

        Worth a candidate (:func:`~evolution.stopping.worth_a_slot`): a site that may pass
        alone, the best site of a kind never measured, or, with ``compose``, sites that
        may pass composed with each other and the gains kept for ``version``.
        """
        ranked = calibrated(opportunities, self.calibration)
        slots = worth_a_slot(
            ranked,
            threshold=threshold,
            calibration=self.calibration,
            outcomes=self.outcomes,
            kept=[gain for gain, _ in self.gains.get(version, {}).values()],
            compose=compose,
        )
        if slots:
            return slots, None
        reason = worth_trying(
            ranked,
            threshold=threshold,
            calibration=self.calibration,
            outcomes=self.outcomes,
            sources=sources,
            try_untried=True,
        )
        return [], reason or f"no site is worth a candidate against the {threshold:g}× threshold"

    def worth_tuning(self, kind: str = "tunable") -> bool:
        """Whether the parameter search is worth a slot: never measured, or it measured a
        gain a composition could use (the rule an untried rewrite kind gets)."""
        seen = self.calibration.observations.get(kind, ())
        return not seen or any(measured >= MERGE_FLOOR for measured, _ in seen)

    def novel(
        self, candidates: Sequence[Candidate], version: str, tree: Mapping[str, str]
    ) -> list[Candidate]:
        """``candidates`` whose program was never judged on ``version`` (first of each kept)."""
        seen = set(self.judged.get(version, ()))
        out: list[Candidate] = []
        for candidate in candidates:
            key = _key(tree, candidate.patch)
            if key is None or key not in seen:
                out.append(candidate)
                if key is not None:
                    seen.add(key)
        return out

    def learn(
        self,
        version: str,
        tree: Mapping[str, str],
        judged: Iterable[tuple[str, str, str, float | None, bool]],
        predicted: Mapping[str, float] | None = None,
    ) -> None:
        """Feed one cycle's verdicts: (mutator, kind, patch, measured ratio, settled) each;
        settled: rejected or held (:data:`~evolution.planner.SETTLED`), not proposed again
        on the same code.

        ``predicted`` maps a patch to the static gain its opportunity was predicted at,
        when known, so the calibration learns how far off the model was.
        """
        for mutator, kind, patch, ratio, rejected in judged:
            self.calibration.record(kind, ratio, (predicted or {}).get(patch))
            if rejected:
                self.outcomes.remember_patch(mutator, tree, patch)
            self._judge(version, tree, patch)

    def _judge(self, version: str, tree: Mapping[str, str], patch: str) -> None:
        key = _key(tree, patch)
        if key is not None:
            self.judged.setdefault(version, set()).add(key)


def _mergeable(row: Mapping[str, Any]) -> tuple[float, Candidate] | None:
    """A logged candidate a composition may merge: an exact gain of at least MERGE_FLOOR, tests passing."""
    ratio, low, high = row.get("ratio"), row.get("low"), row.get("high")
    if (
        row.get("mutator") == COMPOSED
        or row.get("tests_passed") is not True
        or row.get("verdict") not in ("adopt", "reject")
        or not isinstance(ratio, (int, float))
        or low != high
        or ratio < MERGE_FLOOR
    ):
        return None
    parent, patch = str(row.get("parent", "")), str(row.get("patch", ""))
    candidate = Candidate(
        str(row.get("candidate", "")), parent, patch, str(row.get("mutator", "")),
        str(row.get("kind", "")), "", "", 0, "from the log",
    )  # fmt: skip
    return float(ratio), candidate


def _key(tree: Mapping[str, str], patch: str) -> str | None:
    """The normal-form key of ``tree`` + ``patch``; None when the patch does not apply."""
    try:
        return tree_key(apply_patch(dict(tree), patch), tree)
    except PatchError:
        return None
