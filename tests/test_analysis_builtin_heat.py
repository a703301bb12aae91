"""A site's heat counts the builtins its function's lines call (``sorted`` in ``sorted(xs)[0]``).

cProfile books a C function's time on the C function, so a caller's ``tottime`` leaves
it out; the profiling child now books it on the caller too ("builtin"), and a rewrite
inside the function weighs it.  The first test runs the real child in a real process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

from evolution.analysis import analyze
from evolution.heat import site_heat
from evolution.mutators.base import Site
from evolution.planner import Outcomes, plan
from evolution.profile import parse_profile
from evolution.sites import functions
from tests.test_analysis_heat import MANIFEST

CHILD = Path(__file__).resolve().parent.parent / "runtime" / "_sandbox_child.py"

SOURCE = textwrap.dedent(
    """
    def smallest(xs):
        return sorted(xs)[0]


    def squares(n):
        out = []
        for i in range(n):
            out.append(i * i)
        return out
    """
)


def _rows(tmp_path: Path) -> list[dict[str, object]]:
    """Profile a bench whose time is mostly ``sorted`` called from ``smallest``."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(SOURCE)
    (tmp_path / "bench.py").write_text(
        "from pkg.mod import smallest, squares\n"
        "data = [(i * 7919) % 10007 for i in range(20000)]\n"
        "for _ in range(30):\n"
        "    smallest(data)\n"
        "squares(60000)\n"
    )
    out = tmp_path / "rows.json"
    subprocess.run(
        [sys.executable, str(CHILD), str(out), "bench.py"], cwd=tmp_path, check=True, timeout=60
    )
    rows: list[dict[str, object]] = json.loads(out.read_text())
    return rows


def test_the_child_books_a_builtins_time_on_its_caller(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    row = next(r for r in rows if r["file"] == "pkg/mod.py" and r["function"] == "smallest")
    assert isinstance(row["builtin"], float) and isinstance(row["tottime"], float)
    assert row["builtin"] > 5 * row["tottime"]  # the sort is the work, not the line
    profile = parse_profile(rows)
    found = profile.find("pkg/mod.py", "smallest")
    assert found is not None and found.builtin_share > 0.5


def test_a_site_whose_builtin_call_dominates_gets_the_heat(tmp_path: Path) -> None:
    rows = _rows(tmp_path)
    profile = parse_profile(rows)
    spans = functions(SOURCE)
    site = Site("pkg/mod.py", "smallest", 3, "min_max_sorted", "sorted(xs)[0]", 1.5)
    heat = site_heat(site, profile, spans)
    assert heat.basis == "self" and heat.share > 0.5 and heat.builtin > 0.5
    assert "in builtins it calls" in heat.words()
    # the same site without the child's figure (an older sandbox's rows) is cold
    bare = [{k: v for k, v in r.items() if k != "builtin"} for r in rows]
    assert site_heat(site, parse_profile(bare), spans).share < 0.2


def test_an_untried_kinds_first_try_ranks_by_what_its_rewrite_removes(tmp_path: Path) -> None:
    profile = parse_profile(_rows(tmp_path))
    found = analyze({"pkg/mod.py": SOURCE}, MANIFEST, profile)
    first = plan(found, Outcomes(), risks={}, rng=random.Random(0), limit=3, explore=False)
    assert first and first[0].opportunity.kind == "min_max_sorted"
    assert first[0].opportunity.expected_gain > 1.1
    assert "untried" in first[0].reason


def test_a_junk_builtin_figure_costs_nothing_and_never_exceeds_the_row() -> None:
    base = {"file": "m.py", "function": "f", "line": 1, "calls": 1, "tottime": 1.0, "cumtime": 2.0}
    for junk in (-1.0, float("nan"), "9", True, None):
        row = parse_profile([{**base, "builtin": junk}]).find("m.py", "f")
        assert row is not None and row.builtin_share == 0.0
    row = parse_profile([{**base, "builtin": 50.0}], total=4.0).find("m.py", "f")
    assert row is not None and row.builtin_share == 0.5  # capped at its cumtime, 2 of 4
