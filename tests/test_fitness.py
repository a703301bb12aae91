"""Multi-objective fitness and work counts (issue 10, items 5 and 7).

A candidate is adopted when the main metric gains and nothing else gave way: its peak
memory (measured by the sandbox) and the figures the manifest limits stay within their
limits, and the work it reports doing is exactly its parent's.  The pure rules first,
then a real node proving planted candidates of the collatz genome (tests/data): a memo
table that grows (faster, far more memory: refused), a fixed small table (faster, within
the limit: adopted), and an attack that skips half the input (refused by its work count).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
from fitkit import COLLATZ, candidate, collatz, planted
from typer.testing import CliRunner

from actors.governor import judge
from cli.main import app
from consensus import entries as E
from events.records import CandidateRecord
from events.store import GenomeStore
from evolution.errors import ManifestError
from evolution.fitness import limit_reasons, summarise, trade_offs, work_reasons
from evolution.manifest import FitnessLimit, parse_manifest
from evolution.patch import apply_patch
from evolution.policy import Evidence, Policy, decide
from evolution.stats import Comparison
from node import Node, NodeConfig
from runtime.counting import forget_counts, valgrind
from runtime.genome_files import load_genome
from runtime.incubation import incubate
from runtime.sandbox import Sandbox

MEMORY = FitnessLimit(metric="peak_memory_mb", direction="minimize", max_change=0.10)
EXACT = Comparison(ratio=1.5, low=1.5, high=1.5, rounds=1, confidence=1.0)


# ---- the manifest --------------------------------------------------------------------


def test_the_manifest_names_work_counts_and_limits() -> None:
    manifest = parse_manifest((COLLATZ / "genome.toml").read_text(encoding="utf-8"))
    assert manifest.fitness.work == ["starts_tried"]
    assert manifest.fitness.limits == [MEMORY.model_copy(update={"max_change": 0.25})]
    assert manifest.fitness.printed_figures() == ("starts_tried",)  # memory is not printed


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ('work = ["seconds"]', "seconds named twice"),
        ('work = ["peak_memory_mb"]', "measured by the sandbox"),
        ('work = ["a b"]', "fitness.work.0"),
        ('[[fitness.limits]]\nmetric = "rss"\nmax_change = -0.1', "fitness.limits.0.max_change"),
        ('[[fitness.limits]]\nmetric = "rss"\nmax_change = 0.1\nlimit = 3', "limit"),
        ('[[fitness.limits]]\nmetric = "rss"', "max_change"),
        ('[[fitness.limits]]\nmetric = "rss"\nmax_change = 0.1\ndirection = "up"', "direction"),
    ],
)
def test_a_bad_limit_or_work_count_is_one_error_naming_the_key(extra: str, match: str) -> None:
    text = '[genome]\nname = "g"\nsources = ["*.py"]\n[commands]\ntest = "t"\nbench = "b"\n'
    text += f'[fitness]\nmetric = "seconds"\ndirection = "minimize"\n{extra}\n'
    with pytest.raises(ManifestError, match=match):
        parse_manifest(text)


# ---- the rules -----------------------------------------------------------------------


def test_a_side_keeps_the_median_and_the_range_only_when_runs_disagree() -> None:
    same = summarise([{"n": 12000.0, "m": 8.0}, {"n": 12000.0, "m": 9.0}, {"n": 12000.0}])
    assert same == {"m": 8.5, "m:lo": 8.0, "m:hi": 9.0, "n": 12000.0}
    # one run in three doing half the work shows in the range, not the median
    sly = summarise([{"n": 12000.0}, {"n": 6000.0}, {"n": 12000.0}])
    assert sly["n"] == 12000.0 and (sly["n:lo"], sly["n:hi"]) == (6000.0, 12000.0)
    reasons = work_reasons(["n"], {"n": 12000.0}, sly)
    assert reasons == [
        "the benchmark reported n 6000–12000, its parent 12000: "
        "the candidate does other work, not the same work faster"
    ]


def test_a_changed_work_count_is_named_with_both_figures() -> None:
    assert work_reasons(["lines_parsed"], {"lines_parsed": 12000.0}, {"lines_parsed": 6000.0}) == [
        "the benchmark reported lines_parsed 6000, its parent 12000: "
        "the candidate does less work, not the same work faster"
    ]
    assert work_reasons(["lines_parsed"], {"lines_parsed": 12.0}, {"lines_parsed": 12.0}) == []
    (gone,) = work_reasons(["lines_parsed"], {"lines_parsed": 12.0}, {})
    assert gone.startswith("the benchmark printed no lines_parsed for the candidate")
    (never,) = work_reasons(["lines_parsed"], {}, {})
    assert "for the parent" in never and "[fitness] work" in never


def test_a_broken_limit_names_the_figure_both_values_and_the_limit() -> None:
    assert limit_reasons([MEMORY], {"peak_memory_mb": 8.1}, {"peak_memory_mb": 41.25}) == [
        "peak_memory_mb 41.25 against its parent's 8.1 (+409.3%), over the limit of +10% (minimize)"
    ]
    assert limit_reasons([MEMORY], {"peak_memory_mb": 8.0}, {"peak_memory_mb": 8.8}) == []
    assert limit_reasons([MEMORY], {"peak_memory_mb": 8.0}, {"peak_memory_mb": 4.0}) == []
    throughput = FitnessLimit(metric="items_per_s", direction="maximize", max_change=0.05)
    (slower,) = limit_reasons([throughput], {"items_per_s": 100.0}, {"items_per_s": 90.0})
    assert "items_per_s 90 against its parent's 100 (-10.0%)" in slower and "-5%" in slower
    (unknown,) = limit_reasons([MEMORY], {}, {"peak_memory_mb": 8.0})
    assert "not measured for the parent" in unknown


def test_the_governor_adopts_only_when_the_gain_comes_with_no_broken_limit() -> None:
    policy = Policy(limits=(MEMORY,), work=("lines",))

    def judged(memory: float, lines: float) -> tuple[str, tuple[str, ...]]:
        evidence = Evidence(
            True, EXACT, 6, ("p.py",), (), (),
            parent_figures={"peak_memory_mb": 10.0, "lines": 100.0},
            candidate_figures={"peak_memory_mb": memory, "lines": lines},
        )  # fmt: skip
        decision = decide(evidence, policy)
        return decision.verdict, decision.reasons

    assert judged(10.9, 100.0)[0] == "adopt"
    verdict, reasons = judged(30.0, 100.0)
    assert verdict == "reject" and reasons[0].startswith("peak_memory_mb 30 against")
    verdict, reasons = judged(30.0, 50.0)  # every broken rule is named, work first
    assert verdict == "reject" and "less work" in reasons[0] and "peak_memory_mb" in reasons[1]
    # the same figures under a policy with no limits: the gain alone decides
    plain = Evidence(
        True, EXACT, 6, ("p.py",), (), (),
        parent_figures={"peak_memory_mb": 10.0}, candidate_figures={"peak_memory_mb": 30.0},
    )  # fmt: skip
    assert decide(plain, Policy()).verdict == "adopt"


def test_trade_offs_keep_every_figure_of_both_sides() -> None:
    kept = trade_offs(
        "seconds",
        [MEMORY],
        ["lines"],
        {"seconds": 1.0, "peak_memory_mb": 8.0, "lines": 10.0, "cache": 1.0},
        {"seconds": 0.5, "peak_memory_mb": 9.0, "peak_memory_mb:lo": 8.5,
         "peak_memory_mb:hi": 9.5, "lines": 10.0},
    )  # fmt: skip
    assert kept == {
        "cache": {"parent": 1.0, "candidate": None},
        "lines": {"parent": 10.0, "candidate": 10.0, "work": True},
        "peak_memory_mb": {
            "parent": 8.0,
            "candidate": 9.0,
            "candidate_range": [8.5, 9.5],
            "direction": "minimize",
            "max_change": 0.1,
        },
    }


# ---- the log keeps them ----------------------------------------------------------------

RECORD = CandidateRecord(
    "c1", "v0", "", "memo", "planted", "reject", ["peak_memory_mb …"], 2.0, 2.0, 2.0, True,
    expected_gain=1.25,
    figures={"peak_memory_mb": {"parent": 7.5, "candidate": 12.7, "max_change": 0.1}},
)  # fmt: skip


def test_a_ledger_cycle_carries_the_figures_and_the_prediction() -> None:
    entry = E.Cycle("g", "n1", 1, 2, [RECORD], [], None, 5.0)
    data = E.encode(entry)
    assert E.fast_decode(data) == entry  # msgspec's fast path
    assert E.parse(E.read_map(data)) == entry  # the reference checker
    bare = CandidateRecord("c1", "v0", "", "m", "k", "reject", [], None, None, None, False)
    assert b"figures" not in E.encode(E.Cycle("g", "n1", 1, 2, [bare], [], None, 5.0))


def test_a_stored_evaluation_keeps_the_figures_and_verifies(tmp_path: Path) -> None:
    with GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.register("g", "[genome]\n", {"a.py": "x = 1\n"}, 1.0, "n1")
        head = store.head("g").version
        store.record_cycle("g", "n1", evaluated=[RECORD.__class__(**{**RECORD.__dict__, "parent": head})],
                           adopted=None, held=[], cycle=1, seed=1)  # fmt: skip
        (row,) = [e.data for e in store.log(genome="g") if e.type == "CandidateEvaluated"]
        assert row["expected_gain"] == 1.25 and row["figures"] == RECORD.figures
        store.verify()


# ---- a real node ----------------------------------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work",
        incubators=2, candidates_per_cycle=4,
    )  # fmt: skip
    with Node(config) as handle:
        yield handle
    assert pykka.ActorRegistry.get_all() == []


def test_faster_with_far_more_memory_or_half_the_work_is_refused_within_the_limit_adopted(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = node.register(collatz(tmp_path))
    before = node.store.head(name)
    with planted(monkeypatch, ["memo_unbounded", "odd_starts", "memo_small"]):
        summary = node.evolve(name, cycles=1, seed=5)
    rows = {
        e.data["mutator"]: (e.seq, e.data)
        for e in node.store.log(genome=name)
        if e.type == "CandidateEvaluated"
    }
    seq, hog = rows["memo_unbounded"]
    assert hog["verdict"] == "reject", hog["reasons"]
    memory = hog["figures"]["peak_memory_mb"]
    assert memory["candidate"] > memory["parent"] * 1.25, memory
    reason = next(r for r in hog["reasons"] if r.startswith("peak_memory_mb"))
    assert f"{memory['parent']:.4g}" in reason and "over the limit of +25% (minimize)" in reason
    _, skip = rows["odd_starts"]
    assert skip["verdict"] == "reject"
    assert skip["reasons"][0] == (
        "the benchmark reported starts_tried 15000, its parent 29999: "
        "the candidate does less work, not the same work faster"
    )
    _, small = rows["memo_small"]
    assert small["verdict"] == "adopt", small["reasons"]
    assert summary.adopted and node.store.head(name).version != before.version
    small_memory = small["figures"]["peak_memory_mb"]
    assert small_memory["candidate"] <= small_memory["parent"] * 1.25
    assert small["figures"]["starts_tried"] == {
        "parent": 29999.0,
        "candidate": 29999.0,
        "work": True,
    }
    # `tars log show` lays the trade-offs out: the main gain, memory before and after, the limit
    result = CliRunner().invoke(
        app, ["log", "show", str(seq), "--store", str(tmp_path / "store.db")]
    )
    assert result.exit_code == 0, result.output
    assert "trade-offs" in result.stdout and "peak_memory_mb" in result.stdout
    assert "+25% at most ✗" in result.stdout and "work: same" in result.stdout
    assert "main: gain" in result.stdout  # the main metric's medians, both sides
    main = hog["figures"]["seconds"]
    assert main["main"] is True and main["candidate"] < main["parent"]
    assert "work: same ✗" not in result.stdout
    listed = CliRunner().invoke(app, ["log", "ls", "--store", str(tmp_path / "store.db")])
    assert " mem " in listed.stdout and "MB" in listed.stdout


@pytest.mark.slow
def test_under_the_instruction_counter_memory_comes_from_one_native_run_per_side(
    tmp_path: Path,
) -> None:
    """valgrind's own memory hides the program's, so a counted genome's peak is measured natively."""
    if valgrind() is None:
        pytest.skip("valgrind is not installed")
    forget_counts()
    manifest, tree = load_genome(collatz(tmp_path, measure="instructions"))
    seen = manifest.without_held_out(tree)
    hog = candidate(seen, "memo_unbounded")
    with Sandbox(tmp_path / "sandbox") as sandbox:
        report = incubate(sandbox, manifest, hog.id, seen, apply_patch(seen, hog.patch))
    assert report.measure == "instructions" and report.failure is None, report.detail
    # the work counts come from the counted runs (3,000 starts), the memory from native ones
    assert report.parent_figures["starts_tried"] == report.candidate_figures["starts_tried"] == 2999
    before, after = (
        report.parent_figures["peak_memory_mb"],
        report.candidate_figures["peak_memory_mb"],
    )
    assert after > before * 1.25, (before, after)
    decision, _ = judge(manifest, seen, hog, report, Policy(), seed=1)
    assert decision.verdict == "reject"
    assert any(r.startswith("peak_memory_mb") for r in decision.reasons), decision.reasons


