"""Approval the swarm honours (issue 12, item 2; docs/approval.md).

A held candidate (a ``cycle`` entry's ``held``) is adopted on every node only once a
quorum of distinct approvers committed signed ``approval`` entries; one rejection is
final; a key that is no approver's, a forged signature, a replayed approver, an unknown or
decided candidate are refused, and the head does not move.  First the state machine alone
(one SQLite store, every entry signed as a swarm node signs), then a real three-node swarm
in this process, its admin channel, the client library and `tars approve`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from swarmkit import TINY, propose_retrying, signer, started, wait
from typer.testing import CliRunner

from consensus import ledger as L
from consensus.approvals import Approvers, approval_entry
from consensus.signing import Signer
from events.lineage_state import approvals_of, rejected_of
from events.records import Held
from events.store import GenomeStore
from evolution.errors import ConfigError, PolicyError
from evolution.patch import make_patch
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import ClusterConfig, load_cluster
from runtime.genome_files import load_genome

MANIFEST, TREE = load_genome(TINY)
V0 = version_id(TREE)


def child(old: str, new: str, tree: dict[str, str] = TREE) -> dict[str, str]:
    made = dict(tree)
    made["tiny/core.py"] = made["tiny/core.py"].replace(old, new, 1)
    assert made != tree
    return made


def held_candidate(name: str, parent: dict[str, str], tree: dict[str, str]) -> Held:
    return Held(
        candidate=name,
        parent=version_id(parent),
        patch=make_patch(parent, tree),
        mutator="llm:test",
        kind="test",
        reasons=["written by a model (llm:test): model-written changes wait for a human"],
        evidence={"ratio": 1.4, "low": 1.3, "high": 1.5, "tests_passed": True,
                  "held_by": ["approval_on_model"]},
    )  # fmt: skip


ONE = child('"the",', '"the", ')
TWO = child('"of",', '"of", ')
THREE = child('"and",', '"and", ')

# ---- the state machine alone ------------------------------------------------------------

NODE, ADMIN = Signer("node-1", bytes(range(32))), Signer("admin", bytes(range(1, 33)))
ALICE, BOB = Signer("alice", bytes(range(2, 34))), Signer("bob", bytes(range(3, 35)))
MALLORY = Signer("mallory", bytes(range(4, 36)))


class Ledger:
    """One node's ledger state over a SQLite store, entries applied at the next index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = GenomeStore.open(f"sqlite:///{path}")
        approvers = {s.name: s.public for s in (ADMIN, ALICE, BOB)}
        self.state = L.LedgerState(
            self.store,
            ["node-1"],
            keys={"node-1": NODE.public, "admin": ADMIN.public},
            approval=Approvers(approvers, 2),
        )
        self.index = self.state.applied_index

    def apply(self, data: bytes) -> L.Applied:
        self.index += 1
        return self.state.apply(self.index, data)

    def decide(
        self, who: Signer, candidate: str, decision: str = "approve", name: str = ""
    ) -> L.Applied:
        entry = approval_entry(
            "tiny", candidate, decision, name or who.name, "looked", 2000.0, signer=who
        )
        return self.apply(entry)  # fmt: skip

    @property
    def head(self) -> str:
        return self.store.head("tiny").version


@pytest.fixture
def ledger(tmp_path: Path) -> Any:
    made = Ledger(tmp_path / "store.db")
    made.apply(L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, "node-1", 1000.0, signer=NODE))
    cycle = L.cycle_entry(
        "tiny", "node-1", 1, 3, [], [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)], None, 1001.0,
        signer=NODE,
    )  # fmt: skip
    made.apply(cycle)
    try:
        yield made
    finally:
        made.store.close()


MANIFEST_TEXT = TREE["genome.toml"]


