"""The shipped genomes: manifests parse, their own tests pass, their benchmarks print the metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from evolution.manifest import MANIFEST_NAME, parse_manifest

GENOMES_DIR = Path(__file__).resolve().parent.parent / "genomes"
SHIPPED = ["logstats", "textindex", "tomlparse", "seqdiff", "shellsplit"]


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


@pytest.mark.parametrize("name", SHIPPED)
def test_genome_tests_pass_as_tars_loads_and_sandboxes_them(name, tmp_path):
    """The tree TARS reads (not the folder) passes its tests in the real sandbox.

    A data file compared byte for byte by a test (seqdiff's expected HTML has no final
    newline) must reach the sandbox exactly as it is on disk.
    """
    from runtime.genome_files import load_genome
    from runtime.incubation import run_tests
    from runtime.sandbox import Sandbox

    manifest, tree = load_genome(GENOMES_DIR / name)
    on_disk = (GENOMES_DIR / name / "genome.toml").read_text(encoding="utf-8")
    assert tree["genome.toml"] == on_disk
    with Sandbox(tmp_path / "sandbox") as sandbox:
        result = run_tests(sandbox, tree, manifest)
    assert result.ok, result.stdout[-2000:] + result.stderr[-2000:]


def test_data_files_are_read_byte_for_byte_python_files_end_with_a_newline(tmp_path):
    from runtime.genome_files import read_tree

    (tmp_path / "data.html").write_bytes(b"<html>\r\n<p>a\rb</html>")
    (tmp_path / "mod.py").write_bytes(b"x = 1\r\ny = 2")
    tree = read_tree(tmp_path)
    assert tree == {"data.html": "<html>\r\n<p>a\rb</html>", "mod.py": "x = 1\ny = 2\n"}
