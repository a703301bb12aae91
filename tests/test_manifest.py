"""Manifest validation: every bad input names the file, the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolution.errors import GenomeError, ManifestError
from evolution.manifest import parse_manifest
from runtime.genome_files import load_genome, read_tree, write_tree

GOOD = """
[genome]
name = "demo"
sources = ["pkg/*.py"]
[commands]
test = "python -m unittest"
bench = ["python", "bench.py"]
[fitness]
metric = "seconds"
direction = "minimize"
[[tunable]]
file = "pkg/a.py"
name = "CHUNK"
min = 1
max = 64
"""


def test_good_manifest() -> None:
    m = parse_manifest(GOOD)
    assert m.name == "demo"
    assert m.commands.test == ["python", "-m", "unittest"]
    assert m.is_source("pkg/a.py") and not m.is_source("tests/test_a.py")
    assert m.better(1.0, 2.0) == 2.0


@pytest.mark.parametrize(
    ("edit", "key", "fix"),
    [
        (lambda t: t.replace('metric = "seconds"\n', ""), "fitness.metric", "add it"),
        (lambda t: t.replace('"minimize"', '"smaller"'), "fitness.direction", "allowed values"),
        (
            lambda t: t.replace("[commands]", "[commands]\ncolour = 1"),
            "commands.colour",
            "spelling",
        ),
        (lambda t: t.replace("max = 64", "max = 0"), "tunable.0", "see docs"),
        (lambda t: t.replace('name = "demo"', 'name = "bad name!"'), "genome.name", "letters"),
    ],
)
def test_bad_manifest_names_key_and_fix(edit, key: str, fix: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ManifestError) as info:
        parse_manifest(edit(GOOD), "g/genome.toml")
    message = str(info.value)
    assert message.startswith("g/genome.toml: key '" + key)
    assert fix in message
    assert "\n" not in message


def test_toml_syntax_error() -> None:
    with pytest.raises(ManifestError, match="not valid TOML"):
        parse_manifest("[genome\nname=", "x.toml")


def test_load_genome_errors(tmp_path: Path) -> None:
    with pytest.raises(GenomeError, match="does not exist"):
        load_genome(tmp_path / "nope")
    with pytest.raises(ManifestError, match="no manifest"):
        load_genome(tmp_path)
    (tmp_path / "genome.toml").write_text(GOOD)
    with pytest.raises(ManifestError, match="matches no file"):
        load_genome(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("CHUNK = 4")
    manifest, tree = load_genome(tmp_path)
    assert tree["pkg/a.py"] == "CHUNK = 4\n"  # newline normalised
    assert manifest.name == "demo"


def test_write_tree_refuses_non_empty_and_round_trips(tmp_path: Path) -> None:
    tree = {"a/b.py": "x\n", "c.txt": "y\n"}
    write_tree(tree, tmp_path / "out")
    assert read_tree(tmp_path / "out") == tree
    with pytest.raises(GenomeError, match="not empty"):
        write_tree(tree, tmp_path / "out")


def test_measure_defaults_to_benchmark_and_refuses_unknown_values() -> None:
    assert parse_manifest(GOOD).fitness.measure == "benchmark"
    counted = GOOD.replace(
        'direction = "minimize"', 'direction = "minimize"\nmeasure = "instructions"'
    )
    assert parse_manifest(counted).fitness.measure == "instructions"
    with pytest.raises(ManifestError, match="fitness.measure") as err:
        parse_manifest(
            GOOD.replace('direction = "minimize"', 'direction = "minimize"\nmeasure = "cycles"'),
            "g/genome.toml",
        )
    assert "g/genome.toml" in str(err.value)
