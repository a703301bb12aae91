"""The shipped genomes: manifests parse, their own tests pass, their benchmarks print the metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolution.manifest import MANIFEST_NAME, parse_manifest

GENOMES_DIR = Path(__file__).resolve().parent.parent / "genomes"
SHIPPED = ["logstats", "textindex", "tomlparse", "seqdiff"]


def _manifest(name: str):
    path = GENOMES_DIR / name / MANIFEST_NAME
    return parse_manifest(path.read_text(encoding="utf-8"), str(path))


def _argv(argv: list[str]) -> list[str]:
    # the contract: an argv starting with "python" runs with the node's own interpreter
    return [sys.executable, *argv[1:]] if argv and argv[0] == "python" else list(argv)


def test_shipped_genomes_exist():
    found = {p.parent.name for p in GENOMES_DIR.glob(f"*/{MANIFEST_NAME}")}
    assert set(SHIPPED) <= found


@pytest.mark.parametrize("name", SHIPPED)
def test_manifest_parses_and_names_its_folder(name):
    manifest = _manifest(name)
    assert manifest.name == name
    folder = GENOMES_DIR / name
    sources = [p.relative_to(folder).as_posix() for p in folder.rglob("*.py")]
    assert any(manifest.is_source(s) for s in sources)
    assert not any(
        manifest.is_source(s) for s in sources if s.startswith("tests/") or s == "bench.py"
    )
    for tunable in manifest.tunable:
        text = (folder / tunable.file).read_text(encoding="utf-8")
        assert f"\n{tunable.name} = " in text, f"{tunable.file} has no module-level {tunable.name}"


@pytest.mark.parametrize("name", SHIPPED)
def test_genome_tests_pass(name):
    manifest = _manifest(name)
    proc = subprocess.run(
        _argv(manifest.commands.test),
        cwd=GENOMES_DIR / name,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", SHIPPED)
def test_bench_prints_metric(name):
    manifest = _manifest(name)
    proc = subprocess.run(
        _argv(manifest.commands.bench),
        cwd=GENOMES_DIR / name,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    value = result[manifest.fitness.metric]
    assert isinstance(value, (int, float)) and value > 0
