"""The planner's prediction is kept with each candidate, so calibration reads it back from the log.

The calibration weighs what a rewrite measured against what the static model predicted
for its site (evolution/calibration.py).  A running node knew the prediction from its
plans; a node rebuilding its memory from the log (a restart, a new leader) could only
read it there.  Both must calibrate alike.
"""

from __future__ import annotations

from pathlib import Path

import pykka

from actors.verdicts import verdicts
from evolution.calibration import observations
from evolution.compose import COMPOSED
from evolution.generate import Candidate
from evolution.policy import Decision, Evidence
from evolution.stats import exact
from node import Node, NodeConfig
from runtime.incubation import IncubationReport

TINY = Path(__file__).parent / "data" / "tiny"


def test_a_restarted_node_calibrates_from_the_recorded_predictions(tmp_path: Path) -> None:
    config = NodeConfig(
        "n1", f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "work",
        incubators=2, candidates_per_cycle=2,
    )  # fmt: skip
    with Node(config) as node:
        name, _ = node.register(TINY)
        running = node.coordinator(name)
        running.run(1, seed=3)
        rows = [e.data for e in node.store.log(genome=name) if e.type == "CandidateEvaluated"]
        rebuilt = node.coordinator(name)  # from the log alone
    assert pykka.ActorRegistry.get_all() == []
    planned = [r for r in rows if r["mutator"] != COMPOSED]  # a composition has no plan
    assert planned and all(isinstance(r.get("expected_gain"), float) for r in planned), rows
    assert all(r["expected_gain"] > 1.0 for r in planned)
    assert all(r.get("expected_gain") is None for r in rows if r["mutator"] == COMPOSED)
    live = observations(running.memory.calibration)
    # every planned rewrite carries its prediction; a composition (made when both
    # candidates passed) has none to carry, live or rebuilt
    assert live and all(o.expected is not None for o in live if o.kind != COMPOSED)
    assert observations(rebuilt.memory.calibration) == live


def test_a_candidate_no_plan_predicted_records_none_and_a_hold_names_its_rules() -> None:
    tree = {"p.py": "x = 1\n"}
    made = Candidate("c1", "v0", "--- a/p.py\n+++ b/p.py\n", "llm:m", "rewrite", "p.py", "f", 1, "")
    report = IncubationReport("c1", True, None, "ok", (10.0,), (5.0,), measure="instructions")
    evidence = Evidence(True, exact(10.0, 5.0, direction="minimize"), 3, ("p.py",), (), ())
    held = Decision("hold", ("written by a model …", "gain …"), ("approval_on_model",))
    records, adoption, holds = verdicts([made], [report], [(held, evidence)], "v0", tree)
    assert records[0].expected_gain is None and records[0].figures == {}
    assert adoption is None and holds[0].evidence["held_by"] == ["approval_on_model"]
