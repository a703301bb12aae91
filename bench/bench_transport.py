"""Benchmark of runtime.transport against raw pyzmq in the same run; prints one JSON object.

Like with like: the raw baseline is a DEALER connected to a ROUTER with CurveZMQ on, as
ours, one frame per message, the same body sizes, and it receives with the fastest raw
pattern (two ``recv`` calls, not ``recv_multipart``), so the ratios show what the
transport adds: msgpack framing, the identity lookup, dispatch, thread hops.  The
receiving (or echoing) side runs in a child process, as a peer node would, for both.
Rounds alternate raw and transport; each ratio is taken within a round and the median of
the rounds is reported, because the machine is shared and noisy.  The raw one-way
receiver only calls ``recv`` twice per message and never looks at it, while the transport
decodes each frame and calls a handler: that asymmetry favours raw and was left alone.

1. one-way throughput at 100 B and 10 KiB bodies: raw ``send`` loop vs ``Transport.send``
   (the caller retries when the send queue is full, so nothing is dropped), timed from
   the first send to the receiver's "got them all"; then the same with the opt-in burst
   window ``Transport(coalesce=20e-6)`` ("throughput_coalesced_*"); and the same frames
   through ``Transport.send_many`` in calls of 64 ("throughput_many_*"), still against
   raw pyzmq sending them one by one (what a raw caller has: no batch frame);
2. round trip p50/p99 at 100 B: raw DEALER send + recv against a ROUTER echo that answers
   on its receive thread vs ``Transport.request`` against ``serve(..., inline=True)``,
   which also answers on the receive thread ("rtt"); and against a default ``serve``
   handler, which runs on a worker thread ("rtt_worker", compared with the same raw echo).
   Changed: the three are now timed in one loop, a raw, an inline and a worker request in
   turn (rotating the order), with all three servers up at once (``rtt_runs``).  They used
   to be timed as phases one after the other, and this machine changes speed within
   seconds, so a phase ratio measured the machine as much as the transport (the same
   code gave 0.93x and 2.6x).  The raw side does exactly what it did before.

Usage: ``python bench/bench_transport.py [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zmq  # noqa: E402

from runtime.keys import generate_keypair  # noqa: E402
from runtime.testing import free_port  # noqa: E402
from runtime.transport import Peer, Transport  # noqa: E402

SIZES = {"100B": 100, "10KiB": 10 * 1024}
COALESCE = 20e-6  # the burst window of the "coalesced" throughput runs, in seconds


# ---------------------------------------------------------------- child side


def child(
    mode: str, port: int, server: tuple[str, str], client_public: str, client_port: int
) -> None:
    """The receiving node: counts one-way frames or echoes requests until told to stop."""
    if mode == "raw":
        ctx: zmq.Context[Any] = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.curve_server = True
        router.curve_publickey = server[0].encode()
        router.curve_secretkey = server[1].encode()
        router.rcvhwm = router.sndhwm = 1000
        router.bind(f"tcp://127.0.0.1:{port}")
        print("ready", flush=True)
        recv, send = router.recv, router.send
        while True:
            rid = recv()
            data = recv()
            if data[:1] == b"c":  # count: the next `count` frames, then say so
                n = int(data[1:])
                for _ in range(n):
                    recv()
                    recv()
                send(rid, zmq.SNDMORE)
                send(b"done")
            elif data[:1] == b"e":  # echo mode: answer `count` requests
                n = int(data[1:])
                send(rid, zmq.SNDMORE)
                send(b"ok")
                for _ in range(n):
                    rid = recv()
                    body = recv()
                    send(rid, zmq.SNDMORE)
                    send(body)
            else:
                break
        router.close(0)
        ctx.term()
        return
    peers = [
        Peer("sender", f"tcp://127.0.0.1:{client_port}", client_public),  # replies go there
        Peer("receiver", f"tcp://127.0.0.1:{port}", server[0]),
    ]
    done = threading.Event()
    state = {"left": 0}

    def on_frame(_frame: Any) -> None:
        state["left"] -= 1
        if state["left"] == 0:
            done.set()

    def expect(_sender: str, n: int) -> str:
        done.clear()
        state["left"] = n
        return "ok"

    def wait(_sender: str, _body: Any) -> str:
        done.wait()
        return "done"

    transport = Transport("receiver", f"tcp://127.0.0.1:{port}", server[0], server[1], peers)
    transport.subscribe("data", on_frame)
    transport.serve("expect", expect)
    transport.serve("wait", wait)
    # Like the raw echo, which answers on its receive thread: an inline handler.  The
    # default (a worker thread, so a slow handler cannot stall the receive loop) is timed
    # as well, as "rtt_worker".
    transport.serve("echo", lambda _sender, body: body, inline=True)
    transport.serve("echo_worker", lambda _sender, body: body)
    stopped = threading.Event()
    transport.serve("quit", lambda _sender, _body: stopped.set())
    transport.start()
    print("ready", flush=True)
    stopped.wait()
    time.sleep(0.2)  # let the reply to "quit" leave
    transport.stop()


def spawn(
    mode: str, port: int, server: tuple[str, str], client_public: str, client_port: int = 1
) -> subprocess.Popen[str]:
    # Keys go through the environment: a z85 key may start with "-", which argv parsing eats.
    spec = json.dumps([mode, port, *server, client_public, client_port])
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child"],
        stdout=subprocess.PIPE,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            "TARS_BENCH_CHILD": spec,
        },
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit(f"the {mode} child did not start")
    return proc


# ---------------------------------------------------------------- parent side


def raw_dealer(
    ctx: zmq.Context[Any], port: int, server: tuple[str, str], client: tuple[str, str]
) -> zmq.Socket[bytes]:
    """The raw side's socket: a Curve DEALER, as a raw pyzmq peer would open it."""
    dealer: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    dealer.curve_serverkey = server[0].encode()
    dealer.curve_publickey = client[0].encode()
    dealer.curve_secretkey = client[1].encode()
    dealer.sndhwm = dealer.rcvhwm = 1000
    dealer.linger = 0
    dealer.connect(f"tcp://127.0.0.1:{port}")
    return dealer


