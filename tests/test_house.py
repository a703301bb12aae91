"""The house rules of docs/architecture.md, checked on the source tree itself.

Rooms stay small enough to read (modules ≤ 500 lines, over 400 only with a reason in
docs/architecture.md, functions ≤ 80 lines), imports go one way, and a library's private
names live in its one adapter module.  A change that breaks a rule fails here with the
file and line to look at, instead of being found by the next newcomer.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("actors", "events", "consensus", "runtime", "evolution", "cli")
MODULE_LIMIT = 500
MODULE_NOTE = 400
FUNCTION_LIMIT = 80


def sources() -> list[Path]:
    files = [p for room in ROOMS for p in sorted((ROOT / room).rglob("*.py"))]
    return [*files, ROOT / "node.py"]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def lines_of(path: Path) -> int:
    return path.read_text().count("\n")


def imported(path: Path) -> set[str]:
    """The top-level TARS packages a module imports (at any depth of the file)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & {*ROOMS, "node"}


def test_no_module_over_the_limit() -> None:
    over = [f"{rel(p)}: {lines_of(p)} lines" for p in sources() if lines_of(p) > MODULE_LIMIT]
    assert not over, f"modules over {MODULE_LIMIT} lines (split them by concept): {over}"


def test_modules_over_400_lines_say_why_in_the_map() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    doc = text[text.index("## Sizes") :]  # a reason is a line under that heading
    unexplained = [
        f"{rel(p)}: {lines_of(p)} lines"
        for p in sources()
        if lines_of(p) > MODULE_NOTE and f"`{rel(p)}`" not in doc
    ]
    assert not unexplained, (
        f"modules over {MODULE_NOTE} lines with no reason under 'Sizes' in "
        f"docs/architecture.md: {unexplained}"
    )


def test_no_function_over_the_limit() -> None:
    long: list[str] = []
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT:
                    long.append(f"{rel(path)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, f"functions over {FUNCTION_LIMIT} lines (name their steps): {long}"


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        ("evolution", {"actors", "events", "consensus", "runtime", "cli", "node"}),
        ("runtime", {"actors", "events", "consensus", "cli", "node"}),
        ("events", {"actors", "consensus", "runtime", "cli", "node"}),
        ("consensus", {"actors", "cli", "node"}),
        ("actors", {"cli", "node"}),
    ],
)
def test_imports_go_one_way(room: str, forbidden: set[str]) -> None:
    wrong = [
        f"{rel(p)} imports {sorted(imported(p) & forbidden)}"
        for p in sorted((ROOT / room).rglob("*.py"))
        if imported(p) & forbidden
    ]
    assert not wrong, f"imports against the direction in docs/architecture.md: {wrong}"


@pytest.mark.parametrize(
    ("pattern", "adapter"),
    [
        # written in two halves, so that this file is not itself a match of the grep
        ("_SyncObj" + "__|_PipeNotifier" + "__", "consensus/_pysyncobj.py"),
        (r"^\s*(from|import) eventsourcing\b", "events/_eventsourcing.py"),
    ],
)
def test_private_library_names_live_in_one_adapter(pattern: str, adapter: str) -> None:
    """pysyncobj's mangled names, and eventsourcing itself, are reached from one module."""
    regex = re.compile(pattern, re.MULTILINE)
    users = sorted(rel(p) for p in sources() if regex.search(p.read_text()))
    assert users == [adapter], f"{pattern!r} is used outside {adapter}: {users}"
