"""The tiny genome on a real sandbox with the real instruction counter, and the edits of
its hot line the cascade tests judge (test_cascade: the quick run; test_short_count: the
short count).  One copy, so both modules test the same slower and faster candidates."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from evolution.manifest import Manifest, parse_manifest
from runtime.genome_files import load_genome
from runtime.incubation import forget_counts
from runtime.sandbox import Sandbox

TINY = Path(__file__).parent / "data" / "tiny"

#: (old, new[, appended]) edits of tiny/core.py's hot membership test
SLOWER = ("if word in COMMON:", "if word in COMMON + COMMON + COMMON:")
FASTER = ("if word in COMMON:", "if word in COMMON_SET:", "\nCOMMON_SET = frozenset(COMMON)\n")


def variant(tree: dict[str, str], old: str, new: str, extra: str = "") -> dict[str, str]:
    """``tree`` with ``old`` replaced by ``new`` in tiny/core.py and ``extra`` appended."""
    child = dict(tree)
    core = child["tiny/core.py"]
    assert old in core
    child["tiny/core.py"] = core.replace(old, new) + extra
    return child


@contextmanager
def counted_tiny(settings: str) -> Iterator[tuple[Sandbox, Manifest, dict[str, str]]]:
    """A sandbox, and tiny counted in instructions with ``settings`` after its ``rounds``
    line; the count cache is cleared before and after, so no test reuses another's counts.
    Skips when valgrind (the counter) is missing."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed: the exact measure falls back to timing")
    _, tree = load_genome(TINY)
    text = tree["genome.toml"].replace(
        "rounds = 3", f'rounds = 3\nmeasure = "instructions"\n{settings}'
    )
    tree["genome.toml"] = text
    forget_counts()
    try:
        with tempfile.TemporaryDirectory() as work, Sandbox(Path(work) / "sandbox") as sandbox:
            yield sandbox, parse_manifest(text), tree
    finally:
        forget_counts()
