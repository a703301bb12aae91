"""Catch-up: how fast a lagging node turns committed ledger entries into store events.

A node that was down, or joins with an empty store, re-applies the ledger through
``LedgerState.apply`` (a run of entries per transaction, with the run's last Raft index).  The ledger here
is what a three-node swarm writes: per cycle a ``cycle`` entry (two evaluations, the
proposal, the proposer's vote, the cycle) and a peer's ``vote`` that adopts it.

    python bench/bench_catchup.py [--cycles 1500]

Prints JSON: events/s and entries/s of the apply, and for scale the same number of events
appended straight through ``GenomeStore.record_cycle`` (no ledger) in the same run.
Goal: ≥ 5,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus import ledger as L  # noqa: E402
from events.records import Adoption, CandidateRecord  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402

MEMBERS = ["node-1", "node-2", "node-3"]
#: Entries a catching-up node applies per transaction (node.APPLY_BATCH).
BATCH = 256


def tree_at(step: int) -> dict[str, str]:
    body = "".join(f"def f{i}():\n    return {i if i != step % 40 else step}\n\n\n" for i in range(40))
    return {"genome.toml": '[genome]\nname = "g"\n', "core.py": body}


def build(cycles: int) -> list[bytes]:
    tree = tree_at(0)
    entries = [L.register_entry("g", tree["genome.toml"], tree, 1.0, "node-1", 1000.0)]
    for cycle in range(1, cycles + 1):
        child = tree_at(cycle)
        patch = make_patch(tree, child)
        win = Adoption(version_id(child), version_id(tree), patch, "memoize", "hot", 1.0, 0.9, 1.1, 1.05, 1.15, {"n": cycle})
        loser = CandidateRecord(f"c{cycle}", version_id(tree), patch, "join_concat", "concat", "reject", ["no gain"], 1.0, 0.9, 1.1, True)
        winner = CandidateRecord(win.version, version_id(tree), patch, "memoize", "hot", "adopt", [], 1.1, 1.05, 1.15, True)
        entries.append(L.cycle_entry("g", "node-1", cycle, 7, [loser, winner], [], win, 1000.0 + cycle))
        pid = L.proposal_id("g", "node-1", cycle, win.version)
        entries.append(L.vote_entry("g", pid, win.version, "node-2", True, "tests pass", 1000.5 + cycle))
        tree = child
    return entries


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=1500)
    args = parser.parse_args()
    entries = build(args.cycles)
    with tempfile.TemporaryDirectory() as tmp:
        with GenomeStore.open(f"sqlite:///{tmp}/ledger.db") as store:
            state = L.LedgerState(store, MEMBERS)
            started = time.perf_counter()
            numbered = list(enumerate(entries, 1))
            for at in range(0, len(numbered), BATCH):  # what a node's applier drains at a time
                state.apply_batch(numbered[at : at + BATCH])
            ledger_seconds = time.perf_counter() - started
            events = sum(1 for _ in store.log())
            head = store.head("g")
            assert head.versions_count == args.cycles + 1, head.versions_count
            redelivered_started = time.perf_counter()
            for index, data in enumerate(entries, 1):
                state.apply(index, data)  # a restart re-delivers everything: all skipped
            redelivery_seconds = time.perf_counter() - redelivered_started
        with GenomeStore.open(f"sqlite:///{tmp}/direct.db") as store:
            tree = tree_at(0)
            store.register("g", tree["genome.toml"], tree, 1.0, "node-1")
            started = time.perf_counter()
            for cycle in range(1, args.cycles + 1):
                child = tree_at(cycle)
                patch = make_patch(tree, child)
                win = Adoption(version_id(child), version_id(tree), patch, "memoize", "hot", 1.0, 0.9, 1.1, 1.05, 1.15, {})
                store.record_cycle("g", "node-1", evaluated=[], adopted=win, cycle=cycle, seed=7)
                tree = child
            direct_seconds = time.perf_counter() - started
            direct_events = sum(1 for _ in store.log()) - 1
    print(json.dumps({
        "entries": len(entries),
        "events": events,
        "catchup_events_per_s": round(events / ledger_seconds),
        "catchup_entries_per_s": round(len(entries) / ledger_seconds),
        "redelivery_skipped_entries_per_s": round(len(entries) / redelivery_seconds),
        "direct_record_cycle_events_per_s": round(direct_events / direct_seconds),
        "goal_events_per_s": 5000,
    }, indent=2))


if __name__ == "__main__":
    main()