def raw_runs(n: int, server: tuple[str, str], client: tuple[str, str]) -> dict[str, Any]:
    """One-way throughput of a raw DEALER into a raw ROUTER."""
    port = free_port()
    proc = spawn("raw", port, server, client[0])
    ctx: zmq.Context[Any] = zmq.Context()
    dealer = raw_dealer(ctx, port, server, client)
    out: dict[str, Any] = {}
    try:
        for label, size in SIZES.items():
            payload = b"x" * size
            count = n if size <= 1024 else n // 4
            dealer.send(b"c%d" % count)
            send = dealer.send
            t0 = time.perf_counter()
            for _ in range(count):
                send(payload)
            assert dealer.recv() == b"done"
            out[f"throughput_{label}"] = count / (time.perf_counter() - t0)
        dealer.send(b"q")
    finally:
        dealer.close(0)
        ctx.term()
        reap(proc)
    return out


def start_sender(
    port: int, server: tuple[str, str], client: tuple[str, str], coalesce: float = 0.0
) -> tuple[Transport, subprocess.Popen[str]]:
    """A receiving Transport in a child process and the sending one here."""
    sender_port = free_port()
    proc = spawn("transport", port, server, client[0], sender_port)
    peers = [Peer("receiver", f"tcp://127.0.0.1:{port}", server[0])]
    sender = Transport(
        "sender", f"tcp://127.0.0.1:{sender_port}", *client, peers, coalesce=coalesce
    )
    sender.start()
    return sender, proc


def transport_runs(
    n: int,
    server: tuple[str, str],
    client: tuple[str, str],
    coalesce: float = 0.0,
    many: bool = True,
) -> dict[str, Any]:
    """One-way throughput of one sender Transport (and through send_many, if ``many``)."""
    sender, proc = start_sender(free_port(), server, client, coalesce)
    out: dict[str, Any] = {}
    try:
        for label, size in SIZES.items():
            body = b"x" * size
            count = n if size <= 1024 else n // 4
            sender.request("receiver", "expect", count, timeout=30)
            send = sender.send
            t0 = time.perf_counter()
            for _ in range(count):
                while not send("receiver", "data", body):
                    time.sleep(0.0001)  # queue full: back off as a real caller would
            sender.request("receiver", "wait", None, timeout=120)
            out[f"throughput_{label}"] = count / (time.perf_counter() - t0)
            if not many:
                continue
            # The same frames again through send_many, 64 per call (raw still sends them
            # one by one: a raw pyzmq caller has no batch frame to put them in).
            chunk = [body] * 64
            sender.request("receiver", "expect", count, timeout=30)
            t0 = time.perf_counter()
            done = 0
            while done < count:
                taken = sender.send_many("receiver", "data", chunk[: count - done])
                done += taken
                if taken < min(64, count - done + taken):
                    time.sleep(0.0001)  # backlog full: back off as a real caller would
            sender.request("receiver", "wait", None, timeout=120)
            out[f"throughput_many_{label}"] = count / (time.perf_counter() - t0)
        out["stats"] = {k: v for k, v in sender.stats().items() if v}
        sender.request("receiver", "quit", None)
    finally:
        sender.stop()
        reap(proc)
    return out