def test_a_quorum_of_two_adopts_on_the_second_approval_and_names_both(ledger: Ledger) -> None:
    assert ledger.decide(ALICE, "c1").written
    assert ledger.head == V0  # one approval of two: held still
    assert approvals_of(ledger.store.load("tiny")) == {"c1": {"alice": "approve"}}
    applied = ledger.decide(BOB, "c1")
    assert applied.written and applied.decided == {"approval:c1": "adopt"}
    assert ledger.head == version_id(ONE)
    log = [(e.type, e.node) for e in ledger.store.log(genome="tiny")][-4:]
    assert log == [
        ("ApprovalGiven", "alice"),
        ("ApprovalGiven", "bob"),
        ("Approved", "bob"),
        ("VersionAdopted", "bob"),
    ]
    adopted = ledger.store.at_version("tiny", version_id(ONE))
    assert adopted[0] == ONE
    (row,) = [e for e in ledger.store.log(genome="tiny") if e.type == "VersionAdopted"]
    assert row.data["evidence"]["approved_by"] == ["alice", "bob"]
    # `tars log ls` says who decided what, and who approved the adoption
    from cli.main import app

    listed = CliRunner().invoke(app, ["log", "ls", "--store", str(ledger.path)])
    assert listed.exit_code == 0, listed.output
    assert "alice approve: looked" in listed.output
    assert "approved by alice, bob" in listed.output
    # the candidate is decided: a third approver's late approval is refused
    before = ledger.state.rejected_entries
    assert not ledger.decide(ADMIN, "c1").written
    assert ledger.state.rejected_entries == before + 1


def test_refused_approvals_never_move_the_head(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    refused = ledger.state.refused_signatures
    assert not ledger.decide(MALLORY, "c1").written  # not an approver
    forged = Signer("alice", bytes(range(4, 36)))  # mallory's secret
    assert not ledger.decide(forged, "c1").written  # alice's name, another key
    assert not ledger.decide(NODE, "c1").written  # a member's key is no person's
    assert ledger.state.refused_signatures == refused + 3
    assert ledger.decide(ALICE, "c1").written
    assert not ledger.decide(ALICE, "c1").written  # the same approver again
    assert not ledger.decide(BOB, "nope").written  # an unknown candidate
    assert ledger.head == V0
    assert approvals_of(ledger.store.load("tiny")) == {"c1": {"alice": "approve"}}
    text = caplog.text
    assert "mallory is not an approver" in text
    assert "its signature is not alice's" in text
    assert "alice already decided on candidate c1" in text
    assert "no held candidate nope" in text


def test_one_rejection_is_final(ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    assert ledger.decide(ALICE, "c2").written
    assert ledger.decide(BOB, "c2", "reject").written
    lineage = ledger.store.load("tiny")
    assert "c2" not in lineage.pending and "c2" in rejected_of(lineage)
    assert not ledger.decide(ADMIN, "c2").written  # a later approval is refused
    assert "was rejected by bob: a rejection is final" in caplog.text
    assert ledger.head == V0


def test_a_held_candidate_of_an_older_head_cannot_be_approved(ledger: Ledger) -> None:
    ledger.decide(ALICE, "c1")
    ledger.decide(BOB, "c1")
    assert ledger.head == version_id(ONE)
    assert not ledger.decide(ALICE, "c2").written  # held against V0, the head moved on
    assert ledger.decide(ALICE, "c2", "reject").written  # a rejection still clears it


def test_decisions_stand_after_a_replay_of_the_log(tmp_path: Path) -> None:
    first = Ledger(tmp_path / "a.db")
    entries = [
        L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, "node-1", 1000.0, signer=NODE),
        L.cycle_entry("tiny", "node-1", 1, 3, [], [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)],
                      None, 1001.0, signer=NODE),
        approval_entry("tiny", "c2", "reject", "bob", "no", 1002.0, signer=BOB),
        approval_entry("tiny", "c1", "approve", "alice", "", 1003.0, signer=ALICE),
        approval_entry("tiny", "c1", "approve", "alice", "", 1004.0, signer=ALICE),
        approval_entry("tiny", "c1", "approve", "bob", "", 1005.0, signer=BOB),
        approval_entry("tiny", "c2", "approve", "alice", "", 1006.0, signer=ALICE),
    ]  # fmt: skip
    for data in entries:
        first.apply(data)
    chain = first.store.chain("tiny")
    first.store.close()
    # the same log on a fresh node, and re-delivered to the first after a restart
    fresh, again = Ledger(tmp_path / "b.db"), Ledger(tmp_path / "a.db")
    try:
        fresh.state.apply_batch(list(enumerate(entries, 1)))
        again.state.apply_batch(list(enumerate(entries, 1)))
        for node in (fresh, again):
            assert node.head == version_id(ONE)
            assert node.store.chain("tiny") == chain
            lineage = node.store.load("tiny")
            assert approvals_of(lineage) == {
                "c1": {"alice": "approve", "bob": "approve"},
                "c2": {"bob": "reject"},
            }
            assert list(rejected_of(lineage)) == ["c2"]
    finally:
        fresh.store.close()
        again.store.close()


