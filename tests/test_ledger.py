"""The ledger's state machine: same entries, same order -> same store on every node, once."""

from __future__ import annotations

import pytest
from storekit import Backend, MemoryBackend, PostgresBackend, SQLiteBackend

from consensus import ledger as L
from events.records import Adoption, CandidateRecord
from events.store import GenomeStore
from evolution.patch import apply_patch, make_patch
from evolution.swarm import rebase, tally
from evolution.tree import version_id

MEMBERS = ["node-1", "node-2", "node-3"]
BASE = {
    "genome.toml": '[genome]\nname = "g"\n',
    "core.py": "def a():\n    return 1\n\n\ndef b():\n    return 2\n\n\ndef c():\n    return 3\n",
}


def edit(tree: dict[str, str], old: str, new: str) -> dict[str, str]:
    out = dict(tree)
    out["core.py"] = out["core.py"].replace(old, new)
    return out


def adoption(parent: dict[str, str], child: dict[str, str], ratio: float = 1.5) -> Adoption:
    return Adoption(
        version=version_id(child),
        parent=version_id(parent),
        patch=make_patch(parent, child),
        mutator="memoize",
        kind="hot",
        fitness_before=1.0,
        fitness_after=1.0 / ratio,
        ratio=ratio,
        low=ratio - 0.1,
        high=ratio + 0.1,
        evidence={"note": "test"},
    )


def record(parent: dict[str, str], child: dict[str, str]) -> CandidateRecord:
    return CandidateRecord(
        candidate=version_id(child),
        parent=version_id(parent),
        patch=make_patch(parent, child),
        mutator="memoize",
        kind="hot",
        verdict="adopt",
        reasons=[],
        ratio=1.5,
        low=1.4,
        high=1.6,
        tests_passed=True,
    )


class Replica:
    """One node's store and state machine, fed entries by index like the engine does."""

    def __init__(self, store: GenomeStore, members: list[str] = MEMBERS) -> None:
        self.store = store
        self.state = L.LedgerState(self.store, members)

    def feed(self, entries: list[bytes], start: int = 1) -> list[L.Applied]:
        return [self.state.apply(i, data) for i, data in enumerate(entries, start)]


def log_of(store: GenomeStore) -> list[tuple[str, str | None, str]]:
    return [(e.type, e.version, e.node) for e in store.log()]


def base_entries() -> list[bytes]:
    return [L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0)]


def test_tally_and_rebase_are_pure() -> None:
    assert tally({"a": True}, ["a", "b", "c"]) == "wait"
    assert tally({"a": True, "b": True}, ["a", "b", "c"]) == "adopt"
    assert tally({"a": False, "b": False}, ["a", "b", "c"]) == "reject"
    assert tally({"x": True, "y": True}, ["a", "b", "c"]) == "wait", "non-members do not count"
    assert tally({"a": True, "b": False}, ["a", "b", "c", "d"]) == "wait"
    one, two = edit(BASE, "return 1", "return 10"), edit(BASE, "return 3", "return 30")
    merged = rebase(BASE, one, two)
    assert merged == edit(one, "return 3", "return 30")
    assert rebase(BASE, one, edit(BASE, "return 1", "return 11")) is None
    deleted = {k: v for k, v in BASE.items() if k != "core.py"}
    assert rebase(BASE, deleted, two) is None
    assert apply_patch(one, make_patch(one, merged)) == merged


def scenario() -> list[bytes]:
    one = edit(BASE, "return 1", "return 10")
    two = edit(BASE, "return 3", "return 30")
    both = edit(one, "return 3", "return 30")
    p1 = L.proposal_id("g", "node-1", 1, version_id(one))
    p2 = L.proposal_id("g", "node-2", 2, version_id(two))
    return base_entries() + [
        L.cycle_entry("g", "node-1", 1, 7, [record(BASE, one)], [], adoption(BASE, one), 1001.0),
        L.cycle_entry("g", "node-2", 2, 7, [], [], adoption(BASE, two), 1002.0),
        b"garbage in the middle",
        L.vote_entry("g", p1, version_id(one), "node-3", True, "ok", 1003.0),
        L.vote_entry("g", p2, version_id(both), "node-3", True, "ok", 1004.0),
        L.rollback_entry("g", version_id(one), "test", "node-1", 1005.0),
        L.members_entry(["node-1", "node-3"], "node-1", 1006.0),
    ]


