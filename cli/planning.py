"""What `tars evolve analyze` and `tars evolve plan` show: calibrated figures, or why nothing.

Both verbs read what the store's log has learnt about the genome (the judged candidates:
what each kind of rewrite measured, which sites were rejected on unchanged code) so the
figures they print are the ones a run would act on, and when nothing is worth a
candidate they say why in words instead of printing an empty table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from evolution.analysis import Opportunity, calibrated
from evolution.calibration import Calibration, from_log
from evolution.errors import TarsError
from evolution.manifest import Manifest
from evolution.planner import Outcomes, Plan
from evolution.stopping import worth_trying

if TYPE_CHECKING:
    from rich.console import Console

    from events.store import GenomeStore


def history(store: GenomeStore, name: str) -> tuple[Calibration, Outcomes]:
    """The calibration and the planner's memory the log holds for genome ``name`` (empty if new)."""
    if name not in store.genomes():
        return Calibration(), Outcomes()
    rows = [e.data for e in store.log(genome=name) if e.type == "CandidateEvaluated"]
    trees: dict[str, Mapping[str, str] | None] = {}

    def tree_of(version: str) -> Mapping[str, str] | None:
        if version not in trees:
            try:
                trees[version] = store.materialise(name, version)
            except TarsError:
                trees[version] = None
        return trees[version]

    return from_log(rows), Outcomes.from_log(rows, tree_of)


def show_opportunities(
    console: Console,
    opportunities: Sequence[Opportunity],
    manifest: Manifest,
    calibration: Calibration,
    outcomes: Outcomes,
) -> None:
    """The ranked table with calibrated and static gains, then the stop reason if there is one."""
    from rich.table import Table

    ranked = calibrated(opportunities, calibration)
    if ranked:
        table = Table("gain", "static", "conf", "kind", "where", "evidence")
        for opp in ranked:
            table.add_row(
                f"{opp.expected_gain:.3f}×",
                f"{(opp.predicted_gain or opp.expected_gain):.3f}×",
                f"{opp.confidence:.2f}",
                opp.kind,
                f"{opp.file}:{opp.line} {opp.function}",
                opp.evidence,
            )
        console.print(table)
    _reason(console, ranked, manifest, calibration, outcomes)


def show_plans(
    console: Console,
    plans: Sequence[Plan],
    opportunities: Sequence[Opportunity],
    manifest: Manifest,
    calibration: Calibration,
    outcomes: Outcomes,
) -> None:
    """The chosen plans, or why there are none worth a candidate."""
    from rich.table import Table

    if plans:
        table = Table("score", "mutator", "where", "why")
        for item in plans:
            opp = item.opportunity
            where = f"{opp.file}:{opp.line} {opp.function}"
            table.add_row(f"{item.score:.3f}", item.mutator, where, item.reason)
        console.print(table)
    _reason(console, opportunities, manifest, calibration, outcomes)


def _reason(
    console: Console,
    opportunities: Sequence[Opportunity],
    manifest: Manifest,
    calibration: Calibration,
    outcomes: Outcomes,
) -> None:
    reason = worth_trying(
        opportunities,
        threshold=manifest.fitness.threshold,
        calibration=calibration,
        outcomes=outcomes,
        sources=manifest.genome.sources,
    )
    if reason is not None:
        console.print(f"[yellow]{manifest.name}:[/] {reason}", highlight=False)