# ---- cluster.yml: approvers and their keys ----------------------------------------------


def with_approvers(path: Path, quorum: int = 2) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text + f"approval:\n  quorum: {quorum}   # two people\n  approvers: [admin, alice, bob]\n",
        encoding="utf-8",
    )


def test_tars_keys_makes_an_approvers_keys_and_records_them(tmp_path: Path) -> None:
    from cli.demo import write_cluster
    from cli.main import app

    path = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    with_approvers(path)
    runner = CliRunner()
    for name in ("alice", "bob"):
        done = runner.invoke(app, ["keys", "--config", str(path), "--id", name])
        assert done.exit_code == 0, done.output
    config = load_cluster(path)
    assert sorted(config.model.approval.keys) == ["alice", "bob"]
    assert "# two people" in path.read_text(encoding="utf-8")  # the user's comment is kept
    assert config.sign_key("alice") == Signer("alice", config.sign_secret("alice")).public
    stranger = runner.invoke(app, ["keys", "--config", str(path), "--id", "carol"])
    assert stranger.exit_code != 0 and "approval.approvers" in stranger.output
    other = write_cluster(tmp_path / "other", 1, TINY, 1, 1, 3, 1)
    other.write_text(other.read_text() + "approval: {approvers: [admin, node-1]}\n")
    with pytest.raises(ConfigError, match="is a node"):
        load_cluster(other)


# ---- a real three-node swarm in this process --------------------------------------------


@contextlib.contextmanager
def approving_swarm(path: Path) -> Iterator[list[SwarmNode]]:
    """Three started nodes (no evolution) of the cluster.yml at ``path``, stopped at the end."""
    config = load_cluster(path)
    with started([SwarmNode(config, node_id, evolve=False) for node_id in config.ids]) as nodes:
        yield nodes


def approval_cluster(folder: Path, policy: str = "") -> tuple[Path, ClusterConfig]:
    """A three-node cluster.yml with approvers admin, alice and bob (quorum 2), every key
    made; ``policy`` is an ``evolution: policy:`` line's value for the governor's rules."""
    from cli.demo import write_cluster

    path = write_cluster(folder, 3, TINY, 1, 1, 3, 1)
    with_approvers(path)
    if policy:
        text = path.read_text(encoding="utf-8")
        path.write_text(text.replace("evolution:\n", f"evolution:\n  policy: {policy}\n"))
    config = load_cluster(path)
    config.ensure_keys([*config.ids, "admin", "alice", "bob"])
    return path, config


def hold_two(nodes: list[SwarmNode]) -> None:
    """Register tiny and commit a cycle that holds c1 and c2, applied on every node."""
    first = nodes[0]
    first.propose(L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, first.id, time.time()))
    waiting = [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)]
    propose_retrying(first, L.cycle_entry("tiny", first.id, 1, 3, [], waiting, None, time.time()))
    wait(lambda: all("c2" in n.store.head("tiny").pending for n in nodes), 60, "held everywhere")


def heads(nodes: list[SwarmNode]) -> set[str]:
    return {node.store.head("tiny").version for node in nodes}


def same_index(nodes: list[SwarmNode]) -> bool:
    return len({node.applier.applied for node in nodes}) == 1