def rtt_runs(
    rtts: int, server: tuple[str, str], client: tuple[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Round trips at 100 B: raw, inline handler and worker handler, one by one in turn.

    All three servers run at once and the loop alternates between them request by
    request (rotating the order), so that each kind sees the same moments of the machine:
    timed as three phases one after the other, they measured the machine's changes of
    speed as much as the transport.
    """
    raw_port = free_port()
    raw_proc = spawn("raw", raw_port, server, client[0])
    ctx: zmq.Context[Any] = zmq.Context()
    dealer = raw_dealer(ctx, raw_port, server, client)
    sender, proc = start_sender(free_port(), server, client)
    body = b"x" * 100
    kinds = ("raw", "rtt", "rtt_worker")
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    try:
        dealer.send(b"e%d" % (rtts + 200))
        assert dealer.recv() == b"ok"
        clock = time.perf_counter
        for i in range(rtts + 200):
            for j in range(3):
                kind = kinds[(i + j) % 3]
                t0 = clock()
                if kind == "raw":
                    dealer.send(body)
                    dealer.recv()
                else:
                    sender.request("receiver", "echo" if kind == "rtt" else "echo_worker", body)
                if i >= 200:
                    samples[kind].append(clock() - t0)
        dealer.send(b"q")
        sender.request("receiver", "quit", None)
    finally:
        dealer.close(0)
        ctx.term()
        reap(raw_proc)
        sender.stop()
        reap(proc)
    ours = {**rtt_stats(samples["rtt"]), **rtt_stats(samples["rtt_worker"], "rtt_worker")}
    return rtt_stats(samples["raw"]), ours


def reap(proc: subprocess.Popen[str]) -> None:
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rtt_stats(samples: list[float], prefix: str = "rtt") -> dict[str, float]:
    ordered = sorted(samples)
    return {
        f"{prefix}_p50_us": statistics.median(ordered) * 1e6,
        f"{prefix}_p99_us": ordered[int(len(ordered) * 0.99) - 1] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument(
        "--rounds", type=int, default=None, help="raw/transport pairs (default 5, quick 1)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, port, public, secret, client_public, client_port = json.loads(
            os.environ["TARS_BENCH_CHILD"]
        )
        child(mode, int(port), (public, secret), client_public, int(client_port))
        return
    n = 20_000 if args.quick else 100_000
    rtts = 500 if args.quick else 3000
    server, client = generate_keypair(), generate_keypair()
    raw: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    rounds = args.rounds or (1 if args.quick else 5)
    for _ in range(rounds):  # interleaved: the machine is noisy
        raw.append(raw_runs(n, server, client))
        ours.append(transport_runs(n, server, client))
        # The same one-way throughput with the opt-in burst window (Transport(coalesce=)).
        burst = transport_runs(n, server, client, coalesce=COALESCE, many=False)
        for label in SIZES:
            ours[-1][f"throughput_coalesced_{label}"] = burst[f"throughput_{label}"]
        ours[-1]["stats_coalesced"] = burst["stats"]
        raw_rtt, ours_rtt = rtt_runs(rtts, server, client)
        raw[-1].update(raw_rtt)
        ours[-1].update(ours_rtt)

    keys = [f"throughput_{label}" for label in SIZES] + ["rtt_p50_us", "rtt_p99_us"]
    ours_keys = [
        *keys,
        *(f"throughput_coalesced_{label}" for label in SIZES),
        *(f"throughput_many_{label}" for label in SIZES),
        "rtt_worker_p50_us",
        "rtt_worker_p99_us",
    ]

    def ratio(r: dict[str, Any], o: dict[str, Any], key: str) -> float:
        # >1 means the transport is slower: raw/ours for rates, ours/raw for times.
        # The worker-served round trip is compared with the same raw echo.
        raw_key = key.replace("rtt_worker", "rtt").replace("_coalesced", "").replace("_many", "")
        return float(r[raw_key] / o[key] if key.startswith("throughput") else o[key] / r[raw_key])

    result: dict[str, Any] = {
        "messages": n,
        "round_trips": rtts,
        "rounds": len(raw),
        "raw_median": {k: round(statistics.median(r[k] for r in raw), 1) for k in keys},
        "transport_median": {k: round(statistics.median(o[k] for o in ours), 1) for k in ours_keys},
        # Each round runs raw then transport back to back; the ratio is taken per round,
        # so a noisy neighbour hurts both sides of one ratio rather than one side of all.
        "overhead_median": {
            k.removesuffix("_us"): round(
                statistics.median(ratio(r, o, k) for r, o in zip(raw, ours, strict=True)), 2
            )
            for k in ours_keys
        },
        "goal": "overhead <= 1.3 (raw/transport for throughput, transport/raw for round trips)",
        "runs": {
            "raw": [{k: round(r[k], 1) for k in keys} for r in raw],
            "transport": [{k: round(o[k], 1) for k in ours_keys} for o in ours],
        },
        "transport_counters_last_run": ours[-1]["stats"],
        "transport_counters_last_run_coalesced": ours[-1]["stats_coalesced"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
