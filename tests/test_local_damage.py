"""An entry that fails on one node because of that node's own damage halts it; it is never skipped.

Entries that are bad everywhere (malformed, or refused by the domain on every healthy
store) stay skipped the same way on every node (``tests/test_ledger.py`` keeps those);
here a real SQLite store is damaged under a running state machine, or a running swarm
node, as a failing disk would, and the entry that needs the damaged history must halt
that node with the reason and the repair while the healthy nodes apply it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarmkit import candidate, in_process_swarm, wait

from consensus import ledger as L
from consensus.applier import GuardedLedgerState, LocalDamage
from consensus.ledger import cycle_entry, register_entry, rollback_entry
from events.backends import sqlite_path
from events.records import Adoption
from events.store import GenomeStore
from evolution.tree import version_id
from node import SwarmNode
from runtime.genome_files import load_genome

TINY = Path(__file__).parent / "data" / "tiny"
BASE = {"core.py": "def f():\n    return 1\n", "genome.toml": 'name = "g"\n'}
EDITS = [("return 1", "return 2"), ("return 2", "return 3"), ("return 3", "return 4")]


def wreck_adoption(path: Path, version: str) -> None:
    """Flip one bit in the key ``timestamp`` of the event that adopted ``version``: the row
    still reads and decodes as msgpack, but the event no longer has its timestamp."""
    with sqlite3.connect(path) as db:
        for rowid, topic, state in db.execute("SELECT rowid, topic, state FROM stored_events"):
            if topic.endswith("VersionAdopted") and version.encode() in state:
                at = state.index(b"timestamp")
                wrecked = state[:at] + bytes([state[at] ^ 0x01]) + state[at + 1 :]
                db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (wrecked, rowid))
                return
    raise AssertionError(f"no adoption of {version} in {path}")


class Machine:
    """One node's real SQLite store and its guarded state machine, fed entries by index."""

    def __init__(self, root: Path) -> None:
        self.path = root / "store.db"
        self.store = GenomeStore.open(f"sqlite:///{self.path}")
        self.checks = 0
        self.state = GuardedLedgerState(self.store, ["node-1"], check=self.check)
        self.index = 0

    def check(self) -> object:
        self.checks += 1
        return self.store.check(self.path.with_suffix(".verified"), [L.LEDGER])

    def feed(self, data: bytes) -> L.Applied:
        self.index += 1
        return self.state.apply(self.index, data)

    def history(self) -> list[str]:
        """Registered, then three adoptions; the versions in order."""
        self.feed(register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0))
        tree, versions = dict(BASE), [version_id(BASE)]
        for cycle, (old, new) in enumerate(EDITS, 1):
            child = {**tree, "core.py": tree["core.py"].replace(old, new)}
            adoption = Adoption(
                version_id(child), version_id(tree), _patch(tree, child), "m", "k",
                1.0, 0.5, 2.0, 1.8, 2.2, {},
            )  # fmt: skip
            self.feed(cycle_entry("g", "node-1", cycle, 3, [], [], adoption, 1000.0 + cycle))
            tree = child
            versions.append(version_id(child))
        assert self.store.head("g").version == versions[-1]
        self.check()  # the node's start: the store is sound and marked
        self.checks = 0
        return versions


def _patch(old: dict[str, str], new: dict[str, str]) -> str:
    from evolution.patch import make_patch

    return make_patch(old, new)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    made = Machine(tmp_path)
    try:
        yield made
    finally:
        made.store.close()


def test_a_rollback_that_needs_damaged_history_halts_instead_of_skipping(machine: Machine) -> None:
    versions = machine.history()
    applied = machine.store.applied(L.LEDGER)
    wreck_adoption(machine.path, versions[1])
    with pytest.raises(LocalDamage) as err:
        machine.feed(rollback_entry("g", versions[1], "regression", "node-1", 2000.0))
    assert machine.checks == 1, "a failure that is not a store error is held against the store"
    assert err.value.index == applied + 1 and err.value.kind == "rollback"
    assert "store check found" in str(err.value) and "VersionAdopted" in str(err.value)
    assert machine.state.rejected_entries == 0, "not skipped"
    assert machine.store.applied(L.LEDGER) == applied, "nothing of the entry is recorded"
    assert machine.store.head("g").version == versions[-1]