def test_a_swarm_adopts_a_held_candidate_only_at_the_quorum_and_keeps_decisions(
    tmp_path: Path,
) -> None:
    from cli.approvals import decide, held
    from cli.main import app
    from runtime.launcher import admin_request

    # the governor's hold rules for every genome
    path, config = approval_cluster(tmp_path, "{approval_above: 3.0}")
    assert config.evolution.policy is not None and config.evolution.policy.approval_above == 3.0
    with approving_swarm(path) as nodes:
        hold_two(nodes)
        assert all(n.status()["heads"]["tiny"]["held"] == 2 for n in nodes)
        wanted = {"quorum": 2, "approvers": ["admin", "alice", "bob"]}
        assert all(n.status()["approval"] == wanted for n in nodes)
        # the leader's governor would judge with cluster.yml's rules
        assert nodes[0].evolver._coordinator("tiny").policy.approval_above == 3.0
        # what waits, with its diff and evidence
        listed = CliRunner().invoke(app, ["approve", "--config", str(path), "--list"])
        assert listed.exit_code == 0, listed.output
        assert "c1" in listed.output and '+    "the", ' in listed.output
        assert "approval_on_model" in listed.output and "0 of 2 approvals" in listed.output
        assert "ratio 1.400×" in listed.output

        answer = decide(path, "tiny", "c1", "approve", "alice", "read the diff")
        assert answer["approvals"] == ["alice"] and not answer["adopted"]
        # refused before proposing: a member's key, a forged signature, a replay, a stranger
        member = approval_entry("tiny", "c1", "approve", "node-1", "", time.time(),
                                signer=signer(config, "node-1"))  # fmt: skip
        forged = approval_entry("tiny", "c1", "approve", "bob", "", time.time(),
                                signer=signer(config, "alice", as_name="bob"))  # fmt: skip
        for bad, why in ((member, "node-1 is not an approver"), (forged, "not bob's")):
            reply = admin_request(config, "node-2", {"op": "decide", "entry": bad}, timeout=15)
            assert not reply["ok"] and why in reply["error"] and reply["hint"]
        # the fields and a signature made elsewhere (a client that signs the bytes itself)
        fields = {"genome": "tiny", "candidate": "nope", "decision": "approve",
                  "approver": "alice", "reason": "", "at": time.time()}  # fmt: skip
        unsigned = approval_entry(**fields)
        sig = signer(config, "alice").sign(unsigned)
        reply = admin_request(config, "node-3", {"op": "decide", "entry": {**fields, "sig": sig}})
        assert not reply["ok"] and "no held candidate nope" in reply["error"], reply
        reply = admin_request(config, "node-3", {"op": "decide", "entry": {**fields, "sig": b"x"}})
        assert not reply["ok"] and "64 bytes" in reply["error"], reply
        vote = L.vote_entry(
            "tiny", "p", V0, "node-1", True, "", 1.0, signer=signer(config, "node-1")
        )
        for junk in (123, b"\x00" * 80, vote, {"genome": 1}, {**fields, "sig": "text"}, None):
            reply = admin_request(config, "node-2", {"op": "decide", "entry": junk})
            assert reply["ok"] is False and reply["error"] and reply["hint"], (junk, reply)
        reply = admin_request(config, "node-2", {"op": "held", "genome": "nope"})
        assert reply["ok"] is False and "nope" in reply["error"] and reply["hint"]
        with pytest.raises(PolicyError, match="alice already decided"):
            decide(path, "tiny", "c1", "approve", "alice")
        with pytest.raises(ConfigError, match="not an approver"):
            decide(path, "tiny", "c1", "approve", "mallory")
        # the same, committed anyway (a node that skipped its check): refused when applied
        for bad in (member, forged):
            propose_retrying(nodes[1], bad)
        wait(lambda: same_index(nodes), 30, "every node applied the refused entries")
        assert heads(nodes) == {V0}
        assert all(
            approvals_of(n.store.load("tiny")) == {"c1": {"alice": "approve"}} for n in nodes
        )

        cli = ["approve", "--config", str(path), "--genome", "tiny"]
        done = CliRunner().invoke(app, [*cli, "--candidate", "c1", "--as", "bob"])
        assert done.exit_code == 0, done.output
        assert f"adopted on every node: head is now {version_id(ONE)[:12]}" in done.output
        wait(lambda: heads(nodes) == {version_id(ONE)}, 60, "adopted on every node")
        # a rejection is final
        done = CliRunner().invoke(app, [*cli, "--candidate", "c2", "--reject", "--reason", "risky"])
        assert done.exit_code == 0 and "rejected (final)" in done.output, done.output
        with pytest.raises(PolicyError, match="a rejection is final"):
            decide(config, "tiny", "c2", "approve", "alice")
        wait(lambda: same_index(nodes), 30, "every node applied the rejection")
        chain = {n.store.chain("tiny") for n in nodes}
        assert len(chain) == 1
    # after a restart (the log replayed) the decisions stand
    with approving_swarm(path) as nodes:
        wait(
            lambda: all(n.applier.applied >= 1 for n in nodes) and same_index(nodes), 60, "replayed"
        )
        assert heads(nodes) == {version_id(ONE)}
        assert {n.store.chain("tiny") for n in nodes} == chain
        items = {item["candidate"]: item for item in held(path, "tiny")}
        assert items["c2"]["rejected"] and items["c2"]["rejected_by"] == ["admin"]
        assert "c1" not in items
        with pytest.raises(PolicyError, match="a rejection is final"):
            decide(path, "tiny", "c2", "approve", "bob")


