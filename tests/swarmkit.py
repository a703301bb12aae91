"""Helpers for swarm tests: a local cluster of real node processes, and its invariants.

Imported by the swarm tests (pytest puts this folder on sys.path).  Every node is a real
`tars node start` process on 127.0.0.1 with its own SQLite store and Raft journal; the
test talks to it as the CLI does, through the admin channel with the admin key.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cli.demo import write_cluster
from consensus.signing import Signer
from events.records import Adoption
from events.store import GenomeStore
from evolution.errors import NotCommittedError, TransportError
from evolution.patch import make_patch
from evolution.tree import version_id
from node import SwarmNode
from runtime.config import ClusterConfig, Compaction, load_cluster
from runtime.launcher import ProcessLauncher, admin_request
from runtime.testing import wait_until

TINY = Path(__file__).parent / "data" / "tiny"
COMPACTION = Compaction(after=12, keep=4)


def candidate(tree: dict[str, str], old: str, new: str) -> tuple[dict[str, str], Adoption]:
    """``tree`` with one edit in tiny/core.py, and the adoption a proposer would put on the ledger."""
    child = dict(tree)
    child["tiny/core.py"] = child["tiny/core.py"].replace(old, new)
    assert child != tree
    return child, Adoption(
        version=version_id(child),
        parent=version_id(tree),
        patch=make_patch(tree, child),
        mutator="test",
        kind="test",
        fitness_before=1.0,
        fitness_after=0.5,
        ratio=2.0,
        low=1.8,
        high=2.2,
        evidence={},
    )


class LocalSwarm:
    """A cluster.yml in a temporary folder and the node processes it lists."""

    def __init__(
        self,
        root: Path,
        *,
        nodes: int = 3,
        genome: Path = TINY,
        cycles: int = 1000,
        candidates: int = 2,
        seed: int = 3,
    ) -> None:
        self.root = root
        written = load_cluster(write_cluster(root, nodes, genome, cycles, candidates, seed, 1))
        # Compaction after a dozen entries: faults then land on compacted logs, and nodes
        # that lost their store or journal catch up by state transfer, not by replay.
        self.config: ClusterConfig = written.with_nodes(compaction=COMPACTION).dump(written.path)
        self.config.ensure_keys()
        self.launcher = ProcessLauncher(self.config, tied=True)
        self.genome = "tiny" if genome == TINY else genome.name
        #: every head version any node reported: none of them may ever be lost
        self.reported: set[str] = set()

    @property
    def ids(self) -> list[str]:
        return self.config.ids

    # -- processes --

    def up(self, ids: Iterable[str] | None = None) -> None:
        chosen = list(ids) if ids is not None else self.ids
        for node_id in chosen:
            self.launcher.start(node_id)
        for node_id in chosen:
            self.launcher.wait_ready(node_id, timeout=60)

    def kill(self, node_id: str) -> None:
        self.launcher.kill(node_id, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.launcher.alive(node_id) and time.monotonic() < deadline:
            time.sleep(0.05)

    def down(self) -> None:
        self.launcher.down()

    def stop(self, node_id: str) -> None:
        """SIGSTOP the node's process group (its sandboxed children too): it freezes where it
        is, as a paused VM or a long GC would, and its peers hear nothing until :meth:`cont`."""
        self.launcher.kill(node_id, signal.SIGSTOP)

    def cont(self, node_id: str) -> None:
        """SIGCONT: the stopped node runs on from where it froze."""
        self.launcher.kill(node_id, signal.SIGCONT)

    # -- admin channel --

    def request(self, node_id: str, body: dict[str, Any], timeout: float = 3.0) -> Any:
        return admin_request(self.config, node_id, body, timeout=timeout)

    def status(self, node_id: str) -> dict[str, Any] | None:
        try:
            reply: dict[str, Any] = self.request(node_id, {"op": "status"}, timeout=2.0)
        except TransportError:
            return None
        head = reply["heads"].get(self.genome)
        if head is not None:
            self.reported.add(head["version"])
        return reply

    def statuses(self, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any] | None]:
        return {n: self.status(n) for n in (ids if ids is not None else self.ids)}

    def leader(self, timeout: float = 20.0, among: Iterable[str] | None = None) -> str:
        chosen = list(among) if among is not None else self.ids
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node_id, status in self.statuses(chosen).items():
                if status is not None and status["role"] == "leader":
                    return node_id
            time.sleep(0.1)
        raise AssertionError(f"no leader among {chosen} within {timeout} s")

    def block(self, node_id: str, peers: list[str]) -> None:
        self.request(node_id, {"op": "block", "peers": peers})

    def partition(self, node_id: str) -> None:
        """Cut one node off: it drops its peers' traffic and they drop its."""
        others = [n for n in self.ids if n != node_id]
        self.block(node_id, others)
        for other in others:
            self.block(other, [node_id])

    def heal(self) -> None:
        for node_id in self.ids:
            if self.launcher.alive(node_id):
                self.block(node_id, [])

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise AssertionError(f"not within {timeout} s: {what}; statuses: {self.statuses()}")

    def adopted_count(self, node_id: str) -> int:
        status = self.status(node_id)
        if status is None or self.genome not in status["heads"]:
            return 0
        return int(status["heads"][self.genome]["versions"]) - 1

    def applied(self, node_id: str) -> int:
        status = self.status(node_id)
        return int(status["applied_index"]) if status else -1

    # -- invariants --

    def store_log(self, node_id: str) -> list[tuple[str, str | None, str, str]]:
        """The node's event log as (type, version, node, time) — read from its SQLite file."""
        with GenomeStore.open(self.config.store_url(node_id), create=False) as store:
            return [(e.type, e.version, e.node, e.time.isoformat()) for e in store.log()]

    def converged(self) -> bool:
        statuses = self.statuses()
        if any(s is None for s in statuses.values()):
            return False
        chains = {s["heads"].get(self.genome, {}).get("chain") for s in statuses.values() if s}
        applied = {s["applied_index"] for s in statuses.values() if s}
        return len(chains) == 1 and len(applied) == 1

    def check_invariants(self, within: float = 10.0) -> None:
        """Every node reaches the same head within ``within`` s; logs are prefixes; nothing reported is lost."""
        self.wait_for(self.converged, within, "every node at the same head and ledger index")
        logs = {n: self.store_log(n) for n in self.ids}
        longest = max(logs.values(), key=len)
        for node_id, events in logs.items():
            assert events == longest[: len(events)], (
                f"{node_id}'s log is not a prefix of the longest"
            )
        versions = {
            v for kind, v, _, _ in longest if kind in ("Registered", "VersionAdopted", "RolledBack")
        }
        lost = self.reported - versions
        assert not lost, f"versions reported as heads but missing from the log: {sorted(lost)}"