def test_evolve_validate_shows_the_figures_and_refuses_half_the_work(tmp_path: Path) -> None:
    folder = collatz(tmp_path)
    _, tree = load_genome(folder)
    patch = tmp_path / "odd.patch"
    patch.write_text(candidate(tree, "odd_starts").patch, encoding="utf-8")
    result = CliRunner().invoke(
        app,
        ["evolve", "validate", "--genome", str(folder), "--patch", str(patch),
         "--store", str(tmp_path / "s.db")],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = " ".join(result.stdout.split())
    assert "starts_tried: 29999 → 15000" in text
    assert "peak_memory_mb:" in text
    assert "the candidate does less work, not the same work faster" in text


def test_evaluations_stored_before_the_figures_read_back_without_them() -> None:
    """The pinned events of tests/data/lineage_events_v1.json predate both fields."""
    from test_event_format import GENOME, load

    from events.domain import lineage_id
    from evolution.calibration import from_log

    with GenomeStore.open("memory://") as store:
        golden = [(lineage_id(GENOME).hex, *event) for event in load()]
        store.import_events(golden, ("ledger", 1))
        (row,) = [e.data for e in store.log(genome=GENOME) if e.type == "CandidateEvaluated"]
    assert "figures" not in row and "expected_gain" not in row
    assert from_log([row]).observations == {"constant": [(1.33, None)]}


def test_only_finite_numbers_of_the_last_json_line_are_figures() -> None:
    """A benchmark that prints NaN, a string or a flag for a work count has printed none."""
    from runtime.figures import read_figures
    from runtime.sandbox_result import RunResult

    out = '{"lines": 1}\nnoise\n{"seconds": 1.0, "lines": NaN, "rows": "12", "ok": true, "n": 7}\n'
    result = RunResult(("b",), 0, out, "", 0.1, None, "ok", peak_memory_mb=7.25)
    assert read_figures(result, ["lines", "rows", "ok", "n", "absent"]) == {
        "peak_memory_mb": 7.25,
        "n": 7.0,
    }
    blind = RunResult(("b",), 0, "not json\n", "", 0.1, None, "ok")
    assert read_figures(blind, ["n"]) == {}
    # and a figure missing from the candidate's runs is a refusal, not a pass
    assert work_reasons(["lines"], {"lines": 1.0}, read_figures(result, ["lines"]))
