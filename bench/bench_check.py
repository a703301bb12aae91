"""A node's start-up check of its store (``GenomeStore.check``) against the raw work underneath.

A store of 100,000 events (one genome, snapshots every 100), as ``bench_store.py`` builds
it, is checked as a node's start checks it:

1. the first check (no mark yet): SQLite's quick_check and the whole hash chain walked;
2. every later start: quick_check, the digest of the events up to the mark, the chain
   walked from the mark (nothing new here, as after a restart);
3. a start after 1,000 new events: the same, with those events walked.

For the ratio, in the same run: ``PRAGMA quick_check`` and one SELECT of every event's
state hashed with BLAKE2b through raw ``sqlite3`` (the least a check that reads every
byte can do), and ``tars log verify``'s full walk.  Goal: the check of a marked store of
100,000 events ≤ 1 s.

    python bench/bench_check.py [--events 100000] [--runs 5]

Prints JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_store import TREE, record  # noqa: E402

from events.domain import Lineage  # noqa: E402
from events.store import GenomeStore  # noqa: E402


def build(path: Path, events: int) -> None:
    store = GenomeStore.open(f"sqlite:///{path}")
    lineage = Lineage.register("g", "", TREE, 1.0, "n1")
    records = [record(TREE, i) for i in range(100)]
    for i in range(1, events):
        lineage.evaluate(records[i % 100], "n1")
        if i % 5000 == 0:
            store._app.record(lineage)
    store._app.record(lineage)
    store.close()


def timed(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def raw_floor(path: Path) -> float:
    """quick_check plus every state read and hashed, in raw sqlite3."""
    started = time.perf_counter()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    digest = hashlib.blake2b(digest_size=32)
    for (state,) in db.execute("SELECT state FROM stored_events ORDER BY rowid"):
        digest.update(state)
    db.close()
    return time.perf_counter() - started


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as tmp:
        path, mark = Path(tmp) / "store.db", Path(tmp) / "store.verified"
        build(path, args.events)
        with GenomeStore.open(f"sqlite:///{path}") as store:
            first, report = timed(lambda: store.check(mark))
            marked, floors, fulls = [], [], []
            for _ in range(args.runs):  # interleaved round by round
                marked.append(timed(lambda: store.check(mark))[0])
                floors.append(raw_floor(path))
                fulls.append(timed(store.verify)[0])
            lineage = store.load("g")
            for i in range(1000):
                lineage.evaluate(record(TREE, i), "n1")
            store._app.record(lineage)
            after, later = timed(lambda: store.check(mark))
        result = {
            "events": report.events,
            "first_check_s (no mark: the whole chain walked)": round(first, 3),
            "check_s (marked store, as at every later start)": spread(marked),
            "check_after_1000_new_events_s": round(after, 3),
            "walked_after_1000_new_events": later.walked,
            "raw_floor_s (quick_check + every state hashed, raw sqlite3)": spread(floors),
            "verify_s (tars log verify, the full walk)": spread(fulls),
            "check_over_raw_floor": round(statistics.median(marked) / statistics.median(floors), 2),
            "goals": {"check_s of a marked store of 100,000 events": "<= 1.0"},
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