class LedgerTests(Backend):
    """The state machine on one backend; the concrete classes below pick it."""

    def replicas(self, n: int = 3) -> list[Replica]:
        return [Replica(self.create_store(f"n{i}")) for i in range(n)]

    def test_proposal_waits_for_a_majority_then_every_replica_adopts(self) -> None:
        replicas = self.replicas()
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        entries = base_entries() + [
            L.cycle_entry("g", "node-1", 1, 7, [record(BASE, child)], [], win, 1001.0)
        ]
        for r in replicas:
            applied = r.feed(entries)
            assert r.store.head("g").version == version_id(BASE), (
                "one yes of three members is no majority"
            )
            (pid,) = applied[-1].waiting
        entries.append(L.vote_entry("g", pid, win.version, "node-2", True, "tests pass", 1002.0))
        for r in replicas:
            assert r.feed(entries[2:], start=3)[0].decided == {pid: "adopt"}
            head = r.store.head("g")
            assert head.version == win.version and head.proposals == {}
        first = replicas[0].store
        assert all(log_of(r.store) == log_of(first) for r in replicas)
        assert len({r.store.verify().heads["g"] for r in replicas}) == 1, (
            "same events, same timestamps, same chain"
        )

    def test_redelivery_after_a_restart_writes_nothing_twice(self) -> None:
        replicas = self.replicas()
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        entries = base_entries() + [L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0)]
        r = replicas[0]
        r.feed(entries)
        before = log_of(r.store)
        pid = next(iter(r.store.head("g").proposals))
        entries.append(L.vote_entry("g", pid, win.version, "node-3", True, "ok", 1002.0))
        again = r.feed(entries)  # the engine re-delivers from index 1 after every start
        assert [a.written for a in again] == [False, False, True]
        assert log_of(r.store)[: len(before)] == before
        assert [t for t, _, _ in log_of(r.store)].count("VersionAdopted") == 1
        assert r.state.applied_index == 3

    def test_a_majority_of_no_votes_rejects(self) -> None:
        replicas = self.replicas()
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        r = replicas[0]
        applied = r.feed(base_entries() + [L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0)])
        (pid,) = applied[-1].waiting
        out = r.feed(
            [
                L.vote_entry("g", pid, win.version, "node-2", False, "test_a failed", 1002.0),
                L.vote_entry("g", pid, win.version, "node-3", False, "test_a failed", 1003.0),
            ],
            start=3,
        )
        assert out[0].decided == {} and out[1].decided == {pid: "reject"}
        assert r.store.head("g").version == version_id(BASE)
        assert "ProposalRejected" in [t for t, _, _ in log_of(r.store)]

    def test_second_proposal_on_a_moved_head_is_rebased_and_needs_new_votes(self) -> None:
        replicas = self.replicas()
        one = edit(BASE, "return 1", "return 10")
        two = edit(BASE, "return 3", "return 30")
        r = replicas[0]
        entries = base_entries() + [
            L.cycle_entry("g", "node-1", 1, 7, [], [], adoption(BASE, one), 1001.0),
            L.cycle_entry("g", "node-2", 2, 7, [], [], adoption(BASE, two), 1002.0),
        ]
        applied = r.feed(entries)
        p1, p2 = list(applied[-1].waiting)
        out = r.feed(
            [L.vote_entry("g", p1, version_id(one), "node-3", True, "ok", 1003.0)], start=4
        )
        assert out[0].decided == {p1: "adopt"}
        merged = r.store.head("g").proposals[p2]
        assert merged["parent"] == version_id(one) and merged["votes"] == {}
        both = edit(one, "return 3", "return 30")
        assert merged["version"] == version_id(both)
        r.feed(
            [
                L.vote_entry("g", p2, version_id(two), "node-1", True, "stale vote", 1004.0),
                L.vote_entry("g", p2, version_id(both), "node-1", True, "ok", 1005.0),
                L.vote_entry("g", p2, version_id(both), "node-2", True, "ok", 1006.0),
            ],
            start=5,
        )
        assert r.store.head("g").tree == both

    def test_conflicting_proposal_is_rejected(self) -> None:
        replicas = self.replicas()
        one = edit(BASE, "return 1", "return 10")
        two = edit(BASE, "return 1", "return 11")
        r = replicas[0]
        applied = r.feed(
            base_entries()
            + [
                L.cycle_entry("g", "node-1", 1, 7, [], [], adoption(BASE, one), 1001.0),
                L.cycle_entry("g", "node-2", 2, 7, [], [], adoption(BASE, two), 1002.0),
            ]
        )
        p1, p2 = list(applied[-1].waiting)
        out = r.feed(
            [L.vote_entry("g", p1, version_id(one), "node-3", True, "ok", 1003.0)], start=4
        )
        assert out[0].decided == {p1: "adopt", p2: "reject"}
        assert r.store.head("g").tree == one and r.store.head("g").proposals == {}

    def test_rollback_through_the_ledger(self) -> None:
        replicas = self.replicas()
        one = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, one)
        single = L.LedgerState(
            replicas[0].store, ["node-1"]
        )  # one member: the proposer's vote is a majority
        for i, data in enumerate(
            base_entries() + [L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0)], 1
        ):
            single.apply(i, data)
        assert replicas[0].store.head("g").version == win.version
        single.apply(3, L.rollback_entry("g", version_id(BASE), "regression", "node-2", 1002.0))
        head = replicas[0].store.head("g")
        assert head.version == version_id(BASE) and head.fitness == 1.0

    def test_garbage_and_impossible_entries_are_skipped_the_same_way(self) -> None:
        replicas = self.replicas()
        r = replicas[0]
        entries = base_entries() + [
            b"\xc1garbage",
            L.encode("no-such-type", at=1.0),
            L.vote_entry("g", "nope", "v", "node-2", True, "x", 1001.0),
            L.rollback_entry("g", "0" * 64, "x", "node-2", 1002.0),
        ]
        out = r.feed(entries)
        # the vote for an unknown proposal is a late vote: applied as a no-op, not an error
        assert [a.written for a in out] == [True, False, False, True, False]
        assert r.state.applied_index == 5 and r.state.rejected_entries == 3
        assert [t for t, _, _ in log_of(r.store)] == ["Registered"]

    def test_members_entry_changes_the_majority(self) -> None:
        replicas = self.replicas()
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        r = replicas[0]
        r.feed(base_entries() + [L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0)])
        out = r.feed([L.members_entry(["node-1"], "node-1", 1002.0)], start=3)
        assert out[0].decided and r.store.head("g").version == win.version
        assert r.state.members == ["node-1"]

    def test_retried_cycle_and_vote_entries_are_recorded_once(self) -> None:
        replicas = self.replicas()
        child = edit(BASE, "return 1", "return 10")
        win = adoption(BASE, child)
        r = replicas[0]
        cycle = L.cycle_entry("g", "node-1", 1, 7, [record(BASE, child)], [], win, 1001.0)
        applied = r.feed(base_entries() + [cycle, cycle])
        (pid,) = applied[-1].waiting
        vote = L.vote_entry("g", pid, win.version, "node-1", True, "again", 1002.0)
        r.feed([vote], start=4)
        types = [t for t, _, _ in log_of(r.store)]
        assert types.count("CandidateEvaluated") == 1 and types.count("ProposalSubmitted") == 1
        assert types.count("VoteCast") == 1 and r.state.applied_index == 4

    def test_a_batch_stores_the_same_events_as_one_entry_at_a_time(self) -> None:
        entries = scenario()
        single, batched = self.replicas(2)
        one_by_one = single.feed(entries)
        together = batched.state.apply_batch(list(enumerate(entries, 1)))
        assert [(a.written, a.decided) for a in one_by_one] == [
            (a.written, a.decided) for a in together
        ]
        assert log_of(single.store) == log_of(batched.store)
        assert single.store.chain("g") == batched.store.chain("g")
        assert batched.state.applied_index == len(entries) == batched.store.applied(L.LEDGER)
        assert single.store.head("g").tree == batched.store.head("g").tree

    def test_a_failing_entry_in_a_batch_loses_only_its_own_events(self) -> None:
        replicas = self.replicas()
        one = edit(BASE, "return 1", "return 10")
        r = replicas[0]
        bad_proposal = adoption(BASE, one)
        broken = Adoption(
            **{
                **bad_proposal.__dict__,
                "patch": "--- a/nothing\n+++ b/nothing\n@@ -1 +1 @@\n-x\n+y\n",
            }
        )
        entries = base_entries() + [
            L.cycle_entry(
                "g", "node-1", 1, 7, [record(BASE, one)], [], adoption(BASE, one), 1001.0
            ),
            # evaluations are triggered, then the proposal's patch fails on rebase: all of this entry goes
            L.cycle_entry(
                "g",
                "node-2",
                2,
                7,
                [record(BASE, one)],
                [],
                Adoption(**{**broken.__dict__, "parent": "0" * 64}),
                1002.0,
            ),
            L.cycle_entry("g", "node-3", 3, 7, [], [], None, 1003.0),
        ]
        out = r.state.apply_batch(list(enumerate(entries, 1)))
        assert [a.written for a in out] == [True, True, False, True]
        types = [t for t, _, _ in log_of(r.store)]
        assert types.count("CandidateEvaluated") == 1 and types.count("CycleCompleted") == 2
        assert r.store.head("g").cycles_completed == 3 and r.state.applied_index == 4

    # -- exactly once across a reopened store (the tracking records are the backend's) --

    def test_a_redelivered_run_after_reopening_applies_nothing_twice(self) -> None:
        entries = scenario()
        state = L.LedgerState(self.create_store("node"), MEMBERS)
        first = state.apply_batch(list(enumerate(entries, 1)))
        before, chain = log_of(state.store), state.store.chain("g")
        self.close_store(state.store)

        again = L.LedgerState(self.reopen_store("node"), MEMBERS)
        assert again.applied_index == len(entries) == again.store.applied(L.LEDGER)
        # the engine re-delivers every committed entry from index 1 after a restart
        out = again.apply_batch(list(enumerate(entries, 1)))
        assert [a.written for a in out] == [False] * len(entries)
        assert [a.kind for a in out] == [a.kind for a in first]
        assert log_of(again.store) == before and again.store.chain("g") == chain
        assert again.members == ["node-1", "node-3"], "the member list is rebuilt from the log"
        # entries with bad fields are not judged again; bytes that are no map at all are
        # (they fail before their index is looked at), as before the entries were typed
        assert again.rejected_entries == 1
        # one at a time too, as the engine's applier does after a crash mid-run
        assert not any(again.apply(i, data).written for i, data in enumerate(entries, 1))
        nxt = L.cycle_entry("g", "node-1", 3, 7, [], [], None, 2000.0)
        assert again.apply(len(entries) + 1, nxt).written
        self.close_store(again.store)

        third = L.LedgerState(self.reopen_store("node"), MEMBERS)
        out = third.apply_batch(list(enumerate([*entries, nxt], 1)))
        assert not any(a.written for a in out)
        assert [t for t, _, _ in log_of(third.store)].count("CycleCompleted") == 3
        assert third.applied_index == len(entries) + 1

    def test_a_crash_before_the_commit_reapplies_exactly_what_is_missing(self) -> None:
        entries = scenario()
        state = L.LedgerState(self.create_store("node"), MEMBERS)
        state.apply_batch(list(enumerate(entries[:3], 1)))  # stored; the rest never was
        self.close_store(state.store)
        again = L.LedgerState(self.reopen_store("node"), MEMBERS)
        out = again.apply_batch(list(enumerate(entries, 1)))
        whole = Replica(self.create_store("whole"))
        full = whole.state.apply_batch(list(enumerate(entries, 1)))
        assert [a.written for a in out] == [False] * 3 + [a.written for a in full[3:]]
        assert [a.decided for a in out[3:]] == [a.decided for a in full[3:]]
        assert any(a.written for a in out[3:])
        assert log_of(again.store) == log_of(whole.store)
        assert again.store.chain("g") == whole.store.chain("g")

    # -- compaction: the snapshot blob plus the store stand in for the log before it --

    def test_a_snapshot_restores_members_and_index_on_a_fresh_store(self) -> None:
        source = L.LedgerState(self.create_store("source"), MEMBERS)
        entries = compacted_scenario()
        source.apply_batch(list(enumerate(entries, 1)))
        index, positions, blob = source.export_begin()
        assert index == len(entries) and blob == source.snapshot_state(index)
        events = [
            (lineage, position, topic, raw)
            for lineage, upto in positions.items()
            for position, topic, raw in source.store.export_events(lineage, 0, upto, 1 << 30)
        ]

        target = L.LedgerState(self.create_store("target"), ["node-9"])  # config is stale
        assert target.import_state(events, index, blob) == len(events)
        assert target.applied_index == index == target.store.applied(L.LEDGER)
        assert target.members == source.members_at(index) == [*MEMBERS, "node-4"]
        assert target.members_at(index) == target.members
        assert target.store.chain("g") == source.store.chain("g")
        target.store.verify()
        # a snapshot taken before the member change restores the members of that point
        target.restore(index, source.snapshot_state(1))
        assert target.members == MEMBERS
        target.restore(index, blob)
        # the log before the snapshot is re-delivered over it: nothing is written twice
        assert not any(a.written for a in target.apply_batch(list(enumerate(entries, 1))))
        # and the ledger goes on from there, the same on both stores
        # (proposal 2 was rebased onto proposal 1's version, with no votes: 3 of 4 adopt it)
        pid = L.proposal_id("g", "node-1", 2, version_id(edit(BASE, "return 2", "return 20")))
        rebased = version_id(edit(edit(BASE, "return 1", "return 10"), "return 2", "return 20"))
        votes = [
            (index + 1, L.vote_entry("g", pid, rebased, "node-3", True, "ok", 2000.0)),
            (index + 2, L.vote_entry("g", pid, rebased, "node-4", True, "ok", 2001.0)),
            (index + 3, L.vote_entry("g", pid, rebased, "node-1", True, "ok", 2002.0)),
        ]
        for state in (source, target):
            assert state.store.head("g").proposals[pid]["version"] == rebased
            assert [a.decided for a in state.apply_batch(votes)] == [{}, {}, {pid: "adopt"}]
        assert target.store.chain("g") == source.store.chain("g")

    def test_a_restored_node_keeps_its_index_across_a_reopen(self) -> None:
        source = L.LedgerState(self.create_store("source"), MEMBERS)
        source.apply_batch(list(enumerate(compacted_scenario(), 1)))
        index, positions, blob = source.export_begin()
        events = [
            (lineage, position, topic, raw)
            for lineage, upto in positions.items()
            for position, topic, raw in source.store.export_events(lineage, 0, upto, 1 << 30)
        ]
        target = L.LedgerState(self.create_store("target"), MEMBERS)
        target.import_state(events, index, blob)
        self.close_store(target.store)
        again = L.LedgerState(self.reopen_store("target"), MEMBERS)
        assert again.applied_index == index
        again.restore(index, blob)  # what the engine does with its snapshot on a restart
        assert again.members == [*MEMBERS, "node-4"]
        assert again.store.chain("g") == source.store.chain("g")


def compacted_scenario() -> list[bytes]:
    """A member joins (entry 2), one proposal is adopted, a second waits for a vote."""
    one = edit(BASE, "return 1", "return 10")
    two = edit(BASE, "return 2", "return 20")
    p1 = L.proposal_id("g", "node-1", 1, version_id(one))
    return base_entries() + [
        L.members_entry([*MEMBERS, "node-4"], "node-1", 1001.0),
        L.cycle_entry("g", "node-1", 1, 7, [record(BASE, one)], [], adoption(BASE, one), 1002.0),
        L.vote_entry("g", p1, version_id(one), "node-2", True, "ok", 1003.0),
        L.vote_entry("g", p1, version_id(one), "node-3", True, "ok", 1004.0),
        L.cycle_entry("g", "node-1", 2, 7, [], [], adoption(BASE, two), 1005.0),
        L.vote_entry("g", "0" * 16, "v", "node-2", True, "late", 1006.0),
    ]


class TestLedgerMemory(MemoryBackend, LedgerTests):
    pass


class TestLedgerSQLite(SQLiteBackend, LedgerTests):
    pass


@pytest.mark.postgres
class TestLedgerPostgres(PostgresBackend, LedgerTests):
    pass
