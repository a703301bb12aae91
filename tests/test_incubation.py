"""Incubation in the real sandbox: tests gate, A/B pairs interleave, close calls get more rounds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from evolution.manifest import parse_manifest
from runtime.incubation import incubate
from runtime.sandbox import Sandbox

MANIFEST = """
[genome]
name = "m"
sources = ["m.py"]
[commands]
test = ["python", "-c", "import m; assert m.ok()"]
bench = ["python", "-c", "import json, m; print(json.dumps({'seconds': m.COST}))"]
[fitness]
metric = "seconds"
direction = "minimize"
rounds = 3
"""


def tree(cost: float, ok: bool = True) -> dict[str, str]:
    return {"genome.toml": MANIFEST, "m.py": f"COST = {cost}\n\ndef ok():\n    return {ok}\n"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with Sandbox(tmp_path / "sb") as box:
        yield box


def test_pairs_are_measured_and_failing_tests_stop_early(sandbox: Sandbox) -> None:
    manifest = parse_manifest(MANIFEST)
    report = incubate(sandbox, manifest, "c1", tree(2.0), tree(1.0))
    assert report.failure is None and report.tests_passed
    assert report.parent_samples == (2.0, 2.0, 2.0) and report.candidate_samples == (1.0, 1.0, 1.0)
    assert report.runs == 1 + 2 * 3
    failed = incubate(sandbox, manifest, "c2", tree(2.0), tree(1.0, ok=False))
    assert not failed.tests_passed and failed.failure == "exit" and failed.parent_samples == ()


def test_close_calls_get_more_rounds_up_to_the_limit(sandbox: Sandbox) -> None:
    manifest = parse_manifest(MANIFEST)
    asked: list[int] = []

    def undecided(parent: Sequence[float], candidate: Sequence[float]) -> bool:
        asked.append(len(parent))
        return True

    report = incubate(sandbox, manifest, "c", tree(2.0), tree(1.0), max_rounds=7, undecided=undecided)
    assert len(report.parent_samples) == 7
    assert asked == [3, 5]  # two more pairs at a time (A B, B A), never past the limit
    decided = incubate(sandbox, manifest, "c", tree(2.0), tree(1.0), max_rounds=7, undecided=lambda p, c: False)
    assert len(decided.parent_samples) == 3
