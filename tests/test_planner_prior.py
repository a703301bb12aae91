"""An untried kind is ranked by what its rewrite removes, not by its function's events.

Under ``measure = "instructions"`` the analyzer's profile counts events (calls and
returns), and a C call that sorts 64 items is one event, as ``len`` is.  The prior of a
kind never measured (:mod:`evolution.priors`) weighs what one execution of the rewrite
removes (a sort for a scan) by how often the site runs (the profile's count of the
function's calls to ``sorted``) against the version's counted instructions.  The first
tests run the real profiling child in a real process and count the bench with valgrind.
"""

from __future__ import annotations

import ast
import json
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from evolution.analysis import Opportunity, analyze, calibrated
from evolution.calibration import Calibration
from evolution.planner import Outcomes, plan
from evolution.priors import _size
from evolution.profile import parse_profile
from evolution.stopping import worth_a_slot
from runtime.counting import VALGRIND_FLAGS, valgrind
from runtime.sandbox import Sandbox, SandboxLimits
from runtime.sandbox_rows import valid_rows
from tests.test_analysis_heat import MANIFEST

REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
CHILD = Path(__file__).resolve().parent.parent / "runtime" / "_sandbox_child.py"

SOURCE = textwrap.dedent(
    """
    WINDOW = 64


    def peaks(rows, window=WINDOW):
        history = []
        out = []
        for x in rows:
            if len(history) >= window:
                recent = history[-window:]
                out.append(x > sorted(recent)[-1])
            history.append(x)
        return out


    def collect(rows):
        out = []
        for x in rows:
            out.append(x)
            out.append(x + 1)
            out.append(x + 2)
        return out
    """
)
BENCH = (
    "from pkg.mod import peaks, collect\n"
    "rows = [(i * 7919) % 10007 for i in range(40000)]\n"
    "peaks(rows[:3000])\n"
    "collect(rows)\n"
)


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, object]], float]:
    """The bench's rows under the counting clock (the real child) and its instructions."""
    counter = valgrind()
    if counter is None:
        pytest.skip("valgrind is not installed (the instruction counter the fitness uses)")
    work = tmp_path_factory.mktemp("prior")
    pkg = work / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(SOURCE)
    (work / "bench.py").write_text(BENCH)
    out = work / "rows.json"
    subprocess.run(
        [sys.executable, "-S", str(CHILD), str(out), "--events", "bench.py"],
        cwd=work,
        check=True,
        timeout=60,
    )
    counted = subprocess.run(
        [counter, *VALGRIND_FLAGS, sys.executable, "-S", "bench.py"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = REFS.search(counted.stderr)
    assert found is not None, counted.stderr[-300:]
    rows: list[dict[str, object]] = json.loads(out.read_text())
    return rows, float(found.group(1).replace(",", ""))


def _analysis(rows: list[dict[str, object]], instructions: float | None) -> list[Opportunity]:
    profile = parse_profile(rows, instructions=instructions)
    return analyze({"pkg/mod.py": SOURCE, "pkg/__init__.py": ""}, MANIFEST, profile)


def _site(found: list[Opportunity], kind: str, function: str) -> Opportunity:
    return next(o for o in found if o.kind == kind and o.function == function)


def test_the_child_counts_each_builtin_a_function_calls(
    measured: tuple[list[dict[str, object]], float],
) -> None:
    rows, _ = measured
    profile = parse_profile(rows)
    peaks = profile.find("pkg/mod.py", "peaks")
    assert peaks is not None
    assert peaks.called("sorted") == 3000 - 64  # once per iteration past the window
    assert peaks.called("len") == 3000 and peaks.called("list.append") > 3000


def test_a_sort_site_ranks_above_a_local_alias_site_the_events_make_hotter(
    measured: tuple[list[dict[str, object]], float],
) -> None:
    rows, instructions = measured
    before = _analysis(rows, None)  # no count: the heat model alone, as before priors
    sort_site = _site(before, "min_max_sorted", "peaks")
    alias_site = _site(before, "local_alias", "collect")
    # the counting clock sees 3 appends per row in collect, 1 sorted per row in peaks
    assert alias_site.expected_gain > sort_site.expected_gain
    found = _analysis(rows, instructions)
    sort_site = _site(found, "min_max_sorted", "peaks")
    alias_site = _site(found, "local_alias", "collect")
    assert sort_site.prior_gain > alias_site.expected_gain >= alias_site.predicted_gain
    assert sort_site.expected_gain == sort_site.prior_gain > sort_site.predicted_gain
    assert alias_site.prior_gain == 0.0  # an attribute load has no prior: the heat stands
    assert "a sort of 64 items for a scan on each of 2,936 runs" in sort_site.evidence
    ranked = plan(found, Outcomes(), risks={}, rng=random.Random(1), limit=9,
                  explore=False)  # fmt: skip
    kinds = [p.opportunity.kind for p in ranked]
    assert kinds.index("min_max_sorted") < kinds.index("local_alias")


def test_a_measured_kind_uses_its_calibration_not_the_prior(
    measured: tuple[list[dict[str, object]], float],
) -> None:
    rows, instructions = measured
    found = _analysis(rows, instructions)
    sort_site = _site(found, "min_max_sorted", "peaks")
    alias_site = _site(found, "local_alias", "collect")
    calibration = Calibration()
    calibration.record("min_max_sorted", 1.0, sort_site.predicted_gain)  # measured 1.00x
    after = calibrated(found, calibration)
    sort_after = _site(after, "min_max_sorted", "peaks")
    expected = calibration.gain("min_max_sorted", sort_site.predicted_gain)
    assert sort_after.expected_gain == round(expected, 4) < sort_site.prior_gain
    # a kind measured at 1.00x is no longer predicted above the untouched local_alias
    assert sort_after.expected_gain < _site(after, "local_alias", "collect").expected_gain
    assert _site(after, "local_alias", "collect").expected_gain == alias_site.expected_gain
    # and a kind never measured keeps its prior through the calibration
    untried = calibrated(found, Calibration())
    assert _site(untried, "min_max_sorted", "peaks").expected_gain == sort_site.prior_gain


def test_an_untried_kind_s_prior_earns_its_site_a_slot(
    measured: tuple[list[dict[str, object]], float],
) -> None:
    rows, instructions = measured
    found = _analysis(rows, instructions)
    sort_site = _site(found, "min_max_sorted", "peaks")
    other = Opportunity("pkg/mod.py", "peaks", 9, "min_max_sorted", "x", 1.001, 0.2,
                        predicted_gain=1.001)  # fmt: skip
    chosen = worth_a_slot([other, sort_site], threshold=1.02)
    assert sort_site in chosen  # its prior, not its static 1.00x, is what counts untried


def test_without_a_count_or_with_a_real_clock_there_is_no_prior(
    measured: tuple[list[dict[str, object]], float],
) -> None:
    rows, _ = measured
    for opp in _analysis(rows, None):
        assert opp.prior_gain == 0.0 and "by its own cost" not in opp.evidence


def _sized(code: str, name: str = "f") -> int | None:
    module = ast.parse(textwrap.dedent(code))
    function = next(n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name)
    target = next(
        n
        for n in ast.walk(function)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "sorted"
    )
    return _size(target.args[0], function, module)


def test_a_size_is_read_only_where_the_code_says_it_plainly() -> None:
    assert _sized("B = [3, 1, 2]\ndef f(b=B):\n    return sorted(b)") == 3
    assert _sized("def f(h, k=80):\n    r = h[-k:]\n    return sorted(r)") == 80
    assert _sized("def f(h):\n    return sorted(h[2:10])") == 8
    assert _sized("def f(h):\n    return sorted(h)") is None  # a parameter: unknown
    # a list built empty and appended to has the run's size, not 0
    assert (
        _sized(
            "def f(xs):\n    h = []\n    for x in xs:\n        h.append(x)\n    return sorted(h)"
        )
        is None
    )
    # bound twice, or by a loop: not one value
    assert (
        _sized("def f(c):\n    r = [1]\n    if c:\n        r = [1, 2]\n    return sorted(r)")
        is None
    )
    assert _sized("def f(xs):\n    for r in xs:\n        return sorted(r)") is None
    # a module constant someone appends to is not a constant
    assert _sized("B = [1, 2]\nB.append(3)\ndef f():\n    return sorted(B)") is None
    # a local shadowing a module constant is the local
    assert _sized("B = [1, 2]\ndef f(B):\n    return sorted(B)") is None
    assert _sized("def f(h, k):\n    return sorted(h[-k:])") is None
    # a name read inside an item being set is not bound there
    code = "B = [1, 2, 3]\ndef f(c, b=B):\n    c[len(sorted(b))] += 1\n    return sorted(b)"
    assert _sized(code) == 3


def test_the_jail_s_rows_carry_the_builtin_figures(tmp_path: Path) -> None:
    """Through the real sandbox, as the analyzer profiles: the figures reach the parent."""
    tree = {"pkg/__init__.py": "", "pkg/mod.py": SOURCE, "bench.py": BENCH}
    limits = SandboxLimits(wall_seconds=30, cpu_seconds=30, memory_mb=512, processes=16,
                           file_mb=4)  # fmt: skip
    with Sandbox(tmp_path / "sandbox") as sandbox, sandbox.workspace(tree) as workdir:
        result, rows = sandbox.run_profiled(workdir, ["python", "-S", "bench.py"], limits,
                                            events=True)  # fmt: skip
    assert result.ok, result
    peaks = parse_profile(rows).find("pkg/mod.py", "peaks")
    assert peaks is not None and peaks.called("sorted") == 3000 - 64
    assert peaks.builtin_share > 0


def test_the_sandbox_passes_builtin_figures_through_checked() -> None:
    row = {"file": "m.py", "function": "f", "line": 1, "calls": 1, "tottime": 1.0, "cumtime": 2.0}
    kept = valid_rows(
        [
            {**row, "builtin": 0.5, "builtin_calls": {"<built-in method builtins.sorted>": 3}},
            {**row, "line": 2, "builtin": float("inf"), "builtin_calls": {"x": "many", 1: 2}},
            {**row, "line": 3, "builtin": True, "builtin_calls": ["sorted"]},
        ]
    )
    by_line = {r["line"]: r for r in kept}
    assert by_line[1]["builtin"] == 0.5
    assert by_line[1]["builtin_calls"] == {"<built-in method builtins.sorted>": 3}
    assert "builtin" not in by_line[2] and by_line[2]["builtin_calls"] == {}
    assert "builtin" not in by_line[3] and "builtin_calls" not in by_line[3]


def test_builtin_counts_from_the_sandbox_are_checked() -> None:
    row = {"file": "m.py", "function": "f", "line": 1, "calls": 1, "tottime": 1.0, "cumtime": 2.0}
    junk = {
        "<built-in method builtins.sorted>": 5,
        "<method 'append' of 'list' objects>": 7,
        "<built-in method builtins.len>": True,  # a bool is no count
        "bad": -3,
        "float": 2.5,
        7: 9,
        "x" * 500: 1,
    }
    profile = parse_profile([{**row, "builtin_calls": junk}], instructions=float("nan"))
    found = profile.find("m.py", "f")
    assert found is not None
    assert dict(found.builtin_calls) == {"sorted": 5, "list.append": 7}
    assert profile.instructions is None  # not a count
    many = {f"<built-in method builtins.b{i}>": 1 for i in range(10_000)}
    flooded = parse_profile([{**row, "builtin_calls": many}]).find("m.py", "f")
    assert flooded is not None and len(flooded.builtin_calls) <= 256
    assert parse_profile([{**row, "builtin_calls": "sorted"}]).hotspots[0].builtin_calls == ()
