"""Catch-up: how fast a lagging node turns committed ledger entries into store events.

A node that was down, or joins with an empty store, re-applies the ledger through
``LedgerState.apply`` (a run of entries per transaction, with the run's last Raft index).  The ledger here
is what a three-node swarm writes: per cycle a ``cycle`` entry (two evaluations, the
proposal, the proposer's vote, the cycle) and a peer's ``vote`` that adopts it.

A node behind a *compacted* log catches up by state transfer instead
(``consensus.transfer``): it fetches the stored events from a peer.  The bench measures
that too, in the same run: the store built by replaying the ledger is the source; an
empty store on its own ``LedgerState`` fetches it with ``transfer.fetch`` through two real
``Transport``s on 127.0.0.1 (CurveZMQ), timed end to end (``begin``, every chunk request,
the checked import in one transaction).  The connection is opened by one request before
the clock starts, as a running node's would be.  For the ratio, the same rows exported
with ``GenomeStore.export_events`` are inserted straight through eventsourcing's recorder
(``insert_events`` of ``StoredEvent``s and the tracking record, one transaction, no checks,
no transport) into a third empty store.  The machine is noisy, so the three run
``--rounds`` times, interleaved (replay, transfer, raw in each round, every one into a
fresh store; round 1's replay builds the source); ratios are taken per round and medians
reported.  The transferred store's chain (and the raw copy's) must equal the source's,
or the bench fails.

    python bench/bench_catchup.py [--cycles 1500] [--rounds 3]

Prints JSON: events/s and entries/s of the apply (median of the rounds), and for scale the same number of events
appended straight through ``GenomeStore.record_cycle`` (no ledger) in the same run; events/s
and MB/s (state bytes, 10^6) of the transfer, its ratio to the replay and to the raw insert.
Goal: ≥ 5,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventsourcing.persistence import StoredEvent, Tracking  # noqa: E402

from consensus import ledger as L  # noqa: E402
from consensus import transfer  # noqa: E402
from events.records import Adoption, CandidateRecord  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402
from runtime.keys import generate_keypair  # noqa: E402
from runtime.testing import free_port  # noqa: E402
from runtime.transport import Peer, Transport  # noqa: E402

MEMBERS = ["node-1", "node-2", "node-3"]
#: Entries a catching-up node applies per transaction (node.APPLY_BATCH).
BATCH = 256
SOURCE, RECEIVER = "node-1", "node-2"


def tree_at(step: int) -> dict[str, str]:
    body = "".join(
        f"def f{i}():\n    return {i if i != step % 40 else step}\n\n\n" for i in range(40)
    )
    return {"genome.toml": '[genome]\nname = "g"\n', "core.py": body}


def adoption(
    tree: dict[str, str], child: dict[str, str], patch: str, evidence: dict[str, Any]
) -> Adoption:
    """The winner of one cycle, the same in the ledger's entries and the direct writes."""
    return Adoption(
        version_id(child),
        version_id(tree),
        patch,
        "memoize",
        "hot",
        1.0,
        0.9,
        1.1,
        1.05,
        1.15,
        evidence,
    )


def build(cycles: int) -> list[bytes]:
    tree = tree_at(0)
    entries = [L.register_entry("g", tree["genome.toml"], tree, 1.0, "node-1", 1000.0)]
    for cycle in range(1, cycles + 1):
        child = tree_at(cycle)
        patch = make_patch(tree, child)
        win = adoption(tree, child, patch, {"n": cycle})
        loser = CandidateRecord(
            f"c{cycle}",
            version_id(tree),
            patch,
            "join_concat",
            "concat",
            "reject",
            ["no gain"],
            1.0,
            0.9,
            1.1,
            True,
        )
        winner = CandidateRecord(
            win.version,
            version_id(tree),
            patch,
            "memoize",
            "hot",
            "adopt",
            [],
            1.1,
            1.05,
            1.15,
            True,
        )
        entries.append(
            L.cycle_entry("g", "node-1", cycle, 7, [loser, winner], [], win, 1000.0 + cycle)
        )
        pid = L.proposal_id("g", "node-1", cycle, win.version)
        entries.append(
            L.vote_entry("g", pid, win.version, "node-2", True, "tests pass", 1000.5 + cycle)
        )
        tree = child
    return entries


def replay(url: str, entries: list[bytes]) -> tuple[GenomeStore, L.LedgerState, float]:
    """Apply the ledger to a fresh store as a catching-up node does; the store stays open."""
    store = GenomeStore.open(url)
    try:
        state = L.LedgerState(store, MEMBERS)
        started = time.perf_counter()
        numbered = list(enumerate(entries, 1))
        for at in range(0, len(numbered), BATCH):  # what a node's applier drains at a time
            state.apply_batch(numbered[at : at + BATCH])
        return store, state, time.perf_counter() - started
    except BaseException:
        store.close()
        raise


