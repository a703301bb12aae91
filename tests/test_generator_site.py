"""The generator hands a mutator the opportunity's own site, so the plan's rewrite is the one made.

Two rewrites of one mutator can share a function and a line (two lookups in one loop):
only the site's ``detail`` tells them apart.  The generator once passed the analyzer's
prose (``evidence``) as the detail, so every plan at that line got the first rewrite.
"""

from __future__ import annotations

import pykka

from actors.generator import Generator
from actors.messages import Generate, Generated
from evolution.analysis import analyze
from evolution.manifest import parse_manifest
from evolution.mutators import by_name
from evolution.planner import Plan
from evolution.tree import version_id

SOURCE = """def collect(items, out, fmt):
    for item in items:
        out.append(fmt.render(item))
    return out
"""

MANIFEST = """[genome]
name = "two"
sources = ["pkg/*.py"]

[commands]
test = "python -m unittest"
bench = "python bench.py"

[fitness]
metric = "seconds"
direction = "minimize"
"""


def test_each_plan_at_one_line_gets_its_own_rewrite() -> None:
    tree = {"pkg/mod.py": SOURCE, "genome.toml": MANIFEST}
    manifest = parse_manifest(MANIFEST)
    mutator = by_name("local_alias")
    found = [o for o in analyze(tree, manifest, mutators=[mutator]) if o.function == "collect"]
    assert len(found) == 2 and found[0].line == found[1].line, found
    assert found[0].detail != found[1].detail
    assert found[0].detail != found[0].evidence  # the prose is not the site's detail
    plans = [Plan(o, mutator.name, 1.0, "test") for o in found]
    generator = Generator.start()
    try:
        made = generator.ask(Generate(version_id(tree), tree, plans), timeout=60)
        assert isinstance(made, Generated)
    finally:
        generator.stop()
    assert not made.failures, made.failures
    assert len(made.candidates) == 2, [c.description for c in made.candidates]
    patches = [c.patch for c in made.candidates]
    assert any("out.append" in p and "_append" in p for p in patches), patches
    assert any("fmt.render" in p and "_render" in p for p in patches), patches
    assert pykka.ActorRegistry.get_all() == []
