"""The collatz genome (tests/data/collatz) and its planted candidates, for the fitness and held-out tests.

``tests/data/collatz_candidates/NAME.py`` replaces ``collatz/core.py``; :func:`planted`
makes the node's generator offer exactly those candidates, so a real single node proves,
judges and records them (real sandbox, real store), with no mutator choosing for it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from actors.generator import Generator
from actors.messages import Generate, Generated
from evolution.generate import Candidate, candidate_id
from evolution.patch import make_patch
from evolution.tree import Tree, version_id

DATA = Path(__file__).parent / "data"
COLLATZ = DATA / "collatz"
CANDIDATES = DATA / "collatz_candidates"
CORE = "collatz/core.py"


def collatz(root: Path, *, measure: str = "benchmark") -> Path:
    """A copy of the collatz genome judged by ``measure`` (timed A/B runs are seconds, counts more)."""
    folder = root / "collatz"
    shutil.copytree(COLLATZ, folder)
    manifest = folder / "genome.toml"
    text = manifest.read_text(encoding="utf-8")
    manifest.write_text(
        text.replace('measure = "instructions"', f'measure = "{measure}"'), encoding="utf-8"
    )
    return folder


def candidate(tree: Tree, name: str, text: str | None = None) -> Candidate:
    """The planted candidate ``name`` (a file of tests/data/collatz_candidates, or ``text``) against ``tree``."""
    child = dict(tree)
    child[CORE] = text if text is not None else (CANDIDATES / f"{name}.py").read_text("utf-8")
    parent = version_id(tree)
    patch = make_patch(tree, child)
    return Candidate(
        candidate_id(parent, patch), parent, patch, name, "planted", CORE, "steps", 4, name
    )


@contextmanager
def planted(
    monkeypatch: pytest.MonkeyPatch, names: Sequence[str], texts: Mapping[str, str] | None = None
) -> Iterator[None]:
    """The generator offers the candidates ``names`` against whatever head it is asked about
    (``texts``: a name's ``collatz/core.py``, where it is not a file of collatz_candidates)."""

    def offer(self: Generator, message: Generate) -> Generated:
        made = [candidate(dict(message.tree), n, (texts or {}).get(n)) for n in names]
        return Generated(made, [])

    with monkeypatch.context() as patch:
        patch.setattr(Generator, "on_generate", offer)
        yield
