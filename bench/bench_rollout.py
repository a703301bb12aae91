"""Benchmark of the Deployer's part of a swarm-wide rollback; prints one JSON object.

Three in-process swarm nodes (real ZeroMQ, Raft, SQLite), each with a Deployer over a
minimal in-memory service (``Service`` below stands in for the real one: it only keeps
which version each colour runs).  Each round adopts a new version, lets every node reach
its first step, then hands one node a window with different answers and times:

- ``rollback``: from that node's tick with the Failed window to every node back on blue
  (its abort, its Failed step and its rollback committed, every other node aborting its
  own green when it applies the rollback);
- ``raw_commit``: in the same run, one ledger entry proposed on the same node until every
  node has applied it (the Raft library's commit and the store's apply, nothing of ours).

The issue's goal (every node back on blue within 5 s of the first bad request at 200
req/s) adds the analysis window (``interval``, 2 s by default) and the real service's
abort to ``rollback``; ``worst_case_s`` is that sum with this run's p99.

Usage: ``python bench/bench_rollout.py [--rounds N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.deployments import Deployments  # noqa: E402
from cli.demo import write_cluster  # noqa: E402
from consensus.ledger import cycle_entry, register_entry, vote_entry  # noqa: E402
from events.records import Adoption  # noqa: E402
from evolution.manifest import RolloutSettings  # noqa: E402
from evolution.patch import make_patch  # noqa: E402
from evolution.tree import Tree, version_id  # noqa: E402
from node import SwarmNode  # noqa: E402
from runtime.config import load_cluster  # noqa: E402
from runtime.genome_files import load_genome  # noqa: E402
from runtime.service.control import ColourWindow, Window  # noqa: E402
from runtime.testing import wait_until  # noqa: E402

TINY = Path(__file__).resolve().parents[1] / "tests" / "data" / "tiny"
GOOD = Window(
    ColourWindow("b", 1000, 0, 0.001, 0.002),
    ColourWindow("g", 100, 0, 0.001, 0.002),
    40,
    0,
    (),
    2.0,
)
BAD = GOOD._replace(mismatches=3)


class Service:
    """Which version each colour runs; the window the bench chooses."""

    def __init__(self, blue: str) -> None:
        self.blue, self.green, self.weight, self.bad = blue, "", 0.0, False

    def serving(self, genome: str) -> dict[str, str]:
        return {"blue": self.blue, "green": self.green} if self.green else {"blue": self.blue}

    def start_green(self, genome: str, version: str, tree: Tree, ready_timeout: float) -> None:
        self.green = version

    def set_weight(self, genome: str, green: float) -> None:
        self.weight = green

    def set_mirror(self, genome: str, share: float) -> None:
        pass

    def window(self, genome: str) -> Window:
        return BAD if self.bad else GOOD

    def promote(self, genome: str) -> None:
        self.blue, self.green = self.green, ""

    def abort(self, genome: str) -> None:
        self.green, self.weight, self.bad = "", 0.0, False

    def reload(self, genome: str, version: str, tree: Tree) -> None:
        pass


def adoption(tree: dict[str, str], round_: int) -> Adoption:
    child = dict(tree)
    child["tiny/core.py"] = child["tiny/core.py"] + f"\n# round {round_}\n"
    return Adoption(version_id(child), version_id(tree), make_patch(tree, child), "bench", "bench",
                    1.0, 0.5, 2.0, 1.8, 2.2, {})  # fmt: skip


def run(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        config = load_cluster(write_cluster(Path(folder), 3, TINY, 1, 1, 3, 1))
        config.ensure_keys()
        nodes = [SwarmNode(config, node_id, evolve=False) for node_id in config.ids]
        deployers: list[Deployments] = []
        try:
            for node in nodes:
                node.start()
            return measure(nodes, deployers, rounds)
        finally:
            for deployments in deployers:
                deployments.stop()
            for node in nodes:
                node.stop()


def measure(nodes: list[SwarmNode], deployers: list[Deployments], rounds: int) -> dict[str, Any]:
    wait_until(lambda: all(n.engine.leader() for n in nodes), "a leader", timeout=30)
    leader = next(n for n in nodes if n.engine.leader() == n.id)
    voter = next(n for n in nodes if n is not leader)
    for node in nodes:
        node.votes.stop()
    _, tree = load_genome(TINY)
    base = version_id(tree)
    leader.propose(register_entry("tiny", tree["genome.toml"], tree, 1.0, leader.id, time.time()))
    wait_until(lambda: all("tiny" in n.store.genomes() for n in nodes), "registration", timeout=30)
    now = [0.0]
    services = [Service(base) for _ in nodes]
    settings = RolloutSettings()
    for node, service in zip(nodes, services, strict=True):
        deployments = Deployments(node.id, node.store, service, node.applier.propose,
                                  lambda: now[0], threading.Event(), defaults=settings, tick=None)  # fmt: skip
        node.applier.on_applied = deployments.after_apply
        deployments.start()
        deployers.append(deployments)
    rollback, raw = [], []
    for round_ in range(rounds):
        win = adoption(tree, round_)
        leader.propose(cycle_entry("tiny", leader.id, round_ + 1, 3, [], [], win, time.time()))
        pid = next(iter(leader.store.head("tiny").proposals))
        voter.propose(vote_entry("tiny", pid, win.version, voter.id, True, "ok", time.time()))
        wait_until(
            lambda w=win.version: all(s.green == w and s.weight > 0 for s in services),
            "1 %",
            timeout=30,
        )  # type: ignore[misc]
        services[1].bad = True
        now[0] += settings.interval
        started = time.perf_counter()
        deployers[1].tick()
        wait_until(
            lambda: all(s.blue == base and not s.green for s in services),
            "blue everywhere",
            timeout=30,
            interval=0.001,
        )
        rollback.append(time.perf_counter() - started)
        started = time.perf_counter()
        index = nodes[1].propose(
            vote_entry("tiny", "none", base, nodes[1].id, True, "raw", time.time())
        )
        for node in nodes:
            node.wait_applied(index)
        raw.append(time.perf_counter() - started)
    p50, raw50 = statistics.median(rollback), statistics.median(raw)
    p99 = sorted(rollback)[max(0, int(len(rollback) * 0.99) - 1)]
    return {
        "rounds": rounds,
        "rollback_p50_s": round(p50, 4),
        "rollback_p99_s": round(p99, 4),
        "raw_commit_p50_s": round(raw50, 4),
        "ratio_rollback_to_raw_commit": round(p50 / raw50, 2),
        "interval_s": settings.interval,
        "worst_case_s": round(settings.interval + p99, 3),
        "goal_s": 5.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(run(args.rounds), indent=2))


if __name__ == "__main__":
    main()
