"""The analyzer's heat is the site's own cost: self time inside, the callee's share at a call."""

from __future__ import annotations

import textwrap

from evolution.analysis import analyze
from evolution.heat import site_heat
from evolution.manifest import parse_manifest
from evolution.mutators.base import Site
from evolution.profile import parse_profile
from evolution.sites import functions

MANIFEST = parse_manifest(
    textwrap.dedent(
        """
        [genome]
        name = "solver"
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

# A recursive solver: it is "100 % of the profile" cumulatively, but its own loop is cheap;
# the time goes into `score`, a small function it calls many times.
SOLVER = textwrap.dedent(
    """
    def solve(board, depth):
        moves = []
        for cell in board:
            moves.append(score(cell))
        if depth:
            solve(board, depth - 1)
        return moves


    def score(cell):
        total = 0
        for x in range(cell):
            total += x
        return total


    class A:
        def add(self, x):
            out = []
            for i in x:
                out.append(i)
            return out


    class B:
        def add(self, x):
            out = []
            for i in x:
                out.append(i)
            return out
    """
)

ROWS = [
    {"file": "bench.py", "function": "<module>", "line": 1, "calls": 1, "tottime": 0.0, "cumtime": 10.0},
    {"file": "pkg/solver.py", "function": "solve", "line": 2, "calls": 50, "tottime": 0.5, "cumtime": 10.0},
    {"file": "pkg/solver.py", "function": "score", "line": 11, "calls": 364000, "tottime": 8.0, "cumtime": 8.0},
    {"file": "pkg/solver.py", "function": "add", "line": 19, "calls": 10, "tottime": 0.1, "cumtime": 0.1},
    {"file": "pkg/solver.py", "function": "add", "line": 26, "calls": 900, "tottime": 1.2, "cumtime": 1.2},
]  # fmt: skip


def test_self_share_is_tottime_over_the_run() -> None:
    profile = parse_profile(ROWS)
    solve = profile.find("pkg/solver.py", "solve")
    assert solve is not None
    assert solve.share == 1.0 and solve.self_share == 0.05


def test_a_site_inside_a_recursive_solver_weighs_its_self_time_not_the_whole_run() -> None:
    profile = parse_profile(ROWS)
    found = analyze({"pkg/solver.py": SOLVER}, MANIFEST, profile)
    alias = next(o for o in found if o.kind == "local_alias" and o.function == "solve")
    assert alias.share == 0.05 and alias.calls == 50
    assert "5% self time of the bench, 50 calls" in alias.evidence
    # weight ≤ 1.3 on 5 % of the run: at most 1.2 % faster, never the 1.1× of "100 %"
    assert alias.expected_gain < 1.015
    assert alias.predicted_gain == alias.expected_gain  # no calibration given


def test_methods_of_the_same_name_are_told_apart_by_their_line() -> None:
    profile = parse_profile(ROWS)
    found = analyze({"pkg/solver.py": SOLVER}, MANIFEST, profile)
    cold = next(o for o in found if o.kind == "local_alias" and o.function == "A.add")
    hot = next(o for o in found if o.kind == "local_alias" and o.function == "B.add")
    assert (cold.share, cold.calls) == (0.01, 10)
    assert (hot.share, hot.calls) == (0.12, 900)


def test_a_call_site_rewrite_weighs_the_callee() -> None:
    profile = parse_profile(ROWS)
    spans = functions(SOLVER)
    memo = Site("pkg/solver.py", "score", 11, "memoize", "score is pure", 2.0)
    heat = site_heat(memo, profile, spans)
    assert (heat.basis, heat.share, heat.calls) == ("cumulative", 0.8, 364000)
    assert heat.words() == "80% cumulative time of the bench, 364,000 calls"

    class Inline(Site):
        callee: str = "score"

    inline = Inline("pkg/solver.py", "solve", 5, "inline", "inline score()", 1.5)
    heat = site_heat(inline, profile, spans)
    assert (heat.basis, heat.function, heat.share) == ("self", "score", 0.8)
    alias = Site("pkg/solver.py", "solve", 5, "local_alias", "", 1.1)
    assert site_heat(alias, profile, spans).share == 0.05


def test_a_function_the_bench_never_ran_says_so() -> None:
    profile = parse_profile(ROWS[:2])
    heat = site_heat(Site("pkg/solver.py", "score", 13, "local_alias", "", 1.1), profile, {})
    assert heat.basis == "unseen" and heat.share == 0.0
    assert heat.words() == "`score` never ran in the bench's profile"


def test_opportunities_carry_the_function_fingerprint() -> None:
    found = analyze({"pkg/solver.py": SOLVER}, MANIFEST)
    solve = next(o for o in found if o.function == "solve")
    assert solve.fingerprint == functions(SOLVER)["solve"].fingerprint
    assert solve.detail and solve.detail in solve.evidence and solve.weight > 1.0
