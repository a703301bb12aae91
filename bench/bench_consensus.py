"""Benchmark of consensus/ against the raw engine it wraps; prints one JSON object.

1. Durable commit latency (p50/p99, one client, 100-byte payloads proposed on the
   leader) and throughput (8 concurrent clients) of three in-process RaftEngines over
   the real ZeroMQ transport on 127.0.0.1 (the in-memory hub if runtime.transport is
   missing) with the fsync'ing CRC journal;
2. the same through plain pysyncobj 0.3.17 in the same run: SyncObj with its own TCP
   transport, batching off, its own FileJournal flushed (msync) after every entry, as in
   ANCHORS.md; the ratio of the two (goal: ours <= 1.5x the raw p50);
3. failover: stop the leader abruptly and time until the first new commit on the
   survivors (goal <= 1 s), over a few fresh clusters;
4. signed decisions (issue 9): the same durable commit with a real vote entry signed by
   its author (Ed25519) before it is proposed and decoded and verified (author, member,
   signature: ``authors.signature_problem``) once it is committed, both on the caller's
   path, so the figure is an upper bound (on a node the check runs on the applier's
   thread, off the commit path); its p50 against raw pysyncobj (goal <= 1.5x), and the
   raw cost of one sign and one verify.

Usage: ``python bench/bench_consensus.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pysyncobj.syncobj as pso_syncobj  # noqa: E402
from pysyncobj import SyncObj, SyncObjConf, replicated  # noqa: E402
from pysyncobj.journal import FileJournal  # noqa: E402

from consensus.engine import RaftEngine, RaftTimers  # noqa: E402
from consensus.testing import LocalHub  # noqa: E402
from evolution.errors import NotCommittedError  # noqa: E402
from runtime.testing import free_port, wait_until  # noqa: E402

try:
    from runtime import transport as zmq_transport
    from runtime.keys import generate_keypair
except ImportError:  # pragma: no cover
    zmq_transport = None  # type: ignore[assignment]


class Counter(logging.Handler):
    """Counts pysyncobj's "truncating already-applied log entries" reports, quietly."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "truncating already-applied" in record.getMessage():
            self.count += 1


TRUNCATIONS = Counter()
_pso_log = logging.getLogger("pysyncobj.syncobj")
_pso_log.addHandler(TRUNCATIONS)
_pso_log.propagate = False