def test_decisions_survive_a_store_snapshot(tmp_path: Path) -> None:
    """A lineage snapshotted after its approvals (every 100 events) loads them back."""
    from events.application import SNAPSHOT_INTERVAL

    node = Ledger(tmp_path / "store.db")
    node.apply(L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, "node-1", 1000.0, signer=NODE))
    held = [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)]
    node.apply(L.cycle_entry("tiny", "node-1", 1, 3, [], held, None, 1001.0, signer=NODE))
    node.decide(ALICE, "c1")
    node.decide(BOB, "c2", "reject")
    for cycle in range(2, SNAPSHOT_INTERVAL + 3):  # one CycleCompleted each
        node.apply(L.cycle_entry("tiny", "node-1", cycle, 3, [], [], None, 1002.0, signer=NODE))
    node.store.close()
    again = GenomeStore.open(f"sqlite:///{tmp_path / 'store.db'}", create=False)
    try:
        lineage = again.load("tiny")
        assert lineage.version > SNAPSHOT_INTERVAL
        assert approvals_of(lineage) == {"c1": {"alice": "approve"}, "c2": {"bob": "reject"}}
        assert list(rejected_of(lineage)) == ["c2"] and list(lineage.pending) == ["c1"]
    finally:
        again.close()


def test_a_single_nodes_store_lists_and_approves_its_held_candidates(tmp_path: Path) -> None:
    """No swarm: `tars approve --store` lists what waits and adopts at once (no quorum)."""
    from cli.main import app

    path = tmp_path / "single.db"
    with GenomeStore.open(f"sqlite:///{path}") as store:
        store.register("tiny", MANIFEST_TEXT, TREE, 1.0, "solo")
        store.record_cycle("tiny", "solo", held=[held_candidate("c1", TREE, ONE)], cycle=1)
    runner = CliRunner()
    listed = runner.invoke(app, ["approve", "--store", str(path), "--list"])
    assert listed.exit_code == 0, listed.output
    assert "c1" in listed.output and '+    "the", ' in listed.output
    refused = runner.invoke(app, ["approve", "--store", str(path), "-g", "tiny", "--candidate",
                                  "c1", "--reject"])  # fmt: skip
    assert refused.exit_code != 0 and "--config" in refused.output
    done = runner.invoke(app, ["approve", "--store", str(path), "-g", "tiny", "--candidate", "c1"])
    assert done.exit_code == 0, done.output
    with GenomeStore.open(f"sqlite:///{path}", create=False) as store:
        assert store.head("tiny").version == version_id(ONE)
        (adopted,) = [e for e in store.log(genome="tiny") if e.type == "VersionAdopted"]
        assert adopted.data["evidence"]["approved_by"] == ["admin"]


