"""Log compaction: how long one compaction pauses the Raft driver, against the disk work it does.

A single-node engine (`RaftEngine.on_snapshot(compact_after, keep)`) takes 1 KB entries
from 8 proposing threads until it has compacted a few times; every compaction is timed
inside the driver (`_maybe_compact`).  For the ratio, the same disk work is done raw in
the same run: the snapshot manifest written with tmp + fsync + rename, and the journal's
kept entries rewritten with `CrcJournal.deleteEntriesTo` on a copy, without the engine.
The pause matters because the driver sends heartbeats: it must stay well under one.

    python bench/bench_compaction.py [--entries 12000 --after 4000 --keep 400]

Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus import snapshot  # noqa: E402
from consensus.engine import RaftEngine  # noqa: E402
from consensus.interface import Committed, Snapshot  # noqa: E402
from consensus.journal import CrcJournal  # noqa: E402
from consensus.testing import LocalHub  # noqa: E402


class App:
    """Applies entries in memory; what a store would report as durably applied."""

    def __init__(self) -> None:
        self.applied = 0

    def on_commit(self, committed: Committed) -> None:
        self.applied = committed.index

    def applied_index(self) -> int:
        return self.applied

    def snapshot_state(self, index: int) -> bytes:
        return b"members"

    def install_snapshot(self, snap: Snapshot) -> None:
        """Never needed: one node holds everything."""


def run(entries: int, after: int, keep: int, root: Path) -> dict[str, Any]:
    app = App()
    engine = RaftEngine("a", LocalHub().transport("a"), ["a"], root / "a.journal")
    engine.on_commit(app.on_commit)
    engine.on_snapshot(app, compact_after=after, keep=keep)
    pauses: list[float] = []
    original = engine._maybe_compact

    def timed(core: Any) -> None:
        before = engine._compactions
        started = time.perf_counter()
        original(core)
        if engine._compactions > before:
            pauses.append(time.perf_counter() - started)

    engine._maybe_compact = timed  # type: ignore[method-assign]
    engine.start()
    payload = b"x" * 1000
    counter = iter(range(entries))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            engine.propose(payload + str(n).encode())

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    engine.stop()
    return {"pauses": pauses, "seconds": elapsed}


def raw(root: Path, after: int, keep: int) -> list[float]:
    """The disk work of one compaction without the engine, on a copy of a long journal."""
    times = []
    for trial in range(3):
        path = root / f"raw-{trial}.journal"
        with CrcJournal(path) as journal:
            for i in range(1, after + 2):
                journal.add(b"T" + b"x" * 1000, i, 1)
            journal.sync()
            cut = after + 1 - keep
            started = time.perf_counter()
            first = journal[0][1]
            data = snapshot.encode(
                [journal[cut - 1 - first], journal[cut - first]], ["a"], b"members"
            )
            snapshot.write(root / f"raw-{trial}.snap", data)
            journal.deleteEntriesTo(cut - 1 - first)
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=12000)
    parser.add_argument("--after", type=int, default=4000)
    parser.add_argument("--keep", type=int, default=400)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tars-bench-compaction-"))
    try:
        ours = run(args.entries, args.after, args.keep, root)
        base = raw(root, args.after, args.keep)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    pause = statistics.median(ours["pauses"]) if ours["pauses"] else None
    disk = statistics.median(base)
    print(
        json.dumps(
            {
                "entries": args.entries,
                "compact_after": args.after,
                "keep": args.keep,
                "entry_bytes": 1000,
                "compactions": len(ours["pauses"]),
                "pause_ms_median": round(pause * 1000, 2) if pause is not None else None,
                "pause_ms_max": round(max(ours["pauses"]) * 1000, 2) if ours["pauses"] else None,
                "raw_disk_work_ms_median": round(disk * 1000, 2),
                "ratio_pause_to_raw": round(pause / disk, 2) if pause is not None else None,
                "commits_per_s_8_clients": round(args.entries / ours["seconds"], 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
