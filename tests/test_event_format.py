"""The stored event format, pinned: events written before a refactor still load and verify.

``tests/data/lineage_events_v1.json`` holds one lineage of every event type as the store
exported it (``(position, topic, state)``, state in hex), written by the code before the
records and the domain events shared one field list.  Those exact bytes must import (the
import recomputes every chain and replays every event), verify, and give the same head;
and the same decisions made by today's code must give the same stored fields and the same
chains.  Regenerate the file only on purpose: ``python tests/test_event_format.py``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from events.domain import Lineage, lineage_id  # noqa: E402
from events.records import Adoption, CandidateRecord, Held  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from events.transcoder import unpackb  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402

DATA = ROOT / "tests" / "data" / "lineage_events_v1.json"
GENOME = "formatted"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TREE0 = {"pkg/core.py": "def f(x):\n    return x\n\nLIMIT = 0\n", "tests/test_core.py": "x = 1\n"}
TREE1 = {**TREE0, "pkg/core.py": "def f(x):\n    return x\n\nLIMIT = 1\n"}
TREE2 = {**TREE1, "pkg/core.py": "def f(x):\n    return x\n\nLIMIT = 2\n"}
TREE3 = {**TREE1, "pkg/extra.py": "Y = 3\n"}  # on TREE1, merges cleanly onto TREE2
MERGED = {**TREE2, "pkg/extra.py": "Y = 3\n"}


def at(step: int) -> datetime:
    return T0 + timedelta(seconds=step, microseconds=step)


def adoption(parent: dict[str, str], child: dict[str, str], **evidence: Any) -> Adoption:
    return Adoption(
        version=version_id(child),
        parent=version_id(parent),
        patch=make_patch(parent, child),
        mutator="tune",
        kind="constant",
        fitness_before=2.0,
        fitness_after=1.5,
        ratio=1.33,
        low=1.2,
        high=1.4,
        evidence={"samples": [0.5, 0.25], "nested": {"b": None, "a": [1, 2]}, **evidence},
    )


def decided() -> Lineage:
    """One lineage with every event type, decided at fixed times (pure: no store)."""
    lineage = Lineage.register(GENOME, "[genome]\n", TREE0, 2.0, "n1", timestamp=at(0))
    record = CandidateRecord(
        version_id(TREE1),
        version_id(TREE0),
        make_patch(TREE0, TREE1),
        "tune",
        "constant",
        "adopt",
        ["gain"],
        1.33,
        1.2,
        1.4,
        True,
    )
    lineage.evaluate(record, "n1", timestamp=at(1))
    held = Held(
        version_id(TREE3), version_id(TREE0), "", "llm", "rewrite", ["large diff"], {"r": 1.2}
    )
    lineage.hold(held, "n1", timestamp=at(2))
    lineage.adopt(adoption(TREE0, TREE1), "n1", timestamp=at(3))
    lineage.complete_cycle(1, version_id(TREE1), 1, 42, "n1", timestamp=at(4))
    lineage.approve(held.candidate, "cli", timestamp=at(5))
    lineage.submit("p1", adoption(TREE1, TREE2), "n2", timestamp=at(6))
    lineage.submit("p2", adoption(TREE1, TREE3), "n3", timestamp=at(7))
    lineage.vote("p1", version_id(TREE2), True, "proven", "n2", timestamp=at(8))
    lineage.adopt(lineage.proposal("p1"), "n2", timestamp=at(9))
    lineage.rebase_proposal("p2", MERGED, make_patch(TREE2, MERGED), "n3", timestamp=at(10))
    lineage.vote("p2", version_id(MERGED), False, "slower", "n1", timestamp=at(11))
    lineage.reject_proposal("p2", "voted down by n1", "n3", timestamp=at(12))
    lineage.rollback(version_id(TREE1), TREE1, 1.5, "regression", "n1", timestamp=at(13))
    return lineage


def exported(lineage: Lineage) -> list[tuple[int, str, bytes]]:
    """The lineage's events as a store holds them (stored by a memory store, exported back)."""
    with GenomeStore.open("memory://") as store:
        store.commit([lineage], ("ledger", 1))
        return store.export_events(lineage.id.hex, 0, 1000)


def load() -> list[tuple[int, str, bytes]]:
    return [(p, topic, bytes.fromhex(state)) for p, topic, state in json.loads(DATA.read_text())]


def test_golden_events_import_and_verify() -> None:
    golden = load()
    assert len(golden) == 14
    ident = lineage_id(GENOME).hex
    with GenomeStore.open("memory://") as store:
        assert store.import_events([(ident, *event) for event in golden], ("ledger", 1)) == 14
        report = store.verify()
        assert report.events == 14
        assert report.heads == {GENOME: unpackb(golden[-1][2])["chain"]}
        head = store.head(GENOME)
        assert head.version == version_id(TREE1)
        assert head.tree == TREE1
        assert (head.fitness, head.versions_count, head.cycles_completed) == (1.5, 3, 1)
        assert head.pending == {} and head.proposals == {}
        assert store.materialise(GENOME, version_id(TREE2)) == TREE2
        types = [entry.type for entry in store.log()]
    assert set(types) == {
        "Registered",
        "CandidateEvaluated",
        "ApprovalRequested",
        "VersionAdopted",
        "CycleCompleted",
        "Approved",
        "ProposalSubmitted",
        "VoteCast",
        "ProposalRebased",
        "ProposalRejected",
        "RolledBack",
    }


def test_todays_code_stores_the_same_fields_and_chains() -> None:
    golden = load()
    now = exported(decided())
    assert [(p, topic) for p, topic, _ in now] == [(p, topic) for p, topic, _ in golden]
    for (position, topic, state), (_, _, old) in zip(now, golden, strict=True):
        assert unpackb(state) == unpackb(old), f"{topic} at position {position}"
        if not topic.endswith(".ProposalSubmitted"):
            # the same bytes; ProposalSubmitted now stores the Adoption's field order
            # (version before parent), which the key-sorted chain does not see
            assert state == old, f"{topic} at position {position}"


def test_waiting_proposal_and_pending_approval_read_back() -> None:
    """``proposal()``/``held()`` give the records the events were made from."""
    lineage = Lineage.register(GENOME, "[genome]\n", TREE0, 2.0, "n1", timestamp=at(0))
    proposed = adoption(TREE0, TREE1)
    lineage.submit("p1", proposed, "n2", timestamp=at(1))
    assert lineage.proposal("p1") == Adoption(
        **{**proposed.__dict__, "evidence": {**proposed.evidence, "proposal": "p1"}}
    )
    held = Held(version_id(TREE3), version_id(TREE0), "x", "llm", "rewrite", ["big"], {"r": 1})
    lineage.hold(held, "n1", timestamp=at(2))
    assert lineage.held(held.candidate) == held
    assert lineage.pending[held.candidate] == {
        "parent": held.parent,
        "patch": "x",
        "mutator": "llm",
        "kind": "rewrite",
        "reasons": ["big"],
        "evidence": {"r": 1},
    }
    assert lineage.proposals["p1"] == {
        "parent": proposed.parent,
        "version": proposed.version,
        "patch": proposed.patch,
        "mutator": "tune",
        "kind": "constant",
        "fitness_before": 2.0,
        "fitness_after": 1.5,
        "ratio": 1.33,
        "low": 1.2,
        "high": 1.4,
        "evidence": proposed.evidence,
        "proposer": "n2",
        "votes": {},
    }


if __name__ == "__main__":
    rows = [(p, topic, state.hex()) for p, topic, state in exported(decided())]
    DATA.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {len(rows)} events to {DATA}")
