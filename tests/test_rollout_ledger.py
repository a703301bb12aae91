"""Rollout entries and a member's rollback, on three nodes' ledger states with the swarm's keys.

Three ``LedgerState`` objects, each on its own real store, apply the same committed bytes
(what Raft delivers to three nodes), so every check below holds on every node alike.  The
attacks: a rollout step in another node's name, and rollbacks by a member whose own
committed rollout did not mark the head Failed, or to anything but the head's parent.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storekit import Backend, MemoryBackend, SQLiteBackend
from test_ledger import BASE, MEMBERS, adoption, edit

from cli.log import _summary_of
from consensus import entries as E
from consensus import ledger as L
from consensus.authors import member_rollback_problem
from consensus.signing import Signer
from events._eventsourcing import topic_of
from events.domain import Lineage
from events.store import GenomeStore
from events.transfer import IMPORTABLE_TOPICS
from evolution.tree import version_id

SIGNERS = {name: Signer(name, bytes([i + 1] * 32)) for i, name in enumerate([*MEMBERS, "admin"])}
KEYS = {name: signer.public for name, signer in SIGNERS.items()}


def step(
    node: str, version: str, phase: str, result: str = "", *, as_name: str = "", at: float = 2000.0
) -> bytes:
    """A rollout step of ``node``'s, signed by ``as_name``'s key (default: its own)."""
    signer = SIGNERS[as_name or node]
    return E.rollout_entry(
        "g", node, version, version_id(BASE), phase, 2, 0.1, result, f"{phase} {result}", at, signer=signer
    )  # fmt: skip


def rollback(node: str, to: str, at: float, *, key: str = "") -> bytes:
    return L.rollback_entry("g", to, "green failed", node, at, signer=SIGNERS[key or node])


class RolloutLedgerTests(Backend):
    def three(self) -> list[L.LedgerState]:
        return [L.LedgerState(self.create_store(f"s{i}"), MEMBERS, keys=KEYS) for i in range(3)]

    def commit(self, states: list[L.LedgerState], *entries: bytes) -> list[list[L.Applied]]:
        """Apply ``entries`` as the next committed indexes on every node."""
        first = states[0].applied_index + 1
        batch = list(enumerate(entries, first))
        return [state.apply_batch(batch) for state in states]

    def adopted(self, states: list[L.LedgerState]) -> tuple[str, str]:
        """BASE registered, a child adopted by node-1's proposal and node-2's vote."""
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        pid = L.proposal_id("g", "node-1", 1, win.version)
        self.commit(
            states,
            L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0, signer=SIGNERS["node-1"]),
            L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0, signer=SIGNERS["node-1"]),
            L.vote_entry("g", pid, win.version, "node-2", True, "ok", 1002.0, signer=SIGNERS["node-2"]),
        )  # fmt: skip
        assert {s.store.head("g").version for s in states} == {win.version}
        return version_id(BASE), win.version

    def heads(self, states: list[L.LedgerState]) -> set[str]:
        return {s.store.head("g").version for s in states}

    def refused(self, states: list[L.LedgerState]) -> list[int]:
        return [s.refused_signatures for s in states]

    def test_rollout_steps_are_events_every_node_lists_the_same(self) -> None:
        states = self.three()
        base, head = self.adopted(states)
        out = self.commit(states, step("node-2", head, "started"), step("node-2", head, "weight"))
        assert all(
            a.written and a.kind == "rollout" and a.genome == "g" for run in out for a in run
        )
        for state in states:
            rows = [e for e in state.store.log(genome="g") if e.type == "RolloutStepped"]
            assert [(e.node, e.version, e.parent, e.data["phase"]) for e in rows] == [
                ("node-2", head, base, "started"),
                ("node-2", head, base, "weight"),
            ]
            assert rows[-1].data["weight"] == 0.1 and rows[-1].data["step"] == 2
            assert state.store.verify().heads == {"g": state.store.chain("g")}  # chained
        assert len({s.store.chain("g") for s in states}) == 1
        # a node catching up by state transfer accepts the event type (the import whitelist)
        assert topic_of(Lineage.RolloutStepped) in IMPORTABLE_TOPICS
        # and `tars log ls` says what happened in one line
        row = [e for e in states[0].store.log(genome="g")][-1]
        assert _summary_of(row.type, row.data, row.parent) == "weight step 2 10%: weight "

    def test_a_rollout_step_in_another_nodes_name_is_refused(self) -> None:
        states = self.three()
        _, head = self.adopted(states)
        forged = step("node-3", head, "aborted", "Failed", as_name="node-2")
        unsigned = E.rollout_entry("g", "node-3", head, "b", "aborted", 1, 0.0, "Failed", "", 1.0)
        out = self.commit(states, forged, unsigned)
        assert [a.written for run in out for a in run] == [False] * 6
        assert self.refused(states) == [2, 2, 2]
        assert all(
            "RolloutStepped" not in {e.type for e in s.store.log(genome="g")} for s in states
        )
        # ... so node-3 cannot then roll the head back on the strength of it
        self.commit(states, rollback("node-3", version_id(BASE), 2001.0))
        assert self.heads(states) == {head} and self.refused(states) == [3, 3, 3]

    def test_a_member_rolls_back_only_what_its_own_rollout_marked_failed(self) -> None:
        states = self.three()
        base, head = self.adopted(states)
        other = version_id(edit(BASE, "return 2", "return 20"))
        self.commit(
            states,
            rollback("node-2", base, 2001.0),  # no rollout of node-2's at all
            step("node-2", head, "analysis", "Successful", at=2002.0),
            rollback("node-2", base, 2003.0),  # its last step passed
            step("node-2", head, "aborted", "Failed", at=2004.0),
            rollback("node-3", base, 2005.0),  # node-3's own rollout failed nothing
            rollback("node-2", other, 2006.0),  # not the head's parent
            rollback("node-2", base, 2007.0, key="node-3"),  # node-3's key in node-2's name
        )
        assert self.heads(states) == {head} and self.refused(states) == [5, 5, 5]
        out = self.commit(states, rollback("node-2", base, 2008.0))
        assert all(run[0].written for run in out)
        assert self.heads(states) == {base} and self.refused(states) == [5, 5, 5]
        for state in states:
            last = [e for e in state.store.log(genome="g")][-1]
            assert (last.type, last.node, last.version) == ("RolledBack", "node-2", base)
        # node-3's rollout failed too and its rollback arrives late: nothing happens, nothing is
        # refused (a race between honest nodes); node-2 cannot roll back twice either
        out = self.commit(
            states,
            step("node-3", head, "aborted", "Failed", at=2009.0),
            rollback("node-3", base, 2010.0),
            rollback("node-2", base, 2011.0),
        )
        assert self.heads(states) == {base} and self.refused(states) == [5, 5, 5]
        # the admin may still do what it always could
        self.commit(states, rollback("admin", head, 2012.0))
        assert self.heads(states) == {head}
        # head reached by a rollback: no member may roll it back, even after a Failed step
        self.commit(
            states,
            step("node-2", head, "aborted", "Failed", at=2013.0),
            rollback("node-2", base, 2014.0),
        )
        assert self.heads(states) == {head} and self.refused(states) == [6, 6, 6]
        assert len({s.store.chain("g") for s in states}) == 1

    def test_replayed_after_a_restart_the_rollback_is_not_counted_again(self) -> None:
        states = self.three()
        base, head = self.adopted(states)
        self.commit(
            states, step("node-2", head, "aborted", "Failed"), rollback("node-2", base, 2001.0)
        )
        again = L.LedgerState(states[0].store, MEMBERS, keys=KEYS)
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        pid = L.proposal_id("g", "node-1", 1, win.version)
        entries = [
            L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0, signer=SIGNERS["node-1"]),
            L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0, signer=SIGNERS["node-1"]),
            L.vote_entry("g", pid, win.version, "node-2", True, "ok", 1002.0, signer=SIGNERS["node-2"]),
            step("node-2", head, "aborted", "Failed"),
            rollback("node-2", base, 2001.0),
        ]  # fmt: skip
        out = again.apply_batch(list(enumerate(entries, 1)))
        assert not any(a.written for a in out) and again.refused_signatures == 0
        assert again.store.head("g").version == base


class TestRolloutLedgerMemory(MemoryBackend, RolloutLedgerTests):
    pass


class TestRolloutLedgerSQLite(SQLiteBackend, RolloutLedgerTests):
    pass


def test_the_member_rollback_rule_names_what_is_wrong() -> None:
    entry = E.Rollback("g", "p", "x", "n2", 1.0)
    failed = {"version": "h", "phase": "aborted", "result": "Failed"}
    assert member_rollback_problem(entry, "h", "p", failed) is None
    assert "no committed rollout" in str(member_rollback_problem(entry, "h", "p", None))
    assert "no committed rollout" in str(member_rollback_problem(entry, "h2", "p", failed))
    passed = {**failed, "result": "Successful"}
    assert "not a Failed analysis" in str(member_rollback_problem(entry, "h", "p", passed))
    assert "only to its parent" in str(member_rollback_problem(entry, "h", "q", failed))
    assert "only to its parent" in str(member_rollback_problem(entry, "h", None, failed))


ACTS = st.lists(
    st.tuples(
        st.sampled_from(["failed", "passed", "to_parent", "to_other", "forged"]),
        st.sampled_from(MEMBERS),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTS)
def test_whatever_members_write_the_head_only_goes_back_to_its_parent_once(
    acts: list[tuple[str, str]],
) -> None:
    """Random rollout steps and rollbacks by random members (and forgeries): the head moves
    only when the author's last step marked it Failed, only to its parent, and only once."""
    tests = TestRolloutLedgerMemory()
    states = [L.LedgerState(GenomeStore.open("memory://"), MEMBERS, keys=KEYS)]
    base, head = tests.adopted(states)
    other = version_id(edit(BASE, "return 2", "return 20"))
    last: dict[str, str] = {}
    moved = 0
    for at, (act, node) in enumerate(acts, 3000):
        before = states[0].store.head("g").version
        if act in ("failed", "passed"):
            result = "Failed" if act == "failed" else "Successful"
            tests.commit(states, step(node, before, "analysis", result, at=float(at)))
            last[node] = f"{before}:{result}"
            continue
        signer = {"forged": MEMBERS[(MEMBERS.index(node) + 1) % 3]}.get(act, node)
        to = other if act == "to_other" else base
        tests.commit(states, rollback(node, to, float(at), key=signer))
        after = states[0].store.head("g").version
        if after != before:
            moved += 1
            assert (before, after) == (head, base)
            assert act == "to_parent" and last.get(node) == f"{head}:Failed"
    assert moved <= 1
    for state in states:
        state.store.close()