def transfer_round(
    transport: Transport, url: str, source: GenomeStore, index: int
) -> dict[str, Any]:
    """One state transfer into a fresh store at ``url``, timed end to end, then checked."""
    with GenomeStore.open(url) as store:
        state = L.LedgerState(store, MEMBERS)
        importing = state.import_state
        spent = [0.0]

        def timed_import(*args: Any, **kwargs: Any) -> int:  # the checked import's share
            t0 = time.perf_counter()
            try:
                return importing(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        state.import_state = timed_import  # type: ignore[method-assign]
        started = time.perf_counter()
        got = transfer.fetch(transport, state, SOURCE, index)
        seconds = time.perf_counter() - started
        if got is None:
            raise SystemExit(f"state transfer returned None: {SOURCE} has not applied {index}?")
        check_copy("transfer", store, source, index)
        if state.applied_index != index or got.index != index:
            raise SystemExit(
                f"transfer: applied index {state.applied_index} / {got.index}, expected {index}"
            )
        return {
            "events": got.events,
            "bytes": got.size,
            "seconds": seconds,
            "import_seconds": spent[0],
        }


def raw_round(url: str, source: GenomeStore, index: int) -> dict[str, Any]:
    """The library underneath: the same rows exported, then inserted with no checks."""
    with GenomeStore.open(url) as store:
        started = time.perf_counter()
        rows: list[tuple[str, int, str, bytes]] = []
        for lineage, upto in sorted(source.positions().items()):
            after = 0
            while after < upto:  # in the transfer's chunks, as its server reads them
                chunk = source.export_events(lineage, after, upto, transfer.CHUNK_BYTES)
                rows.extend((lineage, position, topic, raw) for position, topic, raw in chunk)
                after = chunk[-1][0]
        exported = time.perf_counter()
        stored = [
            StoredEvent(
                originator_id=UUID(lineage), originator_version=position, topic=topic, state=raw
            )
            for lineage, position, topic, raw in rows
        ]
        recorder = store._app.recorder  # noqa: SLF001  (the raw baseline on purpose)
        recorder.insert_events(stored, tracking=Tracking(L.LEDGER, index))  # type: ignore[call-arg]
        done = time.perf_counter()
        check_copy("raw insert", store, source, index)
        return {
            "events": len(rows),
            "bytes": sum(len(row[3]) for row in rows),
            "seconds": done - started,
            "export_seconds": exported - started,
            "insert_seconds": done - exported,
        }


def check_copy(what: str, copy: GenomeStore, source: GenomeStore, index: int) -> None:
    """Fail loudly unless ``copy`` holds the source's lineages, chain and applied index."""
    mine, theirs = copy.chain("g"), source.chain("g")
    if mine != theirs:
        raise SystemExit(f"{what}: chain('g') differs from the source's: {mine} != {theirs}")
    if copy.positions() != source.positions():
        raise SystemExit(f"{what}: positions differ: {copy.positions()} != {source.positions()}")
    if copy.applied(L.LEDGER) != index:
        raise SystemExit(f"{what}: applied index {copy.applied(L.LEDGER)}, expected {index}")


def rounds_of(
    tmp: str, source_state: L.LedgerState, entries: list[bytes], rounds: int
) -> dict[str, Any]:
    """Replay, transfer and raw rounds, interleaved; ``source_state`` is round 1's replay."""
    source, index = source_state.store, source_state.applied_index
    source_port, receiver_port = free_port(), free_port()
    source_keys, receiver_keys = generate_keypair(), generate_keypair()
    source_peer = Peer(SOURCE, f"tcp://127.0.0.1:{source_port}", source_keys[0])
    receiver_peer = Peer(RECEIVER, f"tcp://127.0.0.1:{receiver_port}", receiver_keys[0])
    server = Transport(SOURCE, source_peer.endpoint, *source_keys, [receiver_peer])
    client = Transport(RECEIVER, receiver_peer.endpoint, *receiver_keys, [source_peer])
    server.serve(transfer.CHANNEL, transfer.serve(source_state))
    server.serve("ping", lambda sender, body: body, inline=True)
    replayed: list[float] = []
    fetched: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    try:
        server.start()
        client.start()
        client.request(SOURCE, "ping", b"", timeout=30)  # connect and handshake off the clock
        for n in range(rounds):
            if n:  # round 1's replay is the one that built the source
                store, state, seconds = replay(f"sqlite:///{tmp}/replay-{n}.db", entries)
                with store:
                    check_copy("replay", store, source, index)
                replayed.append(seconds)
            fetched.append(
                transfer_round(client, f"sqlite:///{tmp}/transfer-{n}.db", source, index)
            )
            raw.append(raw_round(f"sqlite:///{tmp}/raw-{n}.db", source, index))
    finally:
        client.stop()
        server.stop()
    if {r["events"] for r in fetched + raw} != {fetched[0]["events"]}:
        raise SystemExit(f"rounds moved different numbers of events: {fetched} {raw}")
    return {"replay_seconds": replayed, "transfer": fetched, "raw": raw}


def median(rounds: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=1500)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="replays, state transfers and raw inserts, interleaved",
    )
    args = parser.parse_args()
    if args.cycles < 1 or args.rounds < 1:
        parser.error("--cycles and --rounds must be at least 1")
    entries = build(args.cycles)
    with tempfile.TemporaryDirectory() as tmp:
        store, state, ledger_seconds = replay(f"sqlite:///{tmp}/ledger.db", entries)
        with store:
            events = sum(1 for _ in store.log())
            head = store.head("g")
            assert head.versions_count == args.cycles + 1, head.versions_count
            redelivered_started = time.perf_counter()
            for index, data in enumerate(entries, 1):
                state.apply(index, data)  # a restart re-delivers everything: all skipped
            redelivery_seconds = time.perf_counter() - redelivered_started
            moved = rounds_of(tmp, state, entries, args.rounds)
        with GenomeStore.open(f"sqlite:///{tmp}/direct.db") as store:
            tree = tree_at(0)
            store.register("g", tree["genome.toml"], tree, 1.0, "node-1")
            started = time.perf_counter()
            for cycle in range(1, args.cycles + 1):
                child = tree_at(cycle)
                patch = make_patch(tree, child)
                win = adoption(tree, child, patch, {})
                store.record_cycle("g", "node-1", evaluated=[], adopted=win, cycle=cycle, seed=7)
                tree = child
            direct_seconds = time.perf_counter() - started
            direct_events = sum(1 for _ in store.log()) - 1
    fetched, raw = moved["transfer"], moved["raw"]
    replay_s = [ledger_seconds, *moved["replay_seconds"]]
    moved_events, moved_bytes = fetched[0]["events"], fetched[0]["bytes"]
    # per round: events/s of the transfer over that of the replay, and of the raw insert
    vs_replay = [replayed / r["seconds"] for replayed, r in zip(replay_s, fetched, strict=True)]
    vs_raw = [r["seconds"] / t["seconds"] for r, t in zip(raw, fetched, strict=True)]
    catchup_s, transfer_s, raw_s = (
        statistics.median(replay_s),
        median(fetched, "seconds"),
        median(raw, "seconds"),
    )
    print(
        json.dumps(
            {
                "entries": len(entries),
                "events": events,
                "rounds": args.rounds,
                "catchup_events_per_s": round(events / catchup_s),
                "catchup_entries_per_s": round(len(entries) / catchup_s),
                "catchup_seconds_per_round": [round(x, 3) for x in replay_s],
                "redelivery_skipped_entries_per_s": round(len(entries) / redelivery_seconds),
                "direct_record_cycle_events_per_s": round(direct_events / direct_seconds),
                "transfer": {
                    "events": moved_events,
                    "state_mb": round(moved_bytes / 1e6, 2),
                    "events_per_s": round(moved_events / transfer_s),
                    "mb_per_s": round(moved_bytes / 1e6 / transfer_s, 2),
                    "seconds_per_round": [round(r["seconds"], 3) for r in fetched],
                    "checked_import_share": round(
                        median(fetched, "import_seconds") / transfer_s, 2
                    ),
                    "vs_replay": round(statistics.median(vs_replay), 2),
                    "vs_replay_per_round": [round(x, 2) for x in vs_replay],
                    "raw_export_insert_events_per_s": round(moved_events / raw_s),
                    "raw_export_insert_mb_per_s": round(moved_bytes / 1e6 / raw_s, 2),
                    "raw_insert_only_events_per_s": round(
                        moved_events / median(raw, "insert_seconds")
                    ),
                    "raw_seconds_per_round": [round(r["seconds"], 3) for r in raw],
                    "vs_raw": round(statistics.median(vs_raw), 2),
                    "vs_raw_per_round": [round(x, 2) for x in vs_raw],
                    "chain_equal": True,
                },
                "goal_events_per_s": 5000,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