IDS = ["a", "b", "c"]
PAYLOAD = b"x" * 100
TIMERS = RaftTimers()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(propose: Callable[[], Any], count: int, clients: int) -> dict[str, float]:
    for _ in range(50):  # warm-up
        propose()
    latencies: list[float] = []
    t0 = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        propose()
        latencies.append(time.perf_counter() - start)
    single = time.perf_counter() - t0

    per_client = max(1, count // clients)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(per_client):
                propose()
        except BaseException as exc:  # reported, never hidden
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t1 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    concurrent = time.perf_counter() - t1
    if errors:
        raise errors[0]
    return {
        "p50_ms": round(pct(latencies, 0.5) * 1e3, 3),
        "p99_ms": round(pct(latencies, 0.99) * 1e3, 3),
        "commits_per_s_1_client": round(count / single, 1),
        f"commits_per_s_{clients}_clients": round(per_client * clients / concurrent, 1),
    }


# ---- ours ---------------------------------------------------------------------------


class Swarm:
    def __init__(self, root: Path, kind: str) -> None:
        self.root, self.kind = root, kind
        self.hub = LocalHub()
        self.transports: dict[str, Any] = {}
        self.engines: dict[str, RaftEngine] = {}
        if kind == "zmq":
            keys = {n: generate_keypair() for n in IDS}
            ends = {n: f"tcp://127.0.0.1:{free_port()}" for n in IDS}
            for n in IDS:
                peers = [zmq_transport.Peer(p, ends[p], keys[p][0]) for p in IDS if p != n]
                self.transports[n] = zmq_transport.Transport(n, ends[n], *keys[n], peers)
        else:
            for n in IDS:
                self.transports[n] = self.hub.transport(n)
        for n in IDS:
            self.transports[n].start()
            self.engines[n] = RaftEngine(n, self.transports[n], IDS, root / f"{n}.journal", TIMERS)
            self.engines[n].start()

    def leader(self, among: list[str] | None = None) -> str:
        names = among or list(self.engines)

        def agreed() -> str | None:
            views = {self.engines[n].leader() for n in names}
            return views.pop() if len(views) == 1 and None not in views else None

        return str(
            wait_until(agreed, "a leader every engine agrees on", timeout=30.0, interval=0.002)
        )

    def kill(self, node_id: str) -> None:
        self.engines.pop(node_id).stop()
        self.transports.pop(node_id).stop()

    def close(self) -> None:
        for n in list(self.engines):
            self.kill(n)


@contextlib.contextmanager
def swarm(kind: str) -> Iterator[Swarm]:
    with tempfile.TemporaryDirectory(prefix="tars-bench-raft-") as tmp:
        s = Swarm(Path(tmp), kind)
        try:
            yield s
        finally:
            s.close()


def bench_ours(kind: str, count: int, clients: int) -> dict[str, Any]:
    with swarm(kind) as s:
        leader = s.engines[s.leader()]
        result = measure(lambda: leader.propose(PAYLOAD, timeout=10.0), count, clients)
        status = leader.status()
        result["fsyncs_on_leader"] = status["journal_syncs"]
        result["log_len"] = status["log_len"]
        result["resent_entries_skipped_by_followers"] = sum(
            e.status()["skipped_resent_entries"] for e in s.engines.values()
        )
        return result


def failover_once(kind: str) -> float:
    with swarm(kind) as s:
        old = s.leader()
        s.engines[old].propose(PAYLOAD)
        rest = [n for n in IDS if n != old]
        survivor = s.engines[rest[0]]
        t0 = time.perf_counter()
        s.kill(old)
        while True:
            try:
                survivor.propose(PAYLOAD, timeout=0.25)
                return time.perf_counter() - t0
            except NotCommittedError:
                if time.perf_counter() - t0 > 30:
                    raise


def bench_signed(kind: str, count: int, clients: int) -> dict[str, Any]:
    """Durable commit with signing before the proposal and verification after the commit."""
    from consensus.authors import signature_problem
    from consensus.entries import decode, vote_entry
    from consensus.signing import Keyring, Signer, split
    from runtime.keys import new_sign_secret

    signer = Signer("b", new_sign_secret())
    keys = Keyring({"b": signer.public})
    pid, version = "0123456789abcdef", "f" * 64

    def commit() -> None:
        data = vote_entry("g", pid, version, "b", True, "tests pass", time.time(), signer=signer)
        leader.propose(data, timeout=10.0)
        problem = signature_problem(decode(data), data, keys, IDS)
        assert problem is None, problem

    with swarm(kind) as s:
        leader = s.engines[s.leader()]
        result = measure(commit, count, clients)
    data = vote_entry("g", pid, version, "b", True, "tests pass", 1.0, signer=signer)
    message = (split(data) or (data, b""))[0]  # exactly the bytes that were signed
    loops = 2000
    t0 = time.perf_counter()
    for _ in range(loops):
        signer.sign(message)
    sign_us = (time.perf_counter() - t0) / loops * 1e6
    t0 = time.perf_counter()
    for _ in range(loops):
        keys.verify("b", data)
    verify_us = (time.perf_counter() - t0) / loops * 1e6
    result["entry_bytes"] = len(data)
    result["sign_us"] = round(sign_us, 1)
    result["verify_us"] = round(verify_us, 1)
    return result


# ---- raw pysyncobj -------------------------------------------------------------------


class FlushingJournal(FileJournal):  # type: ignore[misc]
    """pysyncobj's FileJournal with the flush per entry it lacks (ANCHORS.md)."""

    def add(self, command: bytes, idx: int, term: int) -> None:
        super().add(command, idx, term)
        self.flush()


class RawObj(SyncObj):  # type: ignore[misc]
    @replicated
    def put(self, data: bytes) -> None:
        pass


def bench_raw(count: int, clients: int) -> dict[str, Any]:
    ports = {n: free_port() for n in IDS}
    addrs = {n: f"127.0.0.1:{ports[n]}" for n in IDS}
    objs: dict[str, RawObj] = {}
    with tempfile.TemporaryDirectory(prefix="tars-bench-raw-") as tmp:
        saved = pso_syncobj.createJournal
        pso_syncobj.createJournal = lambda path=None: FlushingJournal(path)
        try:
            for n in IDS:
                conf = SyncObjConf(
                    appendEntriesUseBatch=False,
                    journalFile=str(Path(tmp) / f"{n}.journal"),
                    raftMinTimeout=TIMERS.election_min,
                    raftMaxTimeout=TIMERS.election_max,
                    appendEntriesPeriod=TIMERS.heartbeat,
                    dynamicMembershipChange=False,
                )
                objs[n] = RawObj(addrs[n], [addrs[p] for p in IDS if p != n], conf=conf)
        finally:
            pso_syncobj.createJournal = saved
        try:
            leader = wait_until(
                lambda: (
                    next((o for o in objs.values() if o._isLeader()), None)
                    if all(o._getLeader() is not None for o in objs.values())
                    else None
                ),
                "a raw pysyncobj leader",
                timeout=30.0,
                interval=0.002,
            )
            return measure(lambda: leader.put(PAYLOAD, sync=True, timeout=10.0), count, clients)
        finally:
            for o in objs.values():
                o.destroy_synchronous()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer proposals and trials")
    args = parser.parse_args()
    count = 300 if args.quick else 2000
    clients = 8
    trials = 3 if args.quick else 7
    kind = "zmq" if zmq_transport is not None else "hub"

    raw = bench_raw(count, clients)
    raw["truncations_of_applied_entries"] = TRUNCATIONS.count
    TRUNCATIONS.count = 0
    ours = bench_ours(kind, count, clients)
    ours["truncations_of_applied_entries"] = TRUNCATIONS.count
    signed = bench_signed(kind, count, clients)
    failovers = [failover_once(kind) for _ in range(trials)]
    out = {
        "payload_bytes": len(PAYLOAD),
        "proposals": count,
        "transport": "runtime.transport (ZeroMQ, CurveZMQ, tcp 127.0.0.1)"
        if kind == "zmq"
        else "in-memory hub",
        "timers": {
            "election_s": [TIMERS.election_min, TIMERS.election_max],
            "heartbeat_s": TIMERS.heartbeat,
        },
        "ours": ours,
        "raw_pysyncobj": raw,
        "ratio_p50": round(ours["p50_ms"] / raw["p50_ms"], 2),
        "ratio_p99": round(ours["p99_ms"] / raw["p99_ms"], 2),
        "ratio_throughput_8_clients": round(
            raw[f"commits_per_s_{clients}_clients"] / ours[f"commits_per_s_{clients}_clients"], 2
        ),
        "goal_ratio": 1.5,
        "signed": signed,
        "ratio_p50_signed": round(signed["p50_ms"] / raw["p50_ms"], 2),
        "ratio_p50_signed_vs_unsigned": round(signed["p50_ms"] / ours["p50_ms"], 2),
        "failover_s": {
            "median": round(statistics.median(failovers), 3),
            "max": round(max(failovers), 3),
            "trials": [round(f, 3) for f in failovers],
        },
        "goal_failover_s": 1.0,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
