"""The genome store, run against every backend through one abstract test case.

``StoreTestCase`` holds the behaviour every backend must have; each concrete class only
says how to make a store (``create_store``) and how to reach its raw rows.  SQLite
adds tamper tests that edit the file directly, because that is what ``verify`` exists for.
"""

from __future__ import annotations

import pickle
import re
import sqlite3
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any

import pytest
from storekit import MemoryBackend, PostgresBackend, SQLiteBackend

from events.chain import GENESIS, event_type, link, payload_of
from events.domain import Lineage, lineage_id
from events.projections import fitness_history, lineage, mutator_stats
from events.records import Adoption, CandidateRecord, Held
from events.store import _VERSION_FIELDS, IMPORTABLE_TOPICS, SNAPSHOT_INTERVAL, GenomeStore
from events.transcoder import MsgpackTranscoder, packb, unpackb
from evolution.errors import (
    IntegrityError,
    PatchError,
    PolicyError,
    StoreError,
    TarsError,
    UnknownGenomeError,
    UnknownVersionError,
)
from evolution.patch import apply_patch, make_patch
from evolution.tree import version_id

GENOME = "logstats"
TREE0 = {
    "logstats/core.py": "def f(x):\n    return x\n\nLIMIT = 0\n",
    "tests/test_core.py": "def test():\n    pass\n",
}

OTHER = "parser"
OTHER_TREE = {**TREE0, "logstats/core.py": "def g(y):\n    return y\n\nLIMIT = 500\n"}


