"""The cascade's short count: an exact count on a short input rejects a candidate that is
not clearly better before it pays for the full count; deterministic, so one seed adopts
the same patches twice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cascadekit import FASTER, SLOWER, counted_tiny, variant

from events.store import GenomeStore
from evolution.cascade import (
    SHORT_SCALE_ENV,
    short_gain,
    short_margin,
    short_passes,
    short_pays,
    short_reason,
    short_run,
    without_short,
)
from evolution.errors import ManifestError
from evolution.manifest import Manifest, parse_manifest
from node import Node, NodeConfig
from runtime.counting import is_counted, read_instructions, run_counted
from runtime.genome_files import load_genome
from runtime.incubation import forget_counts, incubate
from runtime.sandbox import Sandbox

TINY = Path(__file__).parent / "data" / "tiny"
SHORT_SCALE = "short_scale = 0.2"
SHORT = f'rounds = 3\nmeasure = "instructions"\n{SHORT_SCALE}'

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind not installed (.ci/run installs it)"
)


# ---- the rules and the manifest (pure) -------------------------------------------------


def test_the_manifest_says_how_to_run_short_and_the_margin_defaults_to_half_the_gain() -> None:
    text = (TINY / "genome.toml").read_text()
    plain = parse_manifest(text).fitness
    assert short_run(plain) is None, "no setting: no short count"
    fitness = parse_manifest(text.replace("rounds = 3", SHORT)).fitness
    assert short_run(fitness) == ((), {SHORT_SCALE_ENV: "0.2"})
    assert short_margin(fitness) == pytest.approx(1.05), "threshold 1.10: half its gain"
    assert short_passes(1.05, fitness) and not short_passes(1.049, fitness)
    args = parse_manifest(
        text.replace("rounds = 3", 'rounds = 3\nshort_args = ["--short"]\nshort_margin = 1.2')
    ).fitness
    assert short_run(args) == (("--short",), {})
    assert short_margin(args) == 1.2


def test_the_short_gain_is_scaled_to_the_full_count_so_the_fixed_cost_does_not_dilute_it() -> None:
    """logstats' memoize, seen in a run: 269.8 M → 268.1 M instructions at 0.1 of the input,
    1.029× in full; the plain short ratio (1.006×) was under the 1.01× margin and lost it."""
    text = (TINY / "genome.toml").read_text().replace("threshold = 1.10", "threshold = 1.02")
    fitness = parse_manifest(text.replace("rounds = 3", SHORT.replace("0.2", "0.1"))).fitness
    gain = short_gain(269.8e6, 268.1e6, 1343e6, fitness)
    assert 269.8 / 268.1 < short_margin(fitness) <= gain == pytest.approx(1343 / (1343 - 17))
    assert short_passes(gain, fitness)
    loser = short_gain(269.8e6, 269.6e6, 1343e6, fitness)  # 1.0007× short: a typical loser
    assert 1.0 < loser < short_margin(fitness) and not short_passes(loser, fitness)
    assert short_gain(269.8e6, 270.5e6, 1343e6, fitness) < 1.0, "worse stays worse"
    assert short_gain(269.8e6, 100e6, 1343e6, fitness) == float("inf"), "saves it all"
    reason = short_reason(269.8e6, 269.6e6, loser, fitness)
    assert "269.6 M instructions against 269.8 M" in reason and "it needs 1.0100×" in reason
    args = parse_manifest(text.replace("rounds = 3", 'rounds = 3\nshort_args = ["-s"]')).fitness
    assert short_gain(270.0, 135.0, 1343.0, args) == 2.0, "no scale known: the plain ratio"


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("short_scale = -0.5", "short_scale"),
        ("short_scale = 0", "short_scale"),
        ("short_scale = 1.5", "short_scale"),
        ("short_scale = nan", "short_scale"),
        ("short_scale = inf", "short_scale"),
        ('short_scale = "0.1"', "short_scale"),
        ("short_args = [" + ", ".join(['"-v"'] * 17) + "]", "short_args"),
        ('short_args = ["' + "x" * 201 + '"]', "short_args.0"),
        ('short_args = ["--n\\n10"]', "short_args.0"),
        ('short_args = [""]', "short_args.0"),
        ("short_margin = 0.5", "short_margin"),
        ("short_margin = 1e9", "short_margin"),
        ('short_env = { LD_PRELOAD = "/x.so" }', "short_env"),
    ],
)
def test_a_hostile_short_setting_is_a_clear_manifest_error(setting: str, key: str) -> None:
    text = (TINY / "genome.toml").read_text().replace("rounds = 3", f"rounds = 3\n{setting}")
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, "tiny/genome.toml")
    message = str(caught.value)
    assert f"key 'fitness.{key}" in message and "tiny/genome.toml" in message, message
    assert caught.value.hint


def test_the_short_count_is_dropped_once_most_candidates_pass_it() -> None:
    """It costs about half a full count (SHORT_COST) plus the full count of every
    candidate that passes: it pays while fewer than half pass, judged after six."""
    assert short_pays(0, 0) and short_pays(5, 5), "on until six candidates have reached it"
    assert short_pays(12, 2) and short_pays(6, 2), "a uniform mix: most are rejected"
    assert not short_pays(14, 8), "session 18's learning runs: 8 of 14 passed"
    assert not short_pays(6, 3), "half passing: it costs as much as it saves"
    assert short_pays(10, 4, cost=0.5) and not short_pays(10, 4, cost=0.7)
    manifest = parse_manifest(
        (TINY / "genome.toml").read_text().replace("rounds = 3", SHORT + '\nshort_args = ["-q"]')
    )
    assert short_run(manifest.fitness) is not None
    plain = without_short(manifest)
    assert short_run(plain.fitness) is None, "no short scale, no short args"
    assert plain.fitness.threshold == manifest.fitness.threshold
    assert short_run(manifest.fitness) is not None, "the manifest itself is unchanged"


# ---- on a real sandbox, with the real counter -----------------------------------------


@pytest.fixture
def counted() -> Iterator[tuple[Sandbox, Manifest, dict[str, str]]]:
    with counted_tiny(SHORT_SCALE) as made:
        yield made


SAME = ("if word in COMMON:", "if word in COMMON:", "\n# a comment: no faster\n")


def test_a_candidate_no_better_on_the_short_input_is_never_counted_in_full(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    short = short_run(manifest.fitness)
    for name, change in (("slow", SLOWER), ("same", SAME)):
        child = variant(tree, *change)
        report = incubate(sandbox, manifest, name, tree, child)
        assert report.failure == "short", report
        assert report.detail.startswith("rejected at the short count:"), report.detail
        assert "it needs 1.0500×" in report.detail, report.detail
        # the short count comes first: a candidate it rejects never pays for its tests,
        # and its report never claims tests it did not run
        assert "stage:short" in report.extra and "stage:tests" not in report.extra
        assert report.tests_passed is False and "tests were not run" in report.detail
        assert report.extra["cpu:short"] > 0, "the stage's CPU seconds are reported"
        assert "stage:count" not in report.extra, "the candidate's full count never ran"
        # the caches agree: its short count was taken, its full count never was (the
        # parent's full count was: the short gain is scaled to it, once per version)
        assert is_counted(child, manifest, short) and not is_counted(child, manifest)
        assert is_counted(tree, manifest, short) and is_counted(tree, manifest)
    # without the cascade the slower one is counted in full, and loses there
    plain = incubate(sandbox, manifest, "slow", tree, variant(tree, *SLOWER), cascade=False)
    assert plain.failure is None and "stage:short" not in plain.extra
    assert plain.candidate_samples[0] > plain.parent_samples[0]


def test_a_candidate_better_on_the_short_input_goes_on_to_the_full_count(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    faster = variant(tree, *FASTER)
    report = incubate(sandbox, manifest, "fast", tree, faster)
    assert report.failure is None, report
    assert {"stage:short_parent", "stage:short", "stage:count"} <= set(report.extra)
    assert report.candidate_samples[0] < report.parent_samples[0], "counted in full, and won"
    # the parent's short count is taken once per version: the next candidate reuses it
    second = variant(tree, FASTER[0], FASTER[1], FASTER[2] + "# two\n")
    again = incubate(sandbox, manifest, "fast2", tree, second)
    assert again.extra["stage:short_parent"] == 0.0 and again.extra["stage:short"] > 0
    assert again.runs == 3, again  # the tests, the candidate's short count, its full count
    assert again.failure is None
    # a candidate counted in full before skips the short count (its full count is free)
    third = incubate(sandbox, manifest, "fast", tree, faster)
    assert "stage:short" not in third.extra and third.failure is None


def test_a_broken_candidate_better_on_the_short_input_is_never_counted(counted) -> None:  # type: ignore[no-untyped-def]
    """The short count runs before the tests, but a survivor still runs every test before
    its full count: a broken candidate is stopped there, as before the reordering."""
    sandbox, manifest, tree = counted
    broken = variant(tree, *FASTER)
    broken["tiny/core.py"] = broken["tiny/core.py"].replace(
        "    return total\n", "    return total + (len(words) == 5)\n", 1
    )
    assert broken["tiny/core.py"].count("len(words) == 5") == 1
    report = incubate(sandbox, manifest, "broken", tree, broken)
    assert report.tests_passed is False and report.detail.startswith("tests failed"), report
    assert {"stage:short", "stage:tests"} <= set(report.extra), "short first, then the tests"
    assert report.extra["short_gain"] >= short_margin(manifest.fitness)
    assert "stage:count" not in report.extra, "no full count for a broken candidate"


def test_the_short_count_does_not_count_compiling_the_source(counted) -> None:  # type: ignore[no-untyped-def]
    """The tree is compiled natively before its short count (runtime/counting.py): the
    count is smaller by the compile, and as exact as before."""
    sandbox, manifest, tree = counted
    short = short_run(manifest.fitness)
    counts: dict[bool, list[float]] = {True: [], False: []}
    with sandbox.workspace(tree) as workdir:
        for _ in range(2):
            for precompile in (True, False):
                result = run_counted(sandbox, workdir, manifest, short=short, precompile=precompile)
                assert result.ok, result.detail
                counts[precompile].append(read_instructions(result))
    (a, b), (c, d) = counts[True], counts[False]
    # a count moves by up to a few thousand instructions in 10^8 run to run (CI saw 2,809)
    assert abs(a - b) / a < 1e-4 and abs(c - d) / c < 1e-4, counts
    # tiny's core.py alone takes a few hundred thousand instructions to compile
    assert c - a > 100_000, counts
    # a module that does not compile still fails the short count
    broken = dict(tree, **{"tiny/core.py": tree["tiny/core.py"] + "\ndef oops(:\n"})
    with sandbox.workspace(broken) as workdir:
        failed = run_counted(sandbox, workdir, manifest, short=short)
    assert not failed.ok and "SyntaxError" in failed.stderr, failed.stderr[-300:]


# slow (30 s, twelve counts): its parts run by default, cheaper: a short count repeats to
# 1e-4 (test_the_short_count_does_not_count_compiling_the_source), and the same slower, same
# and faster candidates get these verdicts at these stages (the tests above)
@pytest.mark.slow
def test_the_same_candidates_get_the_same_verdicts_twice(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    runs = []
    for _ in range(2):
        forget_counts()  # the second run counts everything afresh
        run = []
        for name, change in (("slow", SLOWER), ("fast", FASTER), ("same", SAME)):
            report = incubate(sandbox, manifest, name, tree, variant(tree, *change))
            run.append((report.failure, sorted(report.extra), report.extra["short_gain"]))
        runs.append(run)
    # the same verdicts at the same stages, from gains that agree far inside any margin (a
    # count moves by a few hundred instructions in 10^8 run to run: the 4th decimal may too)
    assert [r[:2] for r in runs[0]] == [r[:2] for r in runs[1]]
    assert all(abs(a[2] - b[2]) < 1e-3 for a, b in zip(runs[0], runs[1], strict=True))
    assert [failure for failure, _, _ in runs[0]] == ["short", None, "short"]


def test_a_genome_without_the_setting_is_unaffected(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, _, tree = counted
    manifest, plain_tree = load_genome(TINY)
    text = plain_tree["genome.toml"].replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    manifest = parse_manifest(text)
    plain_tree["genome.toml"] = text
    report = incubate(sandbox, manifest, "same", plain_tree, variant(plain_tree, *SAME))
    assert report.failure is None, "counted in full, as before"
    assert not any(stage.startswith("stage:short") for stage in report.extra)
    assert "stage:count" in report.extra


def test_a_candidate_failing_only_on_the_short_input_fails_there(counted) -> None:  # type: ignore[no-untyped-def]
    sandbox, manifest, tree = counted
    child = dict(tree)
    child["bench.py"] = child["bench.py"].replace(
        "count_common(words)", "count_common(words)\n    assert len(words) > 2000"
    )
    assert child["bench.py"] != tree["bench.py"]
    report = incubate(sandbox, manifest, "fragile", tree, child)
    assert report.failure is not None and report.failure != "short", report
    assert "failed at the short count, where its parent did not" in report.detail
    assert "stage:count" not in report.extra


@needs_valgrind
@pytest.mark.slow
def test_same_seed_adopts_the_same_patches_with_the_short_count(tmp_path: Path) -> None:
    """Two runs of the counted tiny genome with the short count on and one seed adopt the
    same patches in the same order: the stage is exact, so it decides alike."""
    genome = tmp_path / "tiny"
    shutil.copytree(TINY, genome)
    manifest = genome / "genome.toml"
    text = manifest.read_text().replace("rounds = 3", SHORT)
    manifest.write_text(text.replace("threshold = 1.10", "threshold = 1.02"))
    runs = []
    for name in ("a", "b"):
        forget_counts()
        url = f"sqlite:///{tmp_path / name / 'store.db'}"
        config = NodeConfig(name, url, tmp_path / name, incubators=2, candidates_per_cycle=2)
        with Node(config) as node:
            registered, _ = node.register(genome)
            node.evolve(registered, cycles=2, seed=11)
        with GenomeStore.open(url) as store:
            runs.append(
                [
                    (e.type, e.data["patch"], str(e.data.get("verdict", "")))
                    for e in store.log(genome="tiny")
                    if e.type in ("VersionAdopted", "CandidateEvaluated")
                ]
            )
    forget_counts()
    assert [p for kind, p, _ in runs[0] if kind == "VersionAdopted"], "tiny has clear wins"
    assert runs[0] == runs[1]


@needs_valgrind
@pytest.mark.slow
def test_a_run_drops_the_short_count_once_most_candidates_passed_it(tmp_path: Path) -> None:
    """The coordinator proves a cycle's candidates without the stage once its run has seen
    most of them pass it, and with it before."""
    genome = tmp_path / "tiny"
    shutil.copytree(TINY, genome)
    manifest = genome / "genome.toml"
    text = manifest.read_text().replace("rounds = 3", SHORT)
    manifest.write_text(text.replace("threshold = 1.10", "threshold = 1.02"))
    forget_counts()
    try:
        url = f"sqlite:///{tmp_path / 'store.db'}"
        config = NodeConfig("a", url, tmp_path / "node", incubators=1, candidates_per_cycle=2)
        with Node(config) as node:
            registered, _ = node.register(genome)
            dropped = node.coordinator(registered)
            dropped.short_seen = [6, 6]  # six reached it, six passed: it no longer pays
            dropped.run(1, seed=3)
            assert dropped.short_seen == [6, 6], "no candidate was proven with the stage"
            kept = node.coordinator(registered)
            kept.run(2, seed=3)
            assert kept.short_seen[0] > 0, "a fresh run proves its candidates with it"
        with GenomeStore.open(url) as store:
            evaluated = [e for e in store.log(genome="tiny") if e.type == "CandidateEvaluated"]
        assert len(evaluated) >= 2, "the first run proved candidates all the same"
    finally:
        forget_counts()
