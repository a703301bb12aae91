"""Analysis: finds the rewrites across a tree, ranks by profile heat, skips what it cannot evolve."""

from __future__ import annotations

import textwrap

from evolution.analysis import amdahl, analyze
from evolution.manifest import parse_manifest
from evolution.profile import parse_profile

MANIFEST = parse_manifest(
    textwrap.dedent(
        """
        [genome]
        name = "demo"
        sources = ["pkg/*.py"]

        [commands]
        test = "python -m pytest -q"
        bench = "python bench.py"

        [fitness]
        metric = "seconds"
        direction = "minimize"
        """
    )
)

HOT = textwrap.dedent(
    """
    STOP = ["a", "an", "the", "of", "to", "in"]


    def tokens(words):
        out = []
        for w in words:
            if w not in STOP:
                out.append(w)
        return out
    """
)

COLD = textwrap.dedent(
    """
    def top(xs):
        return sorted(xs)[0]


    def render(rows):
        text = ""
        for r in rows:
            text += r
        return text
    """
)

TREE = {
    "pkg/hot.py": HOT,
    "pkg/cold.py": COLD,
    "pkg/broken.py": "def f(:\n    pass\n",
    "tests/test_pkg.py": HOT,
    "bench.py": HOT,
    "pkg/notes.txt": "x in [1, 2]",
}


def test_analyze_finds_expected_kinds_only_in_sources() -> None:
    found = analyze(TREE, MANIFEST)
    assert {o.file for o in found} == {"pkg/hot.py", "pkg/cold.py"}
    kinds = {(o.file, o.kind) for o in found}
    assert ("pkg/hot.py", "set_membership") in kinds
    assert ("pkg/cold.py", "min_max_sorted") in kinds
    assert ("pkg/cold.py", "join_concat") in kinds
    member = next(o for o in found if o.kind == "set_membership")
    assert member.function == "tokens" and "loop depth 1" in member.evidence
    assert all(o.expected_gain >= 1.0 and 0.0 < o.confidence <= 1.0 for o in found)


def test_analyze_is_sorted_and_deterministic() -> None:
    first = analyze(TREE, MANIFEST)
    assert first == analyze(dict(reversed(list(TREE.items()))), MANIFEST)
    keys = [(-o.expected_gain, o.file, o.line, o.kind) for o in first]
    assert keys == sorted(keys)


def test_profile_ranks_hot_function_first() -> None:
    rows = [
        {
            "file": "bench.py",
            "function": "<module>",
            "line": 1,
            "calls": 1,
            "tottime": 0.01,
            "cumtime": 1.0,
        },
        {
            "file": "pkg/hot.py",
            "function": "tokens",
            "line": 5,
            "calls": 100,
            "tottime": 0.7,
            "cumtime": 0.8,
        },
        {
            "file": "pkg/cold.py",
            "function": "top",
            "line": 2,
            "calls": 1,
            "tottime": 0.001,
            "cumtime": 0.001,
        },
        {"file": "pkg/cold.py", "function": "render"},  # junk: skipped
        "not a row",
        {
            "file": "pkg/x.py",
            "function": "f",
            "line": True,
            "calls": 1,
            "tottime": 0.1,
            "cumtime": 0.1,
        },
    ]
    profile = parse_profile(rows)  # type: ignore[arg-type]
    assert len(profile.hotspots) == 3 and profile.total == 1.0
    assert profile.heat("pkg/hot.py", "tokens") == 0.8
    assert profile.heat("pkg/hot.py", "Tokenizer.tokens") == 0.8
    assert profile.heat("pkg/hot.py", "other") == 0.0
    found = analyze(TREE, MANIFEST, profile)
    assert found[0].file == "pkg/hot.py" and found[0].function == "tokens"
    hot = found[0]
    cold = next(o for o in found if o.kind == "min_max_sorted")
    assert hot.expected_gain > cold.expected_gain
    assert hot.confidence > cold.confidence
    assert "70% self time of the bench, 100 calls" in hot.evidence
    render = next(o for o in found if o.function == "render")
    assert render.expected_gain == 1.0  # the profile never saw it run


def test_amdahl() -> None:
    assert amdahl(0.0, 3.0) == 1.0
    assert amdahl(1.0, 3.0) == 3.0
    assert abs(amdahl(0.5, 2.0) - 1 / 0.75) < 1e-9


def test_analyze_with_no_sources() -> None:
    assert analyze({"pkg/broken.py": "def (:"}, MANIFEST) == []