def test_a_peers_state_transfer_carries_the_decisions(tmp_path: Path) -> None:
    """A node behind a compacted log imports a peer's events: approvals and all."""
    node = Ledger(tmp_path / "peer.db")
    node.apply(L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, "node-1", 1000.0, signer=NODE))
    held = [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)]
    node.apply(L.cycle_entry("tiny", "node-1", 1, 3, [], held, None, 1001.0, signer=NODE))
    node.decide(BOB, "c2", "reject")
    node.decide(ALICE, "c1")
    node.decide(BOB, "c1")
    (lineage,) = node.store.positions().items()
    events = [(lineage[0], *e) for e in node.store.export_events(lineage[0], 0, lineage[1])]
    behind = GenomeStore.open(f"sqlite:///{tmp_path / 'behind.db'}")
    try:
        assert behind.import_events(events, (L.LEDGER, node.index)) == len(events)
        moved = behind.load("tiny")
        assert moved.head == version_id(ONE) and behind.chain("tiny") == node.store.chain("tiny")
        assert approvals_of(moved) == approvals_of(node.store.load("tiny"))
        assert list(rejected_of(moved)) == ["c2"]
    finally:
        behind.close()
        node.store.close()


def test_held_again_a_rejected_candidate_stays_rejected_and_an_adopted_one_counts_anew(
    ledger: Ledger,
) -> None:
    ledger.decide(ADMIN, "c2", "reject")
    ledger.decide(ALICE, "c1")
    ledger.decide(BOB, "c1")
    assert ledger.head == version_id(ONE)
    # the head goes back; the next cycle holds both candidates again (same ids: same patches)
    ledger.apply(L.rollback_entry("tiny", V0, "regression", "admin", 1003.0, signer=ADMIN))
    again = [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, TWO)]
    ledger.apply(L.cycle_entry("tiny", "node-1", 2, 3, [], again, None, 1004.0, signer=NODE))
    lineage = ledger.store.load("tiny")
    assert list(lineage.pending) == ["c1"] and list(rejected_of(lineage)) == ["c2"]
    assert approvals_of(lineage) == {"c2": {"admin": "reject"}}  # c1's count starts again
    assert not ledger.decide(ALICE, "c2").written
    assert ledger.decide(ALICE, "c1").written and ledger.head == V0  # one of two again
    assert ledger.decide(BOB, "c1").written and ledger.head == version_id(ONE)


# ---- the manifest's [policy]: when a winner waits for a person --------------------------


def test_the_manifests_policy_sets_the_hold_rules_and_a_gain_too_good_waits() -> None:
    from evolution.errors import ManifestError
    from evolution.manifest import parse_manifest
    from evolution.policy import Evidence, Policy, decide
    from evolution.stats import Comparison

    text = MANIFEST_TEXT + "\n[policy]\nmax_patch_lines = 3\napproval_above = 1.5\n"
    manifest = parse_manifest(text)
    policy = Policy().demanding(manifest.fitness, manifest.policy)
    assert (policy.max_patch_lines, policy.approval_above) == (3, 1.5)
    assert policy.approval_on_model and policy.approval_on_new_imports  # the defaults stay
    # cluster.yml's rules (evolution.policy) first, the genome's [policy] over them
    from evolution.manifest import HoldRules

    swarm = Policy().with_rules(HoldRules(max_patch_lines=10, approval_on_model=False))
    both = swarm.demanding(manifest.fitness, manifest.policy)
    assert (both.max_patch_lines, both.approval_on_model, both.approval_above) == (3, False, 1.5)
    assert Policy().demanding(MANIFEST.fitness, MANIFEST.policy) == Policy().demanding(
        MANIFEST.fitness
    )

    def judged(ratio: float, lines: int) -> tuple[str, tuple[str, ...]]:
        found = Comparison(
            ratio=ratio, low=ratio - 0.1, high=ratio + 0.1, rounds=5, confidence=0.95
        )
        made = Evidence(True, found, lines, ("tiny/core.py",), (), ())
        decision = decide(made, policy)
        return decision.verdict, decision.rules

    assert judged(1.3, 2) == ("adopt", ())
    assert judged(1.6, 2) == ("hold", ("approval_above",))
    assert judged(1.3, 4) == ("hold", ("max_patch_lines",))
    with pytest.raises(ManifestError, match="policy.approval_above"):
        parse_manifest(MANIFEST_TEXT + "\n[policy]\napproval_above = 0.9\n")
    with pytest.raises(ManifestError, match="policy.hold_everything"):
        parse_manifest(MANIFEST_TEXT + "\n[policy]\nhold_everything = true\n")
