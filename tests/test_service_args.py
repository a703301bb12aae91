"""The manifest's [service] section and the argument check: pure, every refusal names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from evolution.errors import BadCallError, ManifestError
from evolution.manifest import parse_manifest
from evolution.service_args import check_args
from runtime.genome_files import load_genome

HEAD = """
[genome]
name = "demo"
sources = ["pkg/*.py"]
[commands]
test = "python -m unittest"
bench = "python bench.py"
[fitness]
metric = "seconds"
direction = "minimize"
"""
GOOD = (
    HEAD
    + """
[service]
workers = 3
[service.functions.summarise]
call = "pkg.report:summarise"
args = { lines = "list[str]", top = "int?", ratio = "float?", flags = "dict?", any = "any?" }
example = { lines = ["a"], top = 3 }
"""
)


def test_good_service_section() -> None:
    service = parse_manifest(GOOD).service
    assert service is not None and service.workers == 3 and not service.reloadable
    spec = service.functions["summarise"]
    assert (spec.module, spec.function) == ("pkg.report", "summarise")
    assert parse_manifest(HEAD).service is None


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ('"list[str]"', '"list[bytes]"', "argument 'lines' has type 'list[bytes]'"),
        (
            'call = "pkg.report:summarise"',
            'call = "pkg.report.summarise"',
            "service.functions.summarise.call",
        ),
        ("top = 3 }", "top = 3, extra = 1 }", "example names extra, not in args"),
        (
            'example = { lines = ["a"], top = 3 }',
            "example = { top = 3 }",
            "example lacks required lines",
        ),
        ("top = 3 }", 'top = "3" }', "example 'top': expected int, got a string"),
        ("workers = 3", "workers = 0", "service.workers"),
        ("workers = 3", "wrokers = 3", "service.wrokers"),
    ],
)
def test_bad_service_sections_say_which_key(old: str, new: str, words: str) -> None:
    assert old in GOOD
    with pytest.raises(ManifestError, match="genome.toml: key") as caught:
        parse_manifest(GOOD.replace(old, new))
    assert words in str(caught.value)


def spec():  # type: ignore[no-untyped-def]
    service = parse_manifest(GOOD).service
    assert service is not None
    return service.functions["summarise"]


def test_check_args_passes_what_fits() -> None:
    assert check_args(spec(), {"lines": ["x"], "top": 2}) == {"lines": ["x"], "top": 2}
    assert check_args(spec(), {"lines": [], "ratio": 1}) == {
        "lines": [],
        "ratio": 1,
    }  # int is a float
    assert check_args(spec(), {"lines": [], "top": None}) == {"lines": []}  # optional null: default
    assert check_args(spec(), {"lines": [], "flags": {"a": 1}, "any": [1, "x"]})["any"] == [1, "x"]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "missing argument 'lines'"),
        ({"lines": [], "topp": 1}, "unknown argument 'topp'"),
        (
            {"lines": "a"},
            "argument 'lines' of function 'summarise': expected a list of str, got a string",
        ),
        ({"lines": ["a", 2]}, "item 1 should be str, got an integer"),
        ({"lines": [], "top": True}, "argument 'top'"),
        ({"lines": [], "top": 1.5}, "argument 'top'"),
        ({"lines": [], "ratio": "1"}, "argument 'ratio'"),
        ({"lines": [], "flags": []}, "argument 'flags'"),
        ({"lines": None}, "argument 'lines'"),
    ],
)
def test_check_args_refuses_naming_the_argument(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(BadCallError) as caught:
        check_args(spec(), kwargs, "summarise")
    assert words in caught.value.message and caught.value.hint


@pytest.mark.parametrize("genome", ["logstats", "textindex"])
def test_shipped_genomes_declare_their_service(genome: str) -> None:
    manifest, tree = load_genome(Path(__file__).parents[1] / "genomes" / genome)
    assert manifest.service is not None
    for spec in manifest.service.functions.values():
        assert f"{spec.module.replace('.', '/')}.py" in tree
        assert check_args(spec, spec.example) == spec.example


def test_cluster_yml_http_ports(tmp_path: Path) -> None:
    from evolution.errors import ConfigError
    from runtime.config import parse_cluster

    text = "nodes:\n  - {id: n1, port: 7101, http: 8101}\n  - {id: n2, port: 7102}\n"
    config = parse_cluster(text, tmp_path / "cluster.yml")
    assert config.http_url("n1") == "http://127.0.0.1:8101" and config.http_url("n2") is None
    assert config.http_bind("n2") == ("127.0.0.1", 0)  # a free port at start, reported by the node
    with pytest.raises(
        ConfigError, match=r"nodes\[1\].http.*127.0.0.1:7101 is already taken by n1"
    ):
        parse_cluster(
            text.replace("port: 7102}", "port: 7102, http: 7101}"), tmp_path / "cluster.yml"
        )
