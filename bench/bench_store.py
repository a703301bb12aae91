"""Benchmark of the genome store against its anchors; prints one JSON object.

1. appends through ``GenomeStore.record_cycle`` with 1, 5 (a cycle's worth) and 100
   events per call, against raw ``sqlite3`` doing the same in the same run: the same
   table (the store's own DDL), the same durability (WAL + synchronous=FULL), the same
   rows, the same number of rows per transaction; interleaved round by round;
2. the msgpack transcoder against eventsourcing's ``JSONTranscoder`` (encode + decode
   of the same event states);
3. the head of a genome after 10,000 adoptions (cold open, snapshots every 100);
4. ``tars log ls`` over 100,000 events, run as a command (start-up included): the
   default (the newest 50) and ``--all`` (every event), and the store's own iterations
   (``log()``, ``log_rows()``) over the same events.

Usage: ``python bench/bench_store.py [--quick] [--only log]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def _raw_sqlite(path: Path, ddl: str) -> sqlite3.Connection:
    """A plain sqlite3 connection set up as the store's: WAL, synchronous=FULL, same table."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute(ddl)
    return raw


def bench_appends(
    root: Path, calls: int, rounds: int, batches: tuple[int, ...] = (1, 5, 100)
) -> dict[str, Any]:
    """Store appends against raw SQLite inserts doing the same, interleaved round by round.

    Like with like: the raw side writes into a table made with the store's own DDL (read
    back from the store's file), on a connection with the same WAL + synchronous=FULL,
    rows of the very bytes the store wrote, ``batch`` rows per transaction exactly as the
    store commits ``batch`` events per ``record_cycle`` call, with ``executemany`` (the
    fastest plain way).  Each round runs both sides back to back, in alternating order,
    so a noisy neighbour hits both; the ratio is taken per round.  What the store does
    on top: the domain rules, the hash chain, the mapper and transcoder, eventsourcing's
    transaction and connection pool, and a snapshot every 100 events.
    """
    store = GenomeStore.open(f"sqlite:///{root / 'append.db'}")
    store.register("g", "", TREE, None, "n1")
    records = [record(TREE, i) for i in range(100)]
    store.record_cycle("g", "n1", evaluated=records[:1])
    blob = store._app.recorder.select_events(lineage_id("g"), desc=True, limit=1)[0].state
    with sqlite3.connect(root / "append.db") as peek:
        ddl = peek.execute("SELECT sql FROM sqlite_master WHERE name='stored_events'").fetchone()[0]
    raw = _raw_sqlite(root / "raw.db", ddl)
    topic = "events.domain:Lineage.CandidateEvaluated"
    version = 0

    def run_store(batch: int, writes: int) -> float:
        started = time.perf_counter()
        for i in range(writes):
            store.record_cycle(
                "g", "n1", evaluated=records[:batch] if batch > 1 else [records[i % 100]]
            )
        return rate(writes * batch, time.perf_counter() - started)

    def run_raw(batch: int, writes: int) -> float:
        nonlocal version
        rows = [("a" * 32, version + k + 1, topic, blob) for k in range(writes * batch)]
        version += writes * batch
        started = time.perf_counter()
        for i in range(writes):
            raw.execute("BEGIN")
            raw.executemany(
                "INSERT INTO stored_events VALUES (?,?,?,?)", rows[i * batch : (i + 1) * batch]
            )
            raw.execute("COMMIT")
        return rate(writes * batch, time.perf_counter() - started)

    out: dict[str, Any] = {"state_bytes": len(blob), "rounds": rounds}
    for batch in batches:
        writes = max(1, calls // batch)  # transactions per side per round
        store_rates: list[float] = []
        raw_rates: list[float] = []
        for n in range(rounds):
            if n % 2 == 0:
                store_rates.append(run_store(batch, writes))
                raw_rates.append(run_raw(batch, writes))
            else:
                raw_rates.append(run_raw(batch, writes))
                store_rates.append(run_store(batch, writes))
        ratios = [r / s for r, s in zip(raw_rates, store_rates, strict=True)]
        out[f"{batch}_per_txn"] = {
            "store_events_per_s_median": round(statistics.median(store_rates), 1),
            "raw_sqlite_rows_per_s_median": round(statistics.median(raw_rates), 1),
            "store_slower_by_median": round(statistics.median(ratios), 2),
            "store_slower_by_range": [round(min(ratios), 2), round(max(ratios), 2)],
        }
    store.close()
    raw.close()
    return out


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


def _tars_command() -> list[str]:
    """How to run the installed ``tars`` command (the console script beside this Python)."""
    script = Path(sys.executable).with_name("tars")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def _command_runs(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` runs of a command, output to /dev/null."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 3),
        "range": [round(min(values), 3), round(max(values), 3)],
    }


def bench_log(root: Path, events: int, runs: int) -> dict[str, Any]:
    """``tars log ls`` over ``events`` events: the command as a user runs it, and its parts.

    The goal is about the command as a user runs it (``tars log ls --store FILE >
    /dev/null``: interpreter start, imports, opening the store, the newest 50 events,
    the note on stderr); ``--all`` (every one of the events) is measured beside it, and
    so are the store's own iterations and the command's function called in-process, to
    say where the time goes.
    """
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
    entries, rows = [], []
    for _ in range(3):
        started = time.perf_counter()
        count = sum(1 for _ in store.log())
        entries.append(time.perf_counter() - started)
        started = time.perf_counter()
        listed = sum(1 for _ in store.log_rows())
        rows.append(time.perf_counter() - started)
    store.close()
    assert count == listed == events
    import contextlib
    import os

    from cli.log import ls

    in_process, in_process_all = [], []
    with (
        open(os.devnull, "w") as sink,
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        for _ in range(3):
            started = time.perf_counter()
            ls(store=str(path), genome=None, limit=None, every=False)
            in_process.append(time.perf_counter() - started)
            started = time.perf_counter()
            ls(store=str(path), genome=None, limit=None, every=True)
            in_process_all.append(time.perf_counter() - started)
    tars = _tars_command()
    walls, cpus = _command_runs([*tars, "log", "ls", "--store", str(path)], runs)
    all_walls, all_cpus = _command_runs([*tars, "log", "ls", "--store", str(path), "--all"], runs)
    start_walls, start_cpus = _command_runs(
        [*tars, "log", "ls", "--store", str(path), "--limit", "1"], runs
    )
    return {
        "events": count,
        "build_s": round(build_s, 2),
        "tars_log_ls_wall_s (the newest 50, the default)": _spread(walls),
        "tars_log_ls_cpu_s": _spread(cpus),
        "tars_log_ls_all_wall_s (every event)": _spread(all_walls),
        "tars_log_ls_all_cpu_s": _spread(all_cpus),
        "startup_only_wall_s (tars log ls --limit 1)": _spread(start_walls),
        "startup_only_cpu_s": _spread(start_cpus),
        "in_process_ls_s": _spread(in_process),
        "in_process_ls_all_s": _spread(in_process_all),
        "store_log_rows_s": _spread(rows),
        "store_log_entries_s": _spread(entries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (a few seconds)")
    parser.add_argument(
        "--only",
        choices=["appends", "transcoder", "head", "log"],
        action="append",
        help="run only these parts (repeatable)",
    )
    args = parser.parse_args()
    quick = args.quick
    parts = set(args.only or ["appends", "transcoder", "head", "log"])
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as tmp:
        root = Path(tmp)
        result: dict[str, Any] = {"quick": quick}
        if "appends" in parts:
            result["appends"] = bench_appends(root, 100 if quick else 200, 5 if quick else 9)
        if "transcoder" in parts:
            result["transcoder"] = bench_transcoders(200 if quick else 2000, 3 if quick else 5)
        if "head" in parts:
            result["head"] = bench_head(root, (2000 if quick else 10_000) + 98)
        if "log" in parts:
            result["log"] = bench_log(root, 20_000 if quick else 100_000, 3 if quick else 5)
        result["goals"] = {
            "transcoder speed_ratio_json_over_msgpack": ">= 1.0",
            "head_cold_ms after 10,000 adoptions": "<= 100",
            "tars_log_ls_wall_s over 100,000 events (default listing)": "<= 1.0",
            "appends store_slower_by (1 event per transaction, same durability)": "<= 2.0",
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