# ---- SwarmNodes in this process (test_swarm, test_local_damage, test_repair, test_approval…) --


@contextlib.contextmanager
def spread_swarm(tmp_path: Path, genome: Path = TINY) -> Iterator[list[SwarmNode]]:
    """Three started, evolving nodes with ``evolution.spread`` on (3 cycles of 3 candidates)."""
    from runtime.config import EvolutionSection

    config = load_cluster(write_cluster(tmp_path, 3, genome, 3, 3, 3, 1))
    config.ensure_keys()
    config = config.with_nodes(
        evolution=EvolutionSection(
            cycles=3, candidates_per_cycle=3, seed=3, incubators=1, spread=True
        )
    )
    with started([SwarmNode(config, node_id) for node_id in config.ids]) as nodes:
        yield nodes


@contextlib.contextmanager
def in_process_swarm(tmp_path: Path, genome: Path) -> Iterator[list[SwarmNode]]:
    """Three started nodes of a fresh cluster.yml (no evolution), stopped at the end.

    ``ensure_keys`` makes every node's and the admin's keys, signing keys included, and
    records the public signing keys in the cluster.yml (see :func:`signer`)."""
    config = load_cluster(write_cluster(tmp_path, 3, genome, 1, 1, 3, 1))
    config.ensure_keys()
    with started([SwarmNode(config, node_id, evolve=False) for node_id in config.ids]) as nodes:
        yield nodes


@contextlib.contextmanager
def started(nodes: list[SwarmNode]) -> Iterator[list[SwarmNode]]:
    """Start ``nodes`` in order; at the end stop every one, in the same order: those a
    failed start left unstarted too (a no-op), and the rest even when one stop raises, so
    no node's threads or sockets outlive the test."""
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        with contextlib.ExitStack() as stopping:
            for node in reversed(nodes):  # callbacks run last-in first-out
                stopping.callback(node.stop)


def signer(config: ClusterConfig, name: str, *, as_name: str | None = None) -> Signer:
    """``name``'s signing key (a node's or ``admin``'s, made by ``ensure_keys``), signing
    as ``as_name`` when a test forges an entry in another's name with it."""
    return Signer(as_name or name, config.sign_secret(name))


def wait(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> None:
    """Poll until ``predicate`` holds (an upper bound, never an expectation of speed)."""
    wait_until(predicate, what, timeout=timeout, interval=0.05)


def propose_retrying(node: SwarmNode, entry: bytes) -> None:
    """Propose until committed: cycle entries are idempotent, so a retry after a leader
    change is safe."""
    deadline = time.monotonic() + 60
    while True:
        try:
            node.propose(entry)
            return
        except NotCommittedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
