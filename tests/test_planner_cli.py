"""`tars evolve analyze`/`plan` learn from the store's log and say in words why nothing is left."""

from __future__ import annotations

import random
import textwrap

from rich.console import Console

from cli.planning import history, show_opportunities, show_plans
from events.records import CandidateRecord
from events.store import GenomeStore
from evolution.analysis import analyze
from evolution.calibration import Calibration
from evolution.manifest import parse_manifest
from evolution.patch import make_patch
from evolution.planner import Outcomes, plan
from evolution.tree import version_id

MANIFEST_TEXT = textwrap.dedent(
    """
    [genome]
    name = "loops"
    sources = ["pkg/*.py"]

    [commands]
    test = "python -m pytest -q"
    bench = "python bench.py"

    [fitness]
    metric = "seconds"
    direction = "minimize"
    threshold = 1.02
    """
)
MANIFEST = parse_manifest(MANIFEST_TEXT)

SOURCE = textwrap.dedent(
    """
    def parse(lines, out):
        for line in lines:
            out.append(line)
        return out
    """
)
ALIASED = SOURCE.replace(
    "    for line in lines:\n        out.append(line)",
    "    _out_append = out.append\n    for line in lines:\n        _out_append(line)",
)
TREE = {"pkg/a.py": SOURCE}


def _record(tree: dict[str, str], ratio: float) -> CandidateRecord:
    patch = make_patch(tree, {"pkg/a.py": ALIASED})
    return CandidateRecord(
        f"c{ratio}", version_id(tree), patch, "local_alias", "local_alias", "reject",
        ["gain below threshold"], ratio, ratio, ratio, True,
    )  # fmt: skip


def _console() -> Console:
    return Console(record=True, width=200, color_system=None)


def test_a_new_genome_has_no_history() -> None:
    with GenomeStore.open("memory://") as store:
        calibration, outcomes = history(store, "loops")
    assert calibration.observations == {} and outcomes.table == {} and not outcomes.failed


def test_analyze_says_why_when_the_log_shows_nothing_pays() -> None:
    assert ALIASED != SOURCE
    with GenomeStore.open("memory://") as store:
        store.register("loops", MANIFEST_TEXT, TREE, 1.0, "n1")
        store.record_cycle("loops", "n1", evaluated=[_record(TREE, 1.001)], cycle=1, seed=7)
        calibration, outcomes = history(store, "loops")
    assert calibration.tries("local_alias") == 1
    assert len(outcomes.failed) == 1
    opportunities = analyze(TREE, MANIFEST)
    assert [o.kind for o in opportunities] == ["local_alias"]
    console = _console()
    show_opportunities(console, opportunities, MANIFEST, calibration, outcomes)
    text = console.export_text()
    assert "local_alias" in text and "pkg/a.py:4 parse" in text
    assert "loops: the one site was tried on its function's current code and rejected" in text


def test_plan_with_nothing_prints_the_reason_not_an_empty_table() -> None:
    console = _console()
    show_plans(console, [], [], MANIFEST, *history_of_nothing())
    text = console.export_text()
    assert "┏" not in text  # no table
    assert (
        text.strip() == "loops: no site: the analyzer found no place a rewrite applies in pkg/*.py"
    )


def test_plan_shows_plans_and_no_reason_when_something_is_worth_a_try() -> None:
    opportunities = analyze(TREE, MANIFEST)
    plans = plan(opportunities, history_of_nothing()[1], risks={}, rng=random.Random(0), limit=4)
    console = _console()
    show_plans(console, plans, opportunities, MANIFEST, *history_of_nothing())
    text = console.export_text()
    assert "local_alias" in text and "nothing is worth" not in text


def history_of_nothing() -> tuple[Calibration, Outcomes]:
    with GenomeStore.open("memory://") as store:
        return history(store, "loops")
