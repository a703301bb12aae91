"""The generator's shortcuts give exactly the candidates the plain path gives.

* ``Edit.run`` with the module's index visits only the path to the changed nodes; the
  code must equal a full visit for every rewrite every mutator finds in the genomes;
* findings and rewrites remembered per parsed module, and candidates remembered per
  version by the Generator, must equal what a cold run computes;
* ``cli.main`` must not import what ``tars log`` never uses.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from actors.generator import Generator
from actors.messages import Generate
from evolution.analysis import analyze
from evolution.mutators import ALL_MUTATORS
from evolution.mutators.base import CstMutator
from evolution.mutators.cst_tools import children, index
from evolution.planner import Outcomes, plan
from evolution.tree import version_id
from runtime.genome_files import load_genome

ROOT = Path(__file__).resolve().parent.parent
GENOMES = [
    ROOT / "tests" / "data" / "tiny",
    ROOT / "genomes" / "logstats",
    ROOT / "genomes" / "textindex",
]


@pytest.mark.parametrize("folder", GENOMES, ids=lambda p: p.name)
def test_pruned_edit_equals_a_full_visit(folder: Path) -> None:
    _, tree = load_genome(folder)
    checked = 0
    for path, source in sorted(tree.items()):
        idx = index(source) if path.endswith(".py") else None
        if idx is None:
            continue
        for mutator in ALL_MUTATORS:
            assert isinstance(mutator, CstMutator)
            for finding in mutator.find(idx, path):
                edit = finding.edit()
                if edit is None:
                    continue
                pruned = edit.run(idx.module, idx)
                assert pruned == finding.edit().run(idx.module)  # type: ignore[union-attr]
                assert pruned != source
                checked += 1
    assert checked > 0


def _cold() -> None:
    index.cache_clear()
    children.cache_clear()


@pytest.mark.parametrize("folder", GENOMES, ids=lambda p: p.name)
def test_remembered_generation_equals_a_cold_one(folder: Path) -> None:
    manifest, tree = load_genome(folder)
    version = version_id(tree)
    risks = {m.name: m.risk for m in ALL_MUTATORS}

    def generate(generator: Generator) -> tuple[list[object], list[str]]:
        opportunities = analyze(tree, manifest, None)
        plans = plan(opportunities, Outcomes(table={}), risks=risks, rng=random.Random(3), limit=8)
        made = generator.on_generate(Generate(version, tree, plans))
        return list(made.candidates), list(made.failures)

    _cold()
    cold = generate(Generator())
    warm_actor = Generator()
    first = generate(warm_actor)
    again = generate(warm_actor)  # from the actor's memory and the modules' memos
    _cold()
    after_eviction = generate(warm_actor)
    assert cold == first == again == after_eviction
    assert cold[0], "the genome offers candidates"


def test_findings_are_shared_by_scan_and_apply() -> None:
    _, tree = load_genome(GENOMES[0])
    path = "tiny/core.py"
    mutator = next(m for m in ALL_MUTATORS if m.name == "set_membership")
    assert isinstance(mutator, CstMutator)
    sites = mutator.scan(path, tree[path])
    idx = index(tree[path])
    assert idx is not None and ("findings", mutator.name, path) in idx.memo
    text = mutator.apply(tree[path], sites[0])
    assert idx.memo[("apply", mutator.name, sites[0])] == text
    assert mutator.apply(tree[path], sites[0]) == text


def test_cli_main_imports_nothing_heavy() -> None:
    code = (
        "import sys, cli.main\n"
        "heavy = ['libcst', 'pykka', 'zmq', 'runtime.config', 'runtime.launcher', 'node', 'events.store',"
        " 'evolution.analysis', 'rich.progress', 'yaml']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "[]"