def batched(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``size`` (itertools.batched is Python 3.12)."""
    it: Iterable[Any] = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def evolve(tree: dict[str, str], i: int) -> dict[str, str]:
    new = dict(tree)
    new["logstats/core.py"] = tree["logstats/core.py"].replace(
        tree["logstats/core.py"].splitlines()[-1], f"LIMIT = {i}"
    )
    return new


def adoption_of(tree: dict[str, str], new: dict[str, str], fitness: float = 1.0) -> Adoption:
    return Adoption(
        version=version_id(new),
        parent=version_id(tree),
        patch=make_patch(tree, new),
        mutator="tune",
        kind="constant",
        fitness_before=fitness,
        fitness_after=fitness * 0.9,
        ratio=1.11,
        low=1.05,
        high=1.2,
        evidence={"samples": [0.1, 0.2], "note": "ok"},
    )


def record_of(
    tree: dict[str, str], new: dict[str, str], verdict: str = "adopt", mutator: str = "tune"
) -> CandidateRecord:
    return CandidateRecord(
        candidate=version_id(new),
        parent=version_id(tree),
        patch=make_patch(tree, new),
        mutator=mutator,
        kind="constant",
        verdict=verdict,
        reasons=["gain"] if verdict == "adopt" else ["no gain"],
        ratio=1.1,
        low=1.0,
        high=1.2,
        tests_passed=True,
    )


class StoreTestCase:
    """Behaviour every backend must have; a backend of ``tests/storekit.py`` is mixed in.

    The backend's ``create_store(name)`` hook makes each store (the same hook the ledger
    and transfer tests use), so a new backend is one mixin for all of them.
    """

    def peer(self) -> GenomeStore:
        """Another, empty store of the same backend (the ``n``-th of this test)."""
        return self.create_store(f"peer{len(self.opened)}")

    def store(self) -> GenomeStore:
        return self.create_store("store")

    def registered(self) -> GenomeStore:
        store = self.store()
        assert store.register(GENOME, "[genome]\n", TREE0, 2.0, "n1") == version_id(TREE0)
        return store

    def grow(
        self,
        store: GenomeStore,
        n: int,
        tree: dict[str, str] | None = None,
        *,
        genome: str = GENOME,
    ) -> list[dict[str, str]]:
        """Adopt ``n`` versions, one cycle each (evaluation + adoption + cycle); return the trees."""
        tree = dict(tree or store.head(genome).tree)
        trees = [tree]
        for i in range(n):
            new = evolve(tree, len(trees) + i * 1000)
            store.record_cycle(
                genome,
                "n1",
                evaluated=[record_of(tree, new)],
                adopted=adoption_of(tree, new),
                cycle=i + 1,
                seed=7,
            )
            trees.append(new)
            tree = new
        return trees

    def count(self, store: GenomeStore) -> int:
        return sum(1 for _ in store.log())

    # ---- registration and head ----

    def test_register_and_head(self) -> None:
        store = self.registered()
        head = store.head(GENOME)
        assert head.version == version_id(TREE0)
        assert head.tree == TREE0
        assert (head.fitness, head.versions_count, head.cycles_completed) == (2.0, 1, 0)
        assert head.manifest_text == "[genome]\n"
        assert head.pending == {}
        assert store.genomes() == [GENOME]

    def test_register_again(self) -> None:
        store = self.registered()
        assert store.register(GENOME, "[genome]\n", TREE0, 2.0, "n2") == version_id(TREE0)
        assert self.count(store) == 1
        with pytest.raises(TarsError, match="already registered"):
            store.register(GENOME, "[genome]\n", evolve(TREE0, 5), 2.0, "n2")
        store.register("other", "", {"a.py": "x = 1\n"}, None, "n1")
        assert store.genomes() == [GENOME, "other"]

    def test_unknown_genome(self) -> None:
        store = self.registered()
        with pytest.raises(UnknownGenomeError, match="'nope'"):
            store.head("nope")
        with pytest.raises(UnknownGenomeError):
            store.log(genome="nope")

    # ---- adoption ----

    def test_adoptions_give_the_patched_tree(self) -> None:
        store = self.registered()
        tree = dict(TREE0)
        for i in range(1, 8):
            new = evolve(tree, i)
            store.adopt(GENOME, adoption_of(tree, new), "n1")
            tree = apply_patch(tree, make_patch(tree, new))
        head = store.head(GENOME)
        assert head.tree == tree
        assert version_id(head.tree) == head.version
        assert head.versions_count == 8
        assert head.fitness == pytest.approx(0.9)

    def test_bad_patch_never_becomes_head(self) -> None:
        store = self.registered()
        before = self.count(store)
        new = evolve(TREE0, 1)
        lie = Adoption(
            **{**adoption_of(TREE0, new).__dict__, "version": version_id(evolve(TREE0, 2))}
        )
        with pytest.raises(IntegrityError, match="gives"):
            store.adopt(GENOME, lie, "n1")
        assert store.head(GENOME).version == version_id(TREE0)
        assert self.count(store) == before

    def test_adoption_on_stale_parent_refused(self) -> None:
        store = self.registered()
        trees = self.grow(store, 1)
        before = self.count(store)
        with pytest.raises(PatchError, match="head"):
            store.adopt(GENOME, adoption_of(TREE0, evolve(TREE0, 99)), "n1")
        assert store.head(GENOME).version == version_id(trees[-1])
        assert self.count(store) == before

    def test_record_cycle_is_all_or_nothing(self) -> None:
        store = self.registered()
        before = self.count(store)
        good = evolve(TREE0, 1)
        bad = Adoption(
            **{**adoption_of(TREE0, good).__dict__, "patch": make_patch(TREE0, evolve(TREE0, 3))}
        )
        with pytest.raises(IntegrityError):
            store.record_cycle(
                GENOME, "n1", evaluated=[record_of(TREE0, good)] * 3, held=[], adopted=bad, cycle=1
            )
        assert self.count(store) == before
        assert store.head(GENOME).cycles_completed == 0

    # ---- history ----

    def test_materialise_across_snapshots(self) -> None:
        store = self.registered()
        trees = self.grow(store, 60)  # 3 events per cycle: 181 events, snapshots at 100
        assert store.head(GENOME).versions_count == 61
        for i in (0, 1, 33, 34, 50, 59, 60):
            assert store.materialise(GENOME, version_id(trees[i])) == trees[i]
        assert store.materialise(GENOME, version_id(trees[33])[:12]) == trees[33]
        with pytest.raises(UnknownVersionError, match=r"deadbeef.*tars log lineage"):
            store.materialise(GENOME, "deadbeef")

    def test_rollback(self) -> None:
        store = self.registered()
        trees = self.grow(store, 5)
        before = self.count(store)
        store.rollback(GENOME, version_id(trees[2]), "latency regression", "n2")
        head = store.head(GENOME)
        assert head.version == version_id(trees[2])
        assert head.tree == trees[2]
        assert self.count(store) == before + 1
        for tree in trees:
            assert store.materialise(GENOME, version_id(tree)) == tree
        last = list(store.log(genome=GENOME))[-1]
        assert (last.type, last.version, last.parent, last.node) == (
            "RolledBack",
            version_id(trees[2]),
            version_id(trees[5]),
            "n2",
        )
        # evolving goes on from the rolled-back head
        again = self.grow(store, 1)
        assert store.head(GENOME).version == version_id(again[-1])
        with pytest.raises(UnknownVersionError, match=r"0123456789ab.*`tars log lineage`"):
            store.rollback(GENOME, "0123456789ab" * 5 + "cdef", "x", "n1")
        with pytest.raises(PolicyError):
            store.rollback(GENOME, store.head(GENOME).version, "x", "n1")

    def test_hold_and_approve(self) -> None:
        store = self.registered()
        new = evolve(TREE0, 1)
        held = Held(
            version_id(new),
            version_id(TREE0),
            make_patch(TREE0, new),
            "llm",
            "rewrite",
            ["large diff"],
            {"ratio": 1.3},
        )
        store.record_cycle(
            GENOME, "n1", evaluated=[record_of(TREE0, new, "hold")], held=[held], cycle=1
        )
        assert store.head(GENOME).pending == {held.candidate: held}
        with pytest.raises(PolicyError):
            store.approve(GENOME, "nothing", "cli")
        assert store.approve(GENOME, held.candidate, "cli") == held
        assert store.head(GENOME).pending == {}
        store.adopt(GENOME, adoption_of(TREE0, new), "cli")
        assert store.head(GENOME).version == version_id(new)

    def test_cycles_resume(self) -> None:
        store = self.registered()
        self.grow(store, 3)
        store.record_cycle(GENOME, "n1", cycle=4, seed=1)
        assert store.head(GENOME).cycles_completed == 4
        store.record_cycle(GENOME, "n1", evaluated=[record_of(TREE0, evolve(TREE0, 9), "reject")])
        assert store.head(GENOME).cycles_completed == 4

    def test_tracking_applies_once(self) -> None:
        store = self.registered()
        record = record_of(TREE0, evolve(TREE0, 1), "reject")
        store.record_cycle(GENOME, "n1", evaluated=[record], tracking=("ledger", 5))
        store.record_cycle(GENOME, "n1", evaluated=[record], tracking=("ledger", 5))
        store.record_cycle(GENOME, "n1", evaluated=[record], tracking=("ledger", 3))
        assert self.count(store) == 2
        assert store.applied("ledger") == 5
        store.record_cycle(GENOME, "n1", evaluated=[record], tracking=("ledger", 6))
        assert self.count(store) == 3

    def test_log(self) -> None:
        store = self.registered()
        store.register("other", "", {"a.py": "x = 1\n"}, None, "n9")
        trees = self.grow(store, 2)
        entries = list(store.log())
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)
        assert [e.type for e in entries] == [
            "Registered",
            "Registered",
            "CandidateEvaluated",
            "VersionAdopted",
            "CycleCompleted",
            "CandidateEvaluated",
            "VersionAdopted",
            "CycleCompleted",
        ]
        adopted = entries[3]
        assert adopted.genome == GENOME
        assert (adopted.version, adopted.parent) == (version_id(trees[1]), version_id(trees[0]))
        assert adopted.node == "n1" and adopted.time.tzinfo is not None
        assert adopted.data["evidence"] == {"samples": [0.1, 0.2], "note": "ok"}
        assert adopted.position == 3
        assert entries[1].genome == "other" and entries[1].node == "n9"
        mine = list(store.log(genome=GENOME))
        assert len(mine) == 7 and all(e.genome == GENOME for e in mine)
        assert [e.seq for e in store.log(start=entries[4].seq, limit=2)] == [
            entries[4].seq,
            entries[5].seq,
        ]
        assert list(store.log(limit=0)) == []

    def test_projections(self) -> None:
        store = self.registered()
        trees = self.grow(store, 3)
        store.record_cycle(
            GENOME, "n1", evaluated=[record_of(trees[-1], evolve(trees[-1], 77), "reject", "memo")]
        )
        store.rollback(GENOME, version_id(trees[1]), "regression", "n1")
        nodes = lineage(store.log(genome=GENOME))
        assert [n.version for n in nodes] == [version_id(t) for t in trees]
        assert nodes[0].parent is None and nodes[0].mutator is None
        assert nodes[2].parent == version_id(trees[1]) and nodes[2].mutator == "tune"
        assert [n.rolled_back for n in nodes] == [False, False, True, True]
        history = fitness_history(store.log(genome=GENOME))
        assert [v for _, v, _ in history] == [version_id(t) for t in trees] + [version_id(trees[1])]
        assert history[0][2] == 2.0
        assert mutator_stats(store.log()) == {
            ("tune", "constant"): (3, 3),
            ("memo", "constant"): (1, 0),
        }

    # ---- integrity ----

    def test_verify_clean(self) -> None:
        store = self.registered()
        self.grow(store, 40)
        report = store.verify()
        assert report.events == 121
        assert report.genomes == 1
        assert report.snapshots == 1
        assert set(report.heads) == {GENOME}

    def test_chain_matches_raw_recomputation(self) -> None:
        store = self.registered()
        self.grow(store, 2)
        previous = GENESIS
        for entry in store.log():
            raw = {**entry.data, "timestamp": entry.time}
            expected = link(
                previous,
                entry.type,
                lineage_id(GENOME),
                entry.position,
                entry.time,
                payload_of(raw),
            )
            assert entry.data["chain"] == expected
            previous = expected

    def test_reopen_gives_same_head(self) -> None:
        store = self.registered()
        trees = self.grow(store, 3)
        head = store.head(GENOME)
        self.close_store(store)
        again = self.reopen_store("store")
        assert again.head(GENOME) == head
        assert again.materialise(GENOME, version_id(trees[1])) == trees[1]
        assert again.verify().events == 10

    # ---- transfer between nodes: export and import per lineage ----

    def history(self) -> GenomeStore:
        """A store with real history: two genomes, one with 200+ events (snapshot intervals
        crossed), a held and approved candidate, a rollback, and ledger index 40 applied."""
        store = self.registered()
        store.register(OTHER, "[other]\n", OTHER_TREE, 1.0, "n2")
        trees = self.grow(store, 40)
        self.grow(store, 3, genome=OTHER)
        head = store.head(GENOME).tree
        new = evolve(head, 4242)
        held = Held(
            version_id(new),
            version_id(head),
            make_patch(head, new),
            "llm",
            "rewrite",
            ["big"],
            {"r": 1.3},
        )
        store.record_cycle(
            GENOME, "n1", evaluated=[record_of(head, new, "hold")], held=[held], cycle=41
        )
        store.approve(GENOME, held.candidate, "cli")
        store.rollback(GENOME, version_id(trees[20]), "regression", "n2")
        self.grow(store, 30)
        store.record_cycle(OTHER, "n2", cycle=9, seed=3, tracking=("ledger", 40))
        assert store.positions()[lineage_id(GENOME).hex] > 2 * SNAPSHOT_INTERVAL
        return store

    def exported(
        self,
        source: GenomeStore,
        target: GenomeStore,
        upto: dict[str, int] | None = None,
        max_bytes: int = 4096,
    ) -> list[tuple[str, int, str, bytes]]:
        """What ``target`` lacks of ``source`` (each lineage up to ``upto``), fetched in
        ``max_bytes`` chunks and interleaved across lineages as a transfer may send them."""
        have = target.positions()
        chunks: list[list[tuple[str, int, str, bytes]]] = []
        for key, last in source.positions().items():
            stop = (upto or {}).get(key, last)
            after = have.get(key, 0)
            mine = []
            while after < stop:
                got = source.export_events(key, after, stop, max_bytes)
                assert got and got[0][0] == after + 1
                mine.append([(key, position, topic, state) for position, topic, state in got])
                after = got[-1][0]
            chunks.append([event for chunk in mine for event in chunk])
        batch: list[tuple[str, int, str, bytes]] = []
        for group in zip_longest(*(batched(c, 25) for c in chunks)):
            for part in group:
                batch.extend(part or ())
        return batch

    def assert_same(self, source: GenomeStore, target: GenomeStore) -> None:
        assert target.genomes() == source.genomes()
        assert target.positions() == source.positions()
        for genome in source.genomes():
            assert target.head(genome) == source.head(genome)
            assert target.chain(genome) == source.chain(genome)
            theirs = [replace(e, seq=0) for e in source.log(genome=genome)]
            assert [replace(e, seq=0) for e in target.log(genome=genome)] == theirs
            adopted = [e.version for e in theirs if e.type == "VersionAdopted" and e.version]
            for version in adopted[::10]:
                assert target.materialise(genome, version) == source.materialise(genome, version)
        assert target.verify().heads == source.verify().heads

    def state(self, store: GenomeStore) -> tuple[dict[str, int], int | None, int]:
        return store.positions(), store.applied("ledger"), self.count(store)

    def test_positions(self) -> None:
        source = self.history()
        last: dict[str, int] = {}
        for entry in source.log():
            last[lineage_id(entry.genome).hex] = entry.position
        assert source.positions() == last
        assert self.peer().positions() == {}

    def test_import_into_empty_store(self) -> None:
        source = self.history()
        target = self.peer()
        batch = self.exported(source, target)
        assert len({key for key, *_ in batch[:60]}) == 2  # lineages interleaved
        assert target.import_events(batch, ("ledger", 40)) == len(batch) == self.count(source)
        self.assert_same(source, target)
        assert target.applied("ledger") == 40
        report = target.verify()
        assert report.events == len(batch) and report.snapshots >= 1
        # the import snapshotted the long lineage at its end: a first load replays nothing
        snapshots = target._app.snapshots
        assert snapshots is not None
        taken = snapshots.recorder.select_events(lineage_id(GENOME), desc=True, limit=1)
        assert taken[0].originator_version == source.positions()[lineage_id(GENOME).hex]
        # and the importing store goes on as a normal store
        self.grow(target, 1)
        target.verify()

    def test_import_the_missing_part(self) -> None:
        source = self.history()
        target = self.peer()
        genome, other = lineage_id(GENOME).hex, lineage_id(OTHER).hex
        first = self.exported(source, target, upto={genome: 50, other: 0})
        assert target.import_events(first, ("ledger", 20)) == 50
        assert target.positions() == {genome: 50}
        assert target.genomes() == [GENOME]
        early = target.head(GENOME)  # caches now hold the lineage at 50
        rest = self.exported(source, target)
        assert rest[0][1] in (1, 51) and min(p for k, p, *_ in rest if k == genome) == 51
        assert target.import_events(rest, ("ledger", 40)) == len(rest)
        assert target.head(GENOME) != early
        self.assert_same(source, target)
        assert target.applied("ledger") == 40

    def test_tampered_byte_refused_and_nothing_stored(self) -> None:
        source = self.history()
        target = self.peer()
        genome = lineage_id(GENOME).hex
        target.import_events(self.exported(source, target, upto={genome: 50}), ("ledger", 20))
        before = self.state(target)
        batch = self.exported(source, target)
        i, (key, position, topic, state) = next(
            (i, e)
            for i, e in enumerate(batch)
            if e[0] == genome and e[1] > 60 and e[2].endswith("VersionAdopted")
        )
        at = state.index(b"LIMIT = ")  # inside the patch text
        batch[i] = (
            key,
            position,
            topic,
            state[: at + 6] + bytes([state[at + 6] ^ 1]) + state[at + 7 :],
        )
        with pytest.raises(
            IntegrityError,
            match=rf"import of {GENOME} position {position}: VersionAdopted: hash chain broken",
        ):
            target.import_events(batch, ("ledger", 40))
        assert self.state(target) == before
        target.verify()

    def test_forged_chain_refused_by_replay(self) -> None:
        """A peer that recomputes the chain over an event it changed passes the chain check;
        replaying the events (as a load will) before writing still refuses it."""
        source = self.history()
        target = self.peer()
        genome = lineage_id(GENOME).hex
        batch = self.exported(source, target, upto={genome: 30, lineage_id(OTHER).hex: 0})
        key, position, topic, raw = batch[-1]
        assert (position, event_type(topic)) == (30, "VersionAdopted")
        state = unpackb(raw)
        state["version"] = version_id(evolve(TREE0, 31337))
        previous = unpackb(batch[-2][3])["chain"]
        state["chain"] = link(
            previous,
            "VersionAdopted",
            lineage_id(GENOME),
            30,
            state["timestamp"],
            payload_of(state),
        )
        batch[-1] = (key, position, topic, packb(state))
        with pytest.raises(
            IntegrityError, match=rf"import of {GENOME} position 30: VersionAdopted does not apply"
        ):
            target.import_events(batch, ("ledger", 40))
        assert self.state(target) == ({}, None, 0)
        # a Registered event under another lineage id, its chain recomputed for that id
        ghost = lineage_id("ghost")
        state = unpackb(batch[0][3])
        state["chain"] = link(
            GENESIS, "Registered", ghost, 1, state["timestamp"], payload_of(state)
        )
        with pytest.raises(
            IntegrityError,
            match=rf"lineage {ghost.hex} position 1: Registered names genome '{GENOME}', whose lineage",
        ):
            target.import_events([(ghost.hex, 1, batch[0][2], packb(state))], ("ledger", 40))
        assert self.state(target) == ({}, None, 0)

    def test_gap_and_disorder_refused(self) -> None:
        source = self.history()
        target = self.peer()
        genome = lineage_id(GENOME).hex
        batch = self.exported(source, target, upto={genome: 20, lineage_id(OTHER).hex: 0})
        with pytest.raises(
            IntegrityError,
            match=rf"{GENOME} position 11: positions must be contiguous: position 10 missing",
        ):
            target.import_events(batch[:9] + batch[10:], ("ledger", 40))
        with pytest.raises(
            IntegrityError,
            match=rf"{GENOME} position 10: positions must be contiguous: out of order",
        ):
            target.import_events(batch[:10] + batch[9:], ("ledger", 40))
        assert self.state(target) == ({}, None, 0)

    def test_batch_must_start_after_the_store(self) -> None:
        source = self.history()
        target = self.peer()
        genome, other = lineage_id(GENOME).hex, lineage_id(OTHER).hex
        with pytest.raises(
            IntegrityError,
            match=rf"lineage {genome} position 2: .* last position of this lineage is 0, so its events must start at 1",
        ):
            target.import_events(self.exported(source, target, upto={other: 0})[1:], ("ledger", 40))
        target.import_events(
            self.exported(source, target, upto={genome: 50, other: 0}), ("ledger", 20)
        )
        before = self.state(target)
        rest = [e for e in self.exported(source, target) if e[0] == genome]
        with pytest.raises(IntegrityError, match=rf"{GENOME} position 52: .* must start at 51"):
            target.import_events(rest[1:], ("ledger", 40))
        overlap = [(genome, p, t, s) for p, t, s in source.export_events(genome, 49, 60)]
        with pytest.raises(IntegrityError, match=rf"{GENOME} position 50: .* must start at 51"):
            target.import_events(overlap, ("ledger", 40))
        assert self.state(target) == before

    def test_unknown_topic_refused_unresolved(self) -> None:
        source = self.history()
        target = self.peer()
        batch = self.exported(source, target, upto={lineage_id(OTHER).hex: 0})
        for topic in ("os:system", "tars_no_such_module:Thing"):
            key, position, _, state = batch[5]
            forged = [*batch[:5], (key, position, topic, state), *batch[6:]]
            with pytest.raises(
                IntegrityError, match=rf"{GENOME} position 6: unknown topic '{topic}'"
            ):
                target.import_events(forged, ("ledger", 40))
        assert "tars_no_such_module" not in sys.modules
        # the aggregate class a Registered event names is outside the chain: checked too
        key, position, topic, raw = batch[0]
        state = unpackb(raw)
        state["originator_topic"] = "os:system"
        with pytest.raises(
            IntegrityError,
            match=rf"{GENOME} position 1: Registered names aggregate class 'os:system'",
        ):
            target.import_events([(key, position, topic, packb(state)), *batch[1:]], ("ledger", 40))
        with pytest.raises(IntegrityError, match="is not a lineage id"):
            target.import_events([("../etc", 1, topic, raw)], ("ledger", 40))
        assert self.state(target) == ({}, None, 0)

    def test_tracking_must_be_ahead(self) -> None:
        source = self.history()
        target = self.peer()
        genome = lineage_id(GENOME).hex
        target.import_events(self.exported(source, target, upto={genome: 50}), ("ledger", 20))
        before = self.state(target)
        rest = self.exported(source, target)
        for index in (20, 5):
            with pytest.raises(IntegrityError, match="already applied ledger up to index 20"):
                target.import_events(rest, ("ledger", index))
        assert self.state(target) == before
        assert target.import_events([], ("ledger", 21)) == 0  # only the tracking record
        assert target.applied("ledger") == 21

    def test_export_bounds(self) -> None:
        source = self.history()
        genome = lineage_id(GENOME).hex
        last = source.positions()[genome]
        everything = source.export_events(genome, 0, last + 100, max_bytes=1 << 30)
        assert [p for p, _, _ in everything] == list(range(1, last + 1))  # several pages
        raw = source._app.recorder.select_events(lineage_id(GENOME))
        assert everything == [(r.originator_version, r.topic, bytes(r.state)) for r in raw]
        assert [p for p, _, _ in source.export_events(genome, 10, 20)] == list(range(11, 21))
        sizes = [len(state) for _, _, state in everything[10:13]]
        assert [p for p, _, _ in source.export_events(genome, 10, 100, max_bytes=sum(sizes))] == [
            11,
            12,
            13,
        ]
        assert [
            p for p, _, _ in source.export_events(genome, 10, 100, max_bytes=sum(sizes) - 1)
        ] == [11, 12]
        assert [p for p, _, _ in source.export_events(genome, 10, 100, max_bytes=1)] == [11]
        assert source.export_events(genome, last, last + 10) == []
        assert source.export_events(genome, 20, 10) == []
        assert source.export_events(lineage_id("nope").hex, 0, 10) == []
        with pytest.raises(IntegrityError, match="is not a lineage id"):
            source.export_events(
                str(lineage_id(GENOME)), 0, 10
            )  # dashed form: not what positions() gives


class TestMemoryStore(StoreTestCase, MemoryBackend):
    pass


class TestSQLiteStore(StoreTestCase, SQLiteBackend):
    def url(self) -> str:
        return f"sqlite:///{self.tmp_path / 'store.db'}"

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.tmp_path / "store.db", isolation_level=None)

    def test_durable_settings(self) -> None:
        store = self.registered()
        with store._app.recorder.datastore.transaction(commit=False) as cursor:  # type: ignore[attr-defined]
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 2  # FULL
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"

    def test_edited_byte_is_named(self) -> None:
        store = self.registered()
        self.grow(store, 5)
        target = next(e for e in store.log() if e.type == "VersionAdopted" and e.position == 9)
        with self.db() as db:
            (state,) = db.execute(
                "SELECT state FROM stored_events WHERE rowid=?", (target.seq,)
            ).fetchone()
            i = state.index(b"LIMIT = ")  # inside the patch text
            edited = state[: i + 6] + bytes([state[i + 6] ^ 0x01]) + state[i + 7 :]
            db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (edited, target.seq))
        with pytest.raises(
            IntegrityError,
            match=rf"event seq {target.seq} \(VersionAdopted of logstats, position 9\): hash chain broken",
        ):
            store.verify()

    def test_undecodable_event_is_named(self) -> None:
        store = self.registered()
        self.grow(store, 2)
        with self.db() as db:
            db.execute("UPDATE stored_events SET state=substr(state, 1, 20) WHERE rowid=3")
        with pytest.raises(IntegrityError, match=r"event seq 3 .*no longer decodes"):
            store.verify()

    def test_deleted_event_is_named(self) -> None:
        store = self.registered()
        self.grow(store, 3)
        with self.db() as db:
            db.execute("DELETE FROM stored_events WHERE rowid=4")
        with pytest.raises(
            IntegrityError,
            match=r"event seq 5 \(CandidateEvaluated of logstats, position 5\): position 4 missing",
        ):
            store.verify()

    def test_swapped_events_are_named(self) -> None:
        store = self.registered()
        self.grow(store, 3)
        with self.db() as db:
            a = db.execute("SELECT state FROM stored_events WHERE rowid=3").fetchone()[0]
            b = db.execute("SELECT state FROM stored_events WHERE rowid=6").fetchone()[0]
            db.execute("UPDATE stored_events SET state=? WHERE rowid=3", (b,))
            db.execute("UPDATE stored_events SET state=? WHERE rowid=6", (a,))
        with pytest.raises(
            IntegrityError,
            match=r"event seq 3 \(VersionAdopted of logstats, position 3\): hash chain broken",
        ):
            store.verify()

    def test_truncated_tail_caught_by_snapshot(self) -> None:
        store = self.registered()
        self.grow(store, 34)  # 103 events, snapshot at 100
        with self.db() as db:
            db.execute("DELETE FROM stored_events WHERE originator_version >= 100")
        with pytest.raises(
            IntegrityError,
            match="snapshot of logstats at position 100: the log ends at position 99",
        ):
            store.verify()

    def test_failure_inside_the_transaction_stores_nothing(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = self.registered()
        recorder = store._app.recorder
        original = recorder._insert_events  # type: ignore[attr-defined]

        def half_then_fail(cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
            original(cursor, stored_events[:2], **kwargs)
            raise sqlite3.OperationalError("disk I/O error (simulated)")

        monkeypatch.setattr(recorder, "_insert_events", half_then_fail)
        new = evolve(TREE0, 1)
        with pytest.raises(StoreError, match="nothing of this write was stored"):
            store.record_cycle(
                GENOME,
                "n1",
                evaluated=[record_of(TREE0, new)] * 3,
                adopted=adoption_of(TREE0, new),
                cycle=1,
            )
        monkeypatch.undo()
        with self.db() as db:
            assert db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0] == 1
        assert store.head(GENOME).version == version_id(TREE0)

    def test_import_write_failure_stores_nothing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        source = self.history()
        target = self.peer()
        genome = lineage_id(GENOME).hex
        target.import_events(self.exported(source, target, upto={genome: 50}), ("ledger", 20))
        before = self.state(target)
        recorder = target._app.recorder
        original = recorder._insert_events  # type: ignore[attr-defined]

        def half_then_fail(cursor: Any, stored_events: Any, **kwargs: Any) -> Any:
            original(cursor, stored_events[:2], **kwargs)
            raise sqlite3.OperationalError("disk I/O error (simulated)")

        monkeypatch.setattr(recorder, "_insert_events", half_then_fail)
        with pytest.raises(StoreError, match="cannot write .* nothing of this write was stored"):
            target.import_events(self.exported(source, target), ("ledger", 40))
        monkeypatch.undo()
        assert self.state(target) == before
        target.import_events(self.exported(source, target), ("ledger", 40))
        self.assert_same(source, target)

    def test_missing_directory(self) -> None:
        missing = self.tmp_path / "no" / "such"
        with pytest.raises(StoreError, match=f"store {missing}/s.db: directory does not exist"):
            GenomeStore.open(f"sqlite:///{missing}/s.db")
        assert not (self.tmp_path / "no").exists()

    def test_unwritable_directory(self) -> None:
        # /proc refuses new files even to root, for whom chmod means nothing
        with pytest.raises(StoreError, match="store /proc/tars.db: directory is not writable"):
            GenomeStore.open("sqlite:////proc/tars.db")

    def test_not_a_database(self) -> None:
        path = self.tmp_path / "notes.db"
        path.write_text("these are my notes, not a database\n")
        with pytest.raises(StoreError, match=f"store {path}: is not a SQLite database"):
            GenomeStore.open(f"sqlite:///{path}")
        assert path.read_text() == "these are my notes, not a database\n"
        assert sorted(p.name for p in self.tmp_path.iterdir()) == ["notes.db"]

    def test_must_exist(self) -> None:
        with pytest.raises(StoreError, match="does not exist"):
            GenomeStore.open(f"sqlite:///{self.tmp_path / 'absent.db'}", create=False)
        assert not (self.tmp_path / "absent.db").exists()


@pytest.mark.postgres
class TestPostgresStore(StoreTestCase, PostgresBackend):
    @property
    def pg_url(self) -> str:
        """The database of the test's main store (``create_store("store")``)."""
        return f"{self.pg_dsn.rsplit('/', 1)[0]}/{self.pg_prefix}_store"

    def test_edited_state_is_named(self) -> None:
        import psycopg

        store = self.registered()
        self.grow(store, 2)
        with psycopg.connect(self.pg_url, autocommit=True) as db:
            db.execute(
                "UPDATE genomes_events SET state = overlay(state placing '\\x21'::bytea from 30 for 1) "
                "WHERE notification_id = 4"
            )
        with pytest.raises(
            IntegrityError, match=r"event seq 4 \(CycleCompleted of logstats, position 4\)"
        ):
            store.verify()

    def test_unreachable_server(self) -> None:
        with pytest.raises(StoreError, match="cannot open"):
            GenomeStore.open("postgresql://postgres@127.0.0.1:1/nope?connect_timeout=1")


