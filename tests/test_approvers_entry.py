"""Who approves, recorded in the ledger (issue 12's gap; docs/approval.md, "Approvers in the
ledger").

Nodes started with different ``approval`` sections in their cluster.yml judge an approval
differently and their chains part; an admin-signed ``approvers`` entry, once committed, is
what every node judges with.  First the state machine alone (refused authors, a replay,
the snapshot blob), then a real three-node swarm whose nodes read three different
cluster.yml files, set through `tars approve --set-approvers`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from swarmkit import COMPACTION, propose_retrying, signer, started, wait
from test_approval import (
    ADMIN,
    ALICE,
    BOB,
    MALLORY,
    MANIFEST_TEXT,
    NODE,
    ONE,
    TREE,
    V0,
    Ledger,
    approval_cluster,
    approval_entry,
    heads,
    held_candidate,
    hold_two,
    same_index,
)
from typer.testing import CliRunner

from consensus import ledger as L
from consensus.approvals import ApproverList, Approvers, approvers_entry
from consensus.blob import approvers_of, encode_blob
from consensus.entries import encode
from events.lineage_state import approvals_of
from evolution.errors import ConfigError, ConsensusError, PolicyError
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import load_cluster
from runtime.keys import encode_sign_key

#: alice and mallory, quorum 2: none of cluster.yml's (admin, alice, bob; quorum 2) but alice
TEXT_KEYS = {s.name: encode_sign_key(s.public) for s in (ALICE, MALLORY)}


def log() -> list[bytes]:
    """A register, a cycle holding c1 and c2, two forged approvers entries (a member's and
    an approver's), the admin's (alice and mallory, quorum 2), then bob's, alice's and
    mallory's approvals of c1."""
    held = [held_candidate("c1", TREE, ONE), held_candidate("c2", TREE, ONE)]
    forged = [encode(ApproverList(TEXT_KEYS, 1, who.name, 1002.0), who) for who in (NODE, ALICE)]
    return [
        L.register_entry("tiny", MANIFEST_TEXT, TREE, 1.0, "node-1", 1000.0, signer=NODE),
        L.cycle_entry("tiny", "node-1", 1, 3, [], held, None, 1001.0, signer=NODE),
        *forged,
        approvers_entry(TEXT_KEYS, 2, 1003.0, signer=ADMIN),
        *(approval_entry("tiny", "c1", "approve", s.name, "", 1004.0, signer=s)
          for s in (BOB, ALICE, MALLORY)),
    ]  # fmt: skip


def test_the_admins_approvers_entry_replaces_cluster_yml_and_a_members_is_refused(
    tmp_path: Path,
) -> None:
    entries = log()
    node = Ledger(tmp_path / "a.db")
    try:
        for data in entries[:4]:
            node.apply(data)
        # a member's, or an approver's, signature never changes who approves
        assert node.state.refused_signatures == 2
        assert node.state.approval.quorum == 2
        assert sorted(node.state.approval.keys) == ["admin", "alice", "bob"]
        node.apply(entries[4])  # the admin's
        assert node.state.approval == Approvers(
            {"alice": ALICE.public, "mallory": MALLORY.public}, 2
        )
        node.apply(entries[5])  # bob is no approver any more, whatever cluster.yml says
        assert node.state.refused_signatures == 3
        node.apply(entries[6])
        assert node.head == V0  # alice alone is one of two
        node.apply(entries[7])
        assert node.head == version_id(ONE)
        blob = node.state.snapshot_state(node.index)
        chain = node.store.chain("tiny")
    finally:
        node.store.close()
    # the same store restarted: the log re-delivered, the approvers rebuilt from it
    again = Ledger(tmp_path / "a.db")
    try:
        assert sorted(again.state.approval.keys) == ["admin", "alice", "bob"]  # cluster.yml's
        again.state.apply_batch(list(enumerate(entries, 1)))
        assert sorted(again.state.approval.keys) == ["alice", "mallory"]
        assert again.store.chain("tiny") == chain
    finally:
        again.store.close()
    # a node restored from the snapshot judges with the entry's approvers, not its own
    restored, old = Ledger(tmp_path / "b.db"), Ledger(tmp_path / "c.db")
    try:
        restored.state.restore(len(entries), blob)
        assert restored.state.approval == Approvers(
            {"alice": ALICE.public, "mallory": MALLORY.public}, 2
        )
        assert "bob" not in restored.state.approvers and "mallory" in restored.state.approvers
        assert (
            approvers_of(1, restored.state.snapshot_state(len(entries))) == restored.state.approval
        )
        # an old blob (no approvers in it) leaves cluster.yml's, and writes none
        old.state.restore(3, encode_blob(["node-1"], {}, 0, {}))
        assert sorted(old.state.approval.keys) == ["admin", "alice", "bob"]
        assert approvers_of(3, old.state.snapshot_state(3)) is None
    finally:
        restored.store.close()
        old.store.close()


def test_a_blob_with_bad_approvers_is_malformed() -> None:
    good = Approvers({"alice": ALICE.public}, 1)
    blob = encode_blob([], {}, 0, {}, approval=good)
    assert approvers_of(1, blob) == good
    for bad in ({"keys": {}, "quorum": 1}, {"keys": {"a": "x"}, "quorum": 1},
                {"keys": TEXT_KEYS, "quorum": 3}, {"keys": TEXT_KEYS, "quorum": "2"}):  # fmt: skip
        data = msgpack.packb({"members": [], "approvers": bad}, use_bin_type=True)
        with pytest.raises(ConsensusError, match="snapshot state at ledger index 1 is malformed"):
            approvers_of(1, data)


# ---- a real swarm whose nodes read different cluster.yml --------------------------------


@contextlib.contextmanager
def differing_swarm(paths: list[Path]) -> Iterator[list[SwarmNode]]:
    """node-i started from ``paths[i]``, stopped at the end."""
    nodes = [
        SwarmNode(load_cluster(path), f"node-{i}", evolve=False) for i, path in enumerate(paths, 1)
    ]
    with started(nodes):
        yield nodes


def test_nodes_with_different_approvers_judge_alike_after_the_entry(tmp_path: Path) -> None:
    from cli.approvals import decide, set_approvers
    from cli.main import app
    from runtime.launcher import admin_request

    path, config = approval_cluster(tmp_path)
    # compaction after a dozen entries: the restart below stands on each node's snapshot
    config = config.with_nodes(compaction=COMPACTION).dump(path)
    text = path.read_text(encoding="utf-8")
    paths = [path]
    for quorum in (1, 3):  # node-2 would adopt at one approval, node-3 at three
        other = tmp_path / f"cluster-q{quorum}.yml"
        other.write_text(text.replace("quorum: 2", f"quorum: {quorum}", 1), encoding="utf-8")
        paths.append(other)
    assert [load_cluster(p).quorum for p in paths] == [2, 1, 3]
    alice, bob = (encode_sign_key(config.sign_key(n)) for n in ("alice", "bob"))
    with differing_swarm(paths) as nodes:
        hold_two(nodes)
        assert [n.status()["approval"]["quorum"] for n in nodes] == [2, 1, 3]
        # a member's approvers entry: refused by the admin op, and on every node if committed
        member = encode(ApproverList({"alice": alice}, 1, "node-2", time.time()),
                        signer(config, "node-2"))  # fmt: skip
        reply = admin_request(config, "node-1", {"op": "approvers", "entry": member}, timeout=15)
        assert not reply["ok"] and "the admin's, not node-2's" in reply["error"], reply
        refused = [n.state.refused_signatures for n in nodes]
        propose_retrying(nodes[1], member)
        wait(lambda: same_index(nodes), 30, "every node applied the member's entry")
        assert [n.state.refused_signatures for n in nodes] == [r + 1 for r in refused]
        assert [n.status()["approval"]["quorum"] for n in nodes] == [2, 1, 3]
        # what is no approvers entry is refused at the door, with a hint
        vote = L.vote_entry(
            "tiny", "p", V0, "node-1", True, "", 1.0, signer=signer(config, "node-1")
        )
        for junk in ({"keys": "x", "quorum": 1}, {"keys": {"alice": alice}, "quorum": 2},
                     {"keys": {"alice": 7}, "quorum": 1}, {"entry": 123}, {"entry": vote},
                     {"keys": {"node-3": alice}, "quorum": 1}):  # fmt: skip
            reply = admin_request(config, "node-3", {"op": "approvers", **junk}, timeout=15)
            assert reply["ok"] is False and reply["error"] and reply["hint"], (junk, reply)
        with pytest.raises(ConfigError, match="a node can never be an approver"):
            set_approvers(path, ["alice", "node-2"], 1)
        with pytest.raises(ConfigError, match="not listed under approval.approvers"):
            set_approvers(path, ["mallory"], 1)
        assert [n.status()["approval"]["quorum"] for n in nodes] == [2, 1, 3]
        # the admin's, through the CLI: alice and bob, quorum 2, on every node
        done = CliRunner().invoke(app, ["approve", "--config", str(paths[1]),
                                        "--set-approvers", "alice,bob", "--quorum", "2"])  # fmt: skip
        assert done.exit_code == 0, done.output
        assert "approvers alice, bob, quorum 2" in done.output
        wanted = {"quorum": 2, "approvers": ["alice", "bob"]}
        wait(lambda: all(n.status()["approval"] == wanted for n in nodes), 30, "approvers set")
        with pytest.raises(PolicyError, match="admin is not an approver"):
            decide(path, "tiny", "c1", "approve", "admin")
        answer = decide(path, "tiny", "c1", "approve", "alice")
        assert not answer["adopted"]  # node-2's cluster.yml (quorum 1) no longer counts
        wait(lambda: same_index(nodes), 30, "every node applied alice's approval")
        assert heads(nodes) == {V0}
        answer = decide(path, "tiny", "c1", "approve", "bob")
        assert answer["adopted"]
        wait(lambda: heads(nodes) == {version_id(ONE)} and same_index(nodes), 60, "adopted")
        assert all(
            approvals_of(n.store.load("tiny"))["c1"] == {"alice": "approve", "bob": "approve"}
            for n in nodes
        )
        set_at = max(n.applier.applied for n in nodes)  # the approvers entry is before it
        for cycle in range(2, 20):  # entries enough for every node to compact its log
            propose_retrying(nodes[0], L.cycle_entry("tiny", "node-1", cycle, 3, [], [], None, 2.0))
        wait(lambda: all(n.status()["log"]["snapshot_index"] > set_at for n in nodes), 60, "cut")
        wait(lambda: same_index(nodes), 30, "every node applied the cycles")
        chain = {n.store.chain("tiny") for n in nodes}
        assert len(chain) == 1
    # restarted, each from its own cluster.yml and standing on its own snapshot (the
    # approvers entry compacted away): the snapshot's blob carries the entry's approvers
    with differing_swarm(paths) as nodes:
        wait(lambda: all(n.applier.applied >= 1 for n in nodes) and same_index(nodes), 60, "up")
        assert all(n.status()["log"]["log_start"] > set_at for n in nodes)
        assert all(n.status()["approval"] == wanted for n in nodes)
        assert {n.store.chain("tiny") for n in nodes} == chain
        assert decide(path, "tiny", "c2", "reject", "bob")["rejected"]  # bob still approves


def test_set_approvers_needs_the_swarm() -> None:
    from cli.main import app

    done = CliRunner().invoke(app, ["approve", "--set-approvers", "alice", "--quorum", "1"])
    assert done.exit_code != 0 and "--config" in done.output