def test_a_rollback_to_a_version_no_node_has_is_still_skipped(machine: Machine) -> None:
    """Deterministic: a healthy store refuses it alike on every node, so it is skipped."""
    versions = machine.history()
    result = machine.feed(rollback_entry("g", "f" * 64, "typo", "node-1", 2000.0))
    assert machine.checks == 1, "the store was checked before calling the refusal the entry's"
    assert machine.state.rejected_entries == 1 and not result.written
    assert machine.store.applied(L.LEDGER) == machine.index
    assert machine.store.head("g").version == versions[-1]


def test_a_malformed_entry_is_skipped_without_a_store_check(machine: Machine) -> None:
    machine.history()
    result = machine.feed(b"\x93\x01\x02")  # msgpack, but not an entry map
    assert machine.checks == 0 and machine.state.rejected_entries == 1 and not result.written
    assert machine.store.applied(L.LEDGER) == machine.index


def test_a_store_error_is_local_without_a_check(machine: Machine) -> None:
    versions = machine.history()
    with sqlite3.connect(machine.path) as db:  # the registration no longer gives its version
        db.execute(
            "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), 'return 1', "
            "'return 9') AS BLOB) WHERE rowid = 1"
        )
    machine.state._live.clear()  # as after a restart: the lineage is read from the store
    with pytest.raises(LocalDamage, match="failed on this node alone"):
        machine.feed(rollback_entry("g", versions[0], "regression", "node-1", 2000.0))
    assert machine.checks == 0 and machine.state.rejected_entries == 0


# ---- three real nodes in this process: the damaged one halts, the others go on -------------


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[list[SwarmNode]]:
    with in_process_swarm(tmp_path, TINY) as nodes:
        yield nodes


def test_the_damaged_node_halts_with_the_repair_and_the_others_apply(
    swarm: list[SwarmNode],
) -> None:
    _, tree = load_genome(TINY)
    first = swarm[0]
    first.propose(register_entry("tiny", tree["genome.toml"], tree, 1.0, first.id, time.time()))
    wins = []
    edits = [
        ('"""How many of ``words`` are common words."""', '"""Count the common words."""'),
        ('"""Word counting, written plainly."""', '"""Word counting."""'),
    ]
    heads = lambda: {n.store.head("tiny").version for n in swarm}  # noqa: E731
    for cycle, (old, new) in enumerate(edits, 1):
        child, win = candidate(tree, old, new)
        first.propose(cycle_entry("tiny", first.id, cycle, 3, [], [], win, time.time()))
        wait(lambda: heads() == {win.version}, what="the adoption on every node")  # noqa: B023
        tree = child
        wins.append(win)
    victim = swarm[2]
    wreck_adoption(sqlite_path(victim.store.url), wins[0].version)
    victim.state._live.clear()  # it reads history from its store, as after a restart

    reply = first.admin.handle(
        "admin",
        {"op": "rollback", "genome": "tiny", "to": wins[0].version, "reason": "test"},
    )
    assert reply["ok"], reply
    wait(lambda: victim.halted is not None, what="the damaged node to halt")
    wait(
        lambda: all(n.store.head("tiny").version == wins[0].version for n in swarm[:2]),
        what="the healthy nodes to roll back",
    )
    halted = str(victim.halted)
    assert "not skipped" in halted and "failed on this node alone" in halted
    assert f"tars node repair --config {victim.cluster.path} --id {victim.id}" in halted
    assert victim.status()["halted"] == halted
    assert victim.status()["counters"]["skipped_entries"] == 0
    assert victim.store.head("tiny").version == wins[-1].version, "it applied nothing around it"