def test_unknown_scheme() -> None:
    with pytest.raises(StoreError, match="unknown kind of store"):
        GenomeStore.open("mongodb://localhost/x")


def test_transcoder_round_trips_events_without_pickle() -> None:
    lineage_ = Lineage.register(GENOME, "m", TREE0, 1.5, "n1")
    new = evolve(TREE0, 1)
    lineage_.evaluate(record_of(TREE0, new), "n1")
    lineage_.hold(
        Held(
            "c",
            version_id(TREE0),
            "",
            "llm",
            "k",
            ["big"],
            {"ratio": 1.2, "nested": {"b": [1, None]}},
        ),
        "n1",
    )
    lineage_.adopt(adoption_of(TREE0, new), "n1")
    lineage_.complete_cycle(1, version_id(new), 1, 42, "n1")
    transcoder = MsgpackTranscoder()
    for event in lineage_.collect_events():
        state = dict(vars(event))
        data = transcoder.encode(state)
        assert not data.startswith(b"\x80"), "pickle protocol header"
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            pickle.loads(data)
        back = transcoder.decode(data)
        assert back == state
        assert back["timestamp"].utcoffset() is not None
        assert isinstance(back["originator_id"], uuid.UUID)
        assert event_type(f"events.domain:{type(event).__qualname__}") == type(event).__name__
    assert unpackb(transcoder.encode({"t": datetime(2024, 1, 2, tzinfo=UTC)}))["t"] == datetime(
        2024, 1, 2, tzinfo=UTC
    )
    with pytest.raises(TypeError):
        transcoder.encode({"x": object()})
    with pytest.raises(TypeError):
        transcoder.encode({"x": datetime(2024, 1, 1)})


def test_no_pickle_in_the_events_package() -> None:
    importing = re.compile(r"^\s*(import|from)\s+(_?c?pickle|dill|cloudpickle|shelve)\b", re.M)
    for source in Path(__file__).resolve().parents[1].joinpath("events").glob("*.py"):
        assert not importing.search(source.read_text()), source


def test_importable_topics_are_the_lineage_events_stored() -> None:
    """The import whitelist is every lineage event type the store knows, and nothing else."""
    assert {event_type(topic) for topic in IMPORTABLE_TOPICS} == set(_VERSION_FIELDS)
    assert all(topic.startswith("events.domain:Lineage.") for topic in IMPORTABLE_TOPICS)
