"""Signed decisions (issue 9, item 2), attacked on three real nodes in this process.

Real ZeroMQ, Raft, SQLite and sandbox (``tests/swarmkit.py``).  The attacker holds one
member's key — here the leader's, the strongest position: a leader appends entries to
its own log directly, past the door where it checks forwarded entries
(``entries.authored_by``).  Whatever it appends, an entry counts only with a valid
signature of an author allowed to write it, checked by the state machine of every node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from storekit import Backend, MemoryBackend, SQLiteBackend
from swarmkit import candidate, in_process_swarm, signer, wait
from test_ledger import BASE, MEMBERS, adoption, edit

from consensus import ledger as L
from consensus.blob import heads_of
from consensus.entries import members_entry
from consensus.ledger import cycle_entry, register_entry, rollback_entry, vote_entry
from consensus.signing import Keyring, Signer, split
from evolution.tree import version_id
from node import SwarmNode
from runtime.genome_files import load_genome
from runtime.keys import encode_sign_key, new_sign_secret

TINY = Path(__file__).parent / "data" / "tiny"
DOC = '"""How many of ``words`` are common words."""'


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[list[SwarmNode]]:
    with in_process_swarm(tmp_path, TINY) as nodes:
        yield nodes


def roles(nodes: list[SwarmNode]) -> tuple[SwarmNode, SwarmNode, SwarmNode]:
    """(leader, follower, follower), once every node knows the leader."""
    wait(lambda: all(n.engine.leader() for n in nodes), what="a leader known everywhere")
    leader = next(n for n in nodes if n.engine.leader() == n.id)
    first, second = [n for n in nodes if n is not leader]
    return leader, first, second


def register(leader: SwarmNode, nodes: list[SwarmNode]) -> dict[str, str]:
    _, tree = load_genome(TINY)
    leader.propose(register_entry("tiny", tree["genome.toml"], tree, 1.0, leader.id, time.time()))
    wait(lambda: all("tiny" in n.store.genomes() for n in nodes), what="registration")
    return tree


def append_directly(leader: SwarmNode, data: bytes, nodes: list[SwarmNode]) -> None:
    """What a lying leader does: its own log, no door; then every node has handled it."""
    index = leader.engine.propose(data, timeout=10.0)
    for node in nodes:
        node.wait_applied(index)


def signer_of(node: SwarmNode, name: str | None = None) -> Signer:
    """The attacker's own key: the node's signing key, whatever name it writes."""
    return signer(node.cluster, node.id, as_name=name)


def refused(nodes: list[SwarmNode]) -> list[int]:
    return [n.status()["counters"]["refused_signatures"] for n in nodes]


def test_forged_votes_are_refused_on_every_node_and_adopt_nothing(
    swarm: list[SwarmNode],
) -> None:
    """The leader proposes a version and appends a yes vote in a follower's name, signed
    with its own key, then unsigned, then with a signature of nobody's key: each would
    make the majority (the proposer's yes + one).  Every node refuses all three and
    counts them; only the follower's own signed vote adopts the version."""
    leader, victim, other = roles(swarm)
    for follower in (victim, other):
        follower.votes.stop()  # no honest vote: only forged ones could adopt
    tree = register(leader, swarm)
    _, win = candidate(tree, DOC, '"""Count the common words."""')
    leader.propose(cycle_entry("tiny", leader.id, 1, 3, [], [], win, time.time()))
    (pid,) = leader.store.head("tiny").proposals
    forged = [
        vote_entry("tiny", pid, win.version, victim.id, True, "f", 1.0, signer=signer_of(leader)),
        vote_entry("tiny", pid, win.version, victim.id, True, "f", 2.0),
        vote_entry(
            "tiny", pid, win.version, victim.id, True, "f", 3.0,
            signer=Signer(victim.id, new_sign_secret()),
        ),
    ]  # fmt: skip
    for data in forged:
        append_directly(leader, data, swarm)
    assert refused(swarm) == [3, 3, 3]
    for node in swarm:
        head = node.store.head("tiny")
        assert head.version == version_id(tree), f"{node.id} adopted on a forged vote"
        assert list(head.proposals[pid]["votes"]) == [leader.id]
    # the victim's own signed vote is what it takes
    victim.propose(vote_entry("tiny", pid, win.version, victim.id, True, "tests pass", 4.0))
    wait(lambda: all(n.store.head("tiny").version == win.version for n in swarm), what="adopt")
    assert refused(swarm) == [3, 3, 3]


def test_a_cycle_with_a_bad_signature_or_none_records_no_proposal(
    swarm: list[SwarmNode],
) -> None:
    """A cycle in the leader's own name whose signature was altered, and the same cycle
    unsigned: no node records the cycle or its proposal, so nothing can be voted in."""
    leader, _, _ = roles(swarm)
    tree = register(leader, swarm)
    _, win = candidate(tree, DOC, '"""Count the common words."""')
    signed = cycle_entry(
        "tiny", leader.id, 1, 3, [], [], win, time.time(), signer=signer_of(leader)
    )
    message, signature = split(signed) or (b"", b"")
    bad = signed[: -len(signature)] + bytes([signature[0] ^ 1]) + signature[1:]
    assert Keyring({leader.id: signer_of(leader).public}).verify(leader.id, bad) is not None
    for data in (bad, message):  # ``message`` is exactly the unsigned entry
        append_directly(leader, data, swarm)
    assert refused(swarm) == [2, 2, 2]
    for node in swarm:
        head = node.store.head("tiny")
        assert head.proposals == {} and head.cycles_completed == 0, node.id
    # the same cycle, signed as it was: recorded everywhere
    append_directly(leader, signed, swarm)
    assert all(n.store.head("tiny").cycles_completed == 1 for n in swarm)


def test_a_rollback_signed_by_a_member_key_is_refused(swarm: list[SwarmNode]) -> None:
    """Rollbacks are the admin's: one in the admin's name signed with a member's key,
    and one in the member's own name, are refused everywhere; the admin's goes through."""
    leader, _, _ = roles(swarm)
    tree = register(leader, swarm)
    _, win = candidate(tree, DOC, '"""Count the common words."""')
    leader.propose(cycle_entry("tiny", leader.id, 1, 3, [], [], win, time.time()))
    wait(lambda: all(n.store.head("tiny").version == win.version for n in swarm), what="adopt")
    base = version_id(tree)
    for data in (
        rollback_entry("tiny", base, "forged", "admin", 1.0, signer=signer_of(leader, "admin")),
        rollback_entry("tiny", base, "forged", leader.id, 2.0, signer=signer_of(leader)),
    ):
        append_directly(leader, data, swarm)
    assert refused(swarm) == [2, 2, 2]
    assert {n.store.head("tiny").version for n in swarm} == {win.version}
    reply = leader.admin.handle("admin", {"op": "rollback", "genome": "tiny", "to": base})
    assert reply["ok"], reply
    wait(lambda: all(n.store.head("tiny").version == base for n in swarm), what="rollback")


def test_a_node_whose_sign_key_is_missing_from_cluster_yml_refuses_to_start(
    tmp_path: Path,
) -> None:
    from cli.demo import write_cluster
    from evolution.errors import ConfigError
    from runtime.config import load_cluster

    path = write_cluster(tmp_path, 2, TINY, 1, 1, 3, 1)
    config = load_cluster(path)
    config.ensure_keys()
    text = path.read_text()
    assert text.count("sign_key:") == 3  # both nodes' and the admin's
    path.write_text("\n".join(line for line in text.splitlines() if "sign_key:" not in line))
    without = load_cluster(path)
    with pytest.raises(ConfigError, match=r"node node-1's sign_key is missing.*tars keys"):
        SwarmNode(without, "node-1", evolve=False)
    # a recorded key that is not the node's own: it could sign nothing the others accept
    other = encode_sign_key(Signer("x", bytes(32)).public)
    path.write_text(text.replace(config.node("node-1").sign_key or "", other, 1))
    with pytest.raises(ConfigError, match="sign_key of node-1 is not the public key"):
        SwarmNode(load_cluster(path), "node-1", evolve=False)


# ---- the state machine alone, on real stores (every backend of tests/storekit.py) -------


SIGNERS = {name: Signer(name, bytes([i + 1] * 32)) for i, name in enumerate([*MEMBERS, "admin"])}
NEW = Signer("node-4", bytes([9] * 32))


class SignedStateTests(Backend):
    """``LedgerState`` with the swarm's keys: what counts, what is refused and counted,
    and what a snapshot carries."""

    def state(self, name: str = "s") -> L.LedgerState:
        keys = {n: s.public for n, s in SIGNERS.items()}
        return L.LedgerState(self.create_store(name), MEMBERS, keys=keys)

    def opening(self) -> tuple[list[bytes], str, str]:
        """A registration and a proposal of node-1's, signed: (entries, proposal, version)."""
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        entries = [
            L.register_entry(
                "g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0, signer=SIGNERS["node-1"]
            ),
            L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0, signer=SIGNERS["node-1"]),
        ]
        return entries, L.proposal_id("g", "node-1", 1, win.version), win.version

    def test_only_entries_signed_by_an_author_who_may_write_them_count(self) -> None:
        state = self.state()
        entries, pid, version = self.opening()
        vote = [
            L.vote_entry("g", pid, version, "node-2", True, "ok", 1002.0),  # unsigned
            L.vote_entry("g", pid, version, "node-2", True, "ok", 1003.0, signer=SIGNERS["node-3"]),
            L.vote_entry("g", pid, version, "node-9", True, "ok", 1004.0, signer=Signer("node-9", bytes(32))),
            L.rollback_entry("g", "v", "x", "admin", 1005.0, signer=SIGNERS["node-1"]),
            L.members_entry(["node-1"], "node-1", 1006.0, signer=SIGNERS["node-1"]),
        ]  # fmt: skip
        out = state.apply_batch(list(enumerate(entries + vote, 1)))
        assert [a.written for a in out] == [True, True, False, False, False, False, False]
        assert state.refused_signatures == 5 and state.members == MEMBERS
        assert state.store.head("g").version == version_id(BASE)
        good = L.vote_entry(
            "g", pid, version, "node-2", True, "ok", 1007.0, signer=SIGNERS["node-2"]
        )
        assert state.apply(8, good).decided == {pid: "adopt"}
        # re-delivered after a restart: nothing is verified or counted again, the refused
        # member list still changes nothing
        again = L.LedgerState(state.store, MEMBERS, keys={n: s.public for n, s in SIGNERS.items()})
        again.apply_batch(list(enumerate([*entries, *vote, good], 1)))
        assert again.members == MEMBERS and again.refused_signatures == 0

    def test_a_member_added_by_the_admin_brings_its_key_and_the_snapshot_carries_it(self) -> None:
        state = self.state()
        entries, pid, version = self.opening()
        grow = members_entry(
            [*MEMBERS, "node-4"], "admin", 1002.0,
            keys={"node-4": encode_sign_key(NEW.public)}, signer=SIGNERS["admin"],
        )  # fmt: skip
        votes = [
            L.vote_entry("g", pid, version, "node-4", True, "ok", 1003.0, signer=NEW),
            L.vote_entry("g", pid, version, "node-2", True, "ok", 1004.0, signer=SIGNERS["node-2"]),
        ]
        out = state.apply_batch(list(enumerate([*entries, grow, *votes], 1)))
        assert state.refused_signatures == 0 and out[-1].decided == {pid: "adopt"}
        blob = state.snapshot_state(state.applied_index)
        found = heads_of(blob)
        assert found is not None and found[0] == state.applied_index
        assert found[1] == {
            ident: (position, state.store.chain("g")) for ident, position in state.store.positions().items()
        }  # fmt: skip
        # a node that knew only cluster.yml's keys verifies node-4 once it stands on it
        other = L.LedgerState(
            self.create_store("other"), MEMBERS, keys={"admin": SIGNERS["admin"].public}
        )
        other.restore(state.applied_index, blob)
        assert (
            other.keys is not None
            and "node-4" in other.keys
            and other.members == [*MEMBERS, "node-4"]
        )


class TestSignedStateSQLite(SQLiteBackend, SignedStateTests):
    pass


class TestSignedStateMemory(MemoryBackend, SignedStateTests):
    pass
