"""Benchmark of the genome store against its anchors; prints one JSON object.

1. appends through ``GenomeStore.record_cycle`` (one CandidateEvaluated per call, and
   100 per call) against raw ``sqlite3`` inserts of rows of the same size at the same
   durability (WAL + synchronous=FULL), one row and 100 rows per transaction;
2. the msgpack transcoder against eventsourcing's ``JSONTranscoder`` (encode + decode
   of the same event states);
3. the head of a genome after 10,000 adoptions (cold open, snapshots every 100);
4. ``GenomeStore.log()`` over 100,000 events.

Usage: ``python bench/bench_store.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex  # noqa: E402

from events.domain import Lineage, lineage_id  # noqa: E402
from events.records import Adoption, CandidateRecord  # noqa: E402
from events.store import GenomeStore  # noqa: E402
from events.transcoder import MsgpackTranscoder  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import version_id  # noqa: E402

TREE = {
    "pkg/core.py": "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(40))
    + "LIMIT = 0\n"
}


def evolved(tree: dict[str, str], i: int) -> dict[str, str]:
    text = tree["pkg/core.py"]
    head, _, _ = text.rpartition("LIMIT = ")
    return {"pkg/core.py": f"{head}LIMIT = {i}\n"}


def record(tree: dict[str, str], i: int) -> CandidateRecord:
    new = evolved(tree, i)
    return CandidateRecord(
        version_id(new),
        version_id(tree),
        make_patch(tree, new),
        "tune",
        "constant",
        "reject",
        ["gain below threshold"],
        1.01,
        0.97,
        1.04,
        True,
    )


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def bench_appends(root: Path, calls: int, batches: int) -> dict[str, Any]:
    store = GenomeStore.open(f"sqlite:///{root / 'append.db'}")
    store.register("g", "", TREE, None, "n1")
    records = [record(TREE, i) for i in range(100)]
    started = time.perf_counter()
    for i in range(calls):
        store.record_cycle("g", "n1", evaluated=[records[i % 100]])
    single = rate(calls, time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(batches):
        store.record_cycle("g", "n1", evaluated=records)
    batched = rate(batches * 100, time.perf_counter() - started)
    size = len(store._app.recorder.select_events(lineage_id("g"), gt=1, limit=1)[0].state)
    store.close()

    raw = sqlite3.connect(root / "raw.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute(
        "CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, state BLOB, "
        "PRIMARY KEY (originator_id, originator_version))"
    )
    blob = b"x" * size
    topic = "events.domain:Lineage.CandidateEvaluated"
    version = 0
    started = time.perf_counter()
    for _ in range(calls):
        version += 1
        raw.execute("BEGIN")
        raw.execute("INSERT INTO stored_events VALUES (?,?,?,?)", ("a" * 32, version, topic, blob))
        raw.execute("COMMIT")
    raw_single = rate(calls, time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(batches):
        raw.execute("BEGIN")
        for _ in range(100):
            version += 1
            raw.execute(
                "INSERT INTO stored_events VALUES (?,?,?,?)", ("a" * 32, version, topic, blob)
            )
        raw.execute("COMMIT")
    raw_batched = rate(batches * 100, time.perf_counter() - started)
    raw.close()
    return {
        "state_bytes": size,
        "store_events_per_s_1_per_call": single,
        "store_events_per_s_100_per_call": batched,
        "raw_sqlite_rows_per_s_1_per_txn": raw_single,
        "raw_sqlite_rows_per_s_100_per_txn": raw_batched,
        "ratio_store_vs_raw_1": round(single / raw_single, 3),
        "ratio_store_vs_raw_100": round(batched / raw_batched, 3),
    }


def bench_transcoders(count: int, repeats: int) -> dict[str, Any]:
    lineage = Lineage.register("g", "manifest", TREE, 1.0, "n1")
    tree = TREE
    for i in range(count):
        if i % 2:
            new = evolved(tree, i)
            lineage.adopt(
                Adoption(
                    version_id(new),
                    version_id(tree),
                    make_patch(tree, new),
                    "tune",
                    "constant",
                    1.0,
                    0.9,
                    1.1,
                    1.05,
                    1.2,
                    {"samples": [0.1, 0.2, 0.3]},
                ),
                "n1",
            )
            tree = new
        else:
            lineage.evaluate(record(tree, i + 10_000), "n1")
    states = [dict(vars(event)) for event in lineage.collect_events()]
    msgpack_t = MsgpackTranscoder()
    json_t = JSONTranscoder()
    json_t.register(UUIDAsHex())
    json_t.register(DatetimeAsISO())

    def run(transcoder: Any) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for state in states:
                transcoder.decode(transcoder.encode(state))
            best = min(best, time.perf_counter() - started)
        return best

    msgpack_s, json_s = run(msgpack_t), run(json_t)
    msgpack_bytes = sum(len(msgpack_t.encode(s)) for s in states)
    json_bytes = sum(len(json_t.encode(s)) for s in states)
    return {
        "states": len(states),
        "msgpack_us_per_state": round(msgpack_s / len(states) * 1e6, 2),
        "json_us_per_state": round(json_s / len(states) * 1e6, 2),
        "speed_ratio_json_over_msgpack": round(json_s / msgpack_s, 2),
        "size_ratio_msgpack_over_json": round(msgpack_bytes / json_bytes, 3),
    }


def build_adoptions(path: Path, adoptions: int) -> tuple[float, str]:
    """A lineage of ``adoptions`` one-line patches, saved 1000 events per transaction."""
    store = GenomeStore.open(f"sqlite:///{path}")
    lineage = Lineage.register("g", "", TREE, 1.0, "n1")
    tree = TREE
    started = time.perf_counter()
    middle = ""
    for i in range(1, adoptions + 1):
        new = evolved(tree, i)
        lineage.adopt(
            Adoption(
                version_id(new),
                version_id(tree),
                make_patch(tree, new),
                "tune",
                "constant",
                1.0,
                1.0 / (1 + i),
                1.01,
                1.0,
                1.02,
                {},
            ),
            "n1",
        )
        if i == adoptions // 2:
            middle = version_id(new)
        tree = new
        if i % 1000 == 0:
            store._app.record(lineage)
    store._app.record(lineage)
    store.close()
    return time.perf_counter() - started, middle


def bench_head(root: Path, adoptions: int) -> dict[str, Any]:
    path = root / "head.db"
    build_s, middle = build_adoptions(path, adoptions)
    colds, warms = [], []
    for _ in range(5):
        store = GenomeStore.open(f"sqlite:///{path}")
        started = time.perf_counter()
        head = store.head("g")
        colds.append(time.perf_counter() - started)
        started = time.perf_counter()
        store.head("g")
        warms.append(time.perf_counter() - started)
        store.close()
    assert head.versions_count == adoptions + 1 and version_id(head.tree) == head.version
    store = GenomeStore.open(f"sqlite:///{path}")
    started = time.perf_counter()
    store.materialise("g", middle)
    first_old = time.perf_counter() - started
    started = time.perf_counter()
    store.materialise("g", middle)
    again_old = time.perf_counter() - started
    started = time.perf_counter()
    report = store.verify()
    verify_s = time.perf_counter() - started
    store.close()
    return {
        "adoptions": adoptions,
        "events_past_last_snapshot": (adoptions + 1) % 100,
        "build_s": round(build_s, 2),
        "head_cold_ms_median": round(statistics.median(colds) * 1000, 2),
        "head_cold_ms_max": round(max(colds) * 1000, 2),
        "head_warm_ms_median": round(statistics.median(warms) * 1000, 2),
        "materialise_old_first_ms (builds version index)": round(first_old * 1000, 1),
        "materialise_old_again_ms": round(again_old * 1000, 2),
        "verify_s": round(verify_s, 2),
        "verify_events": report.events,
    }


def bench_log(root: Path, events: int) -> dict[str, Any]:
    path = root / "log.db"
    store = GenomeStore.open(f"sqlite:///{path}")
    lineage = Lineage.register("g", "", TREE, 1.0, "n1")
    records = [record(TREE, i) for i in range(100)]
    started = time.perf_counter()
    for i in range(1, events):
        lineage.evaluate(records[i % 100], "n1")
        if i % 5000 == 0:
            store._app.record(lineage)
    store._app.record(lineage)
    build_s = time.perf_counter() - started
    store.close()
    store = GenomeStore.open(f"sqlite:///{path}")
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        count = sum(1 for _ in store.log())
        runs.append(time.perf_counter() - started)
    store.close()
    assert count == events
    # `tars log ls` itself: the CLI command formatting one line per event, to /dev/null.
    import contextlib
    import os

    from cli.log import ls

    cli_runs = []
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for _ in range(3):
            started = time.perf_counter()
            ls(store=str(path), genome=None, limit=None)
            cli_runs.append(time.perf_counter() - started)
    return {
        "events": count,
        "build_s": round(build_s, 2),
        "log_s_best": round(min(runs), 3),
        "log_s_median": round(statistics.median(runs), 3),
        "cli_ls_s_median": round(statistics.median(cli_runs), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (a few seconds)")
    args = parser.parse_args()
    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as tmp:
        root = Path(tmp)
        result = {
            "quick": quick,
            "appends": bench_appends(root, 200 if quick else 1000, 10 if quick else 50),
            "transcoder": bench_transcoders(200 if quick else 2000, 3 if quick else 5),
            "head": bench_head(root, (2000 if quick else 10_000) + 98),
            "log": bench_log(root, 20_000 if quick else 100_000),
            "goals": {
                "transcoder speed_ratio_json_over_msgpack": ">= 1.0",
                "head_cold_ms after 10,000 adoptions": "<= 100",
                "log_s over 100,000 events": "<= 1.0",
            },
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
