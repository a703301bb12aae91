"""Assembles one TARS node: store + sandbox + supervised actors; clean shutdown.

Everything with a side effect is created here and handed in, so the parts below stay
testable on their own and a node can be built the same way by the CLI, the demo and
the tests.  The swarm issue adds the ledger and the transport to this assembly.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from actors.analyzer import Analyzer
from actors.coordinator import Coordinator, Progress, RunSummary, _quiet
from actors.generator import Generator
from actors.governor import Governor
from actors.incubator import Incubator
from actors.messages import REMOTE_TYPES, Incubate, Validate, Verdict
from actors.planner import Planner
from actors.supervisor import Supervisor
from actors.validator import Validator
from consensus import transfer
from consensus.interface import Snapshot
from consensus.ledger import (
    Applied,
    LedgerState,
    cycle_entry,
    members_entry,
    proposal_id,
    register_entry,
    rollback_entry,
    vote_entry,
)
from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.errors import ConsensusError, GenomeError, PolicyError, TarsError, UnknownGenomeError
from evolution.manifest import Manifest, parse_manifest
from evolution.policy import Policy
from evolution.tree import Tree, short
from runtime import remote
from runtime.config import ClusterConfig
from runtime.genome_files import load_genome
from runtime.incubation import count_instructions, effective_measure, measure, run_tests
from runtime.sandbox import Sandbox

log = logging.getLogger("tars.node")


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    store_url: str
    workdir: Path
    isolation: str = "auto"
    incubators: int = 0  # 0: one per core
    candidates_per_cycle: int = 4


class Node:
    """One replica: owns its store, its sandbox and its actors."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.store = GenomeStore.open(config.store_url)
        self.sandbox = Sandbox(config.workdir / "sandbox", isolation=config.isolation)
        self.supervisor = Supervisor()
        self.stopping = threading.Event()
        size = config.incubators or max(1, os.cpu_count() or 1)
        sandbox = self.sandbox
        self.supervisor.start("analyzer", lambda: Analyzer.start(sandbox))
        self.supervisor.start("planner", Planner.start)
        self.supervisor.start("generator", Generator.start)
        self.supervisor.start("incubator", lambda: Incubator.start(sandbox), size=size)
        self.supervisor.start("governor", Governor.start)

    # -- genomes -------------------------------------------------------------------

    def register(self, folder: Path, progress: Progress = _quiet) -> tuple[str, bool]:
        """Register the genome in ``folder`` unless the store has it; returns (name, new)."""
        manifest, tree = load_genome(folder)
        try:
            self.store.head(manifest.name)
            return manifest.name, False
        except UnknownGenomeError:
            pass
        progress("baseline", {"genome": manifest.name})
        fitness = self.baseline(manifest, tree)
        text = tree["genome.toml"]
        version = self.store.register(manifest.name, text, tree, fitness, self.config.node_id)
        progress("registered", {"genome": manifest.name, "version": version, "fitness": fitness})
        return manifest.name, True

    def baseline(self, manifest: Manifest, tree: Tree) -> float:
        """The genome must pass its own tests before any change; its first fitness."""
        tests = run_tests(self.sandbox, tree, manifest)
        if not tests.ok:
            last = (tests.stderr.strip().splitlines() or tests.stdout.strip().splitlines() or [""])[
                -1
            ]
            raise GenomeError(
                f"genome {manifest.name}: its own tests fail before any change ({tests.detail}; {last[:160]})",
                hint="fix the genome's tests or its code first; TARS only evolves a passing genome",
            )
        try:
            if effective_measure(manifest) == "instructions":
                # The counted run is the one every candidate of this version is compared with.
                return count_instructions(self.sandbox, tree, manifest)
            samples = measure(self.sandbox, tree, manifest, repeats=3)
        except ValueError as exc:
            raise GenomeError(
                f"genome {manifest.name}: {exc}",
                hint="the bench command must print one JSON object with the fitness metric",
            ) from exc
        return sorted(samples)[1]

    def coordinator(
        self, genome: str, *, progress: Progress = _quiet, policy: Policy | None = None
    ) -> Coordinator:
        return Coordinator(
            self.store,
            self.supervisor,
            genome,
            self.config.node_id,
            policy=policy,
            candidates_per_cycle=self.config.candidates_per_cycle,
            progress=progress,
        )

    def evolve(
        self, genome: str, cycles: int, seed: int, progress: Progress = _quiet
    ) -> RunSummary:
        return self.coordinator(genome, progress=progress).run(cycles, seed)

    # -- lifecycle -----------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the node cleanly: actors stopped, children killed, store closed."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.stopping.set()
            raise KeyboardInterrupt(f"signal {signum}")

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)

    def close(self) -> None:
        self.supervisor.stop_all()
        self.sandbox.close()
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        self.close()
        return None


# ---- the swarm ----------------------------------------------------------------------


class SwarmNode:
    """A node of the swarm: the one-node assembly plus transport, Raft ledger and votes.

    Threads, each with one job: the transport's I/O thread, the engine's driver and
    applier threads (committed entries reach :meth:`_on_commit` in order), the
    validation worker (re-runs the tests of a peer's proposal, then votes through the
    ledger) and the evolution loop (only the leader evolves, so the swarm spends its
    CPU on one line of work and peers spend theirs on checking it).
    """

    def __init__(self, cluster: ClusterConfig, node_id: str, *, evolve: bool = True) -> None:
        from consensus.engine import RaftEngine, RaftTimers
        from runtime.transport import Peer, Transport

        spec = cluster.node(node_id)
        self.cluster = cluster
        self.id = node_id
        self.evolve_enabled = evolve
        evolution = cluster.evolution
        public, secret = cluster.keypair(node_id)
        admin_public = (
            cluster.keypair("admin")[0] if (cluster.keys_dir / "admin.key").exists() else None
        )
        peers = [
            Peer(n.id, cluster.endpoint(n.id), cluster.public_key(n.id))
            for n in cluster.nodes
            if n.id != node_id
        ]
        self.transport = Transport(
            node_id,
            f"tcp://{spec.host}:{spec.port}",
            public,
            secret,
            peers,
            clients={"admin": admin_public} if admin_public else {},
        )
        self.node = Node(
            NodeConfig(
                node_id,
                cluster.store_url(node_id),
                cluster.state_dir(node_id),
                incubators=evolution.incubators,
                candidates_per_cycle=evolution.candidates_per_cycle,
            )
        )
        self.store = self.node.store
        self.state = LedgerState(self.store, cluster.ids)
        timers = cluster.timers
        self.engine = RaftEngine(
            node_id,
            self.transport,
            cluster.ids,
            cluster.journal_path(node_id),
            RaftTimers(
                election_min=timers.election_min,
                election_max=timers.election_max,
                heartbeat=timers.heartbeat,
                # A leader that hears from no majority for two election timeouts steps
                # down; shorter, and a leader whose followers are merely busy is deposed.
                leader_fallback=2 * timers.election_max,
            ),
        )
        self.engine.on_commit(self._on_commit)
        compaction = cluster.compaction
        self.engine.on_snapshot(self, compact_after=compaction.after, keep=compaction.keep)
        self.transport.serve("admin", self._admin)
        self.transport.serve(transfer.CHANNEL, transfer.serve(self.state))
        # Remote actor messages: peers may ask this node's incubators to prove a candidate.
        self._codec = remote.Codec(REMOTE_TYPES)
        remote.serve(
            self.transport,
            self._codec,
            asks={"incubator": self._incubate_for_peer},
            accepts={"incubator": (Incubate,)},
        )
        self._remote_incubators: list[remote.RemoteActorRef] = []
        self.node.supervisor.start("validator", lambda: Validator.start(self.node.sandbox))
        self._changed = threading.Condition()
        self._applied = self.state.applied_index
        self._decided: dict[str, str] = {}
        self._validations: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._commits: queue.Queue[Any] = queue.Queue()
        self._held: Any = None  # taken off the queue but due after the batch in hand
        self._stopped = False
        #: why this node stopped applying the ledger (None while healthy)
        self.halted: str | None = None
        #: what this node's evolution is doing now (shown by `status`)
        self.stage = "idle"
        self._queued: set[tuple[str, str]] = set()
        self._threads: list[threading.Thread] = []
        self._coordinators: dict[str, Coordinator] = {}
        self.counters: dict[str, int] = {
            "adopted": 0,
            "rejected": 0,
            "votes": 0,
            "cycle_errors": 0,
            "incubated_for_peers": 0,
        }
        #: the last state transfer this node received (shown by `status`)
        self.last_transfer: transfer.Fetched | None = None

    # -- lifecycle --

    def start(self) -> None:
        """Listen, join the ledger, then start voting and evolving; a taken port fails here."""
        self.transport.start()
        if self.state.applied_index == 0 and self.cluster.journal_path(self.id).exists():
            log.warning(
                "%s: the store is empty but a ledger journal exists: rebuilding the store from the ledger",
                self.id,
            )
        self.engine.start()
        for (
            genome
        ) in self.store.genomes():  # proposals that waited for this node's vote while it was down
            for proposal, data in self.store.head(genome).proposals.items():
                if self.id not in data["votes"]:
                    self._queued.add((proposal, data["version"]))
                    self._validations.put((genome, proposal, data["version"]))
        if self.cluster.evolution.spread:  # the leader's candidates are proven on every node
            for peer in self.cluster.ids:
                if peer != self.id:
                    ref = remote.RemoteActorRef(self.transport, peer, "incubator", self._codec)
                    self._remote_incubators.append(ref)
                    self.node.supervisor.add("incubator", ref)
        for name, target in (
            ("apply", self._apply_loop),
            ("validate", self._validate_loop),
            ("evolve", self._evolve_loop),
        ):
            thread = threading.Thread(target=target, name=f"{self.id}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "node %s started: store %s, members %s",
            self.id,
            self.store.url,
            ", ".join(self.state.members),
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.node.stopping.set()
        self._validations.put(None)
        self.engine.stop()  # no more commits after this: then the applier drains and ends
        self._commits.put(None)
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self.transport.stop()
        self.node.close()

    def __enter__(self) -> SwarmNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ledger --

    def _on_commit(self, committed: Any) -> None:
        """The engine's applier hands entries over in order; ours applies them in runs."""
        self._commits.put(committed)

    def _incubate_for_peer(self, message: Incubate) -> Any:
        """A peer's candidate, proven on this node's incubators (a transport worker waits)."""
        self.counters["incubated_for_peers"] += 1
        return self.node.supervisor.ask("incubator", message)

    # -- snapshots (the engine's SnapshotApp) --

    def applied_index(self) -> int:
        return self.state.applied_index

    def snapshot_state(self, index: int) -> bytes:
        return self.state.snapshot_state(index)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """In log order with the entries: the apply loop stands on it before going on."""
        self._commits.put(snapshot)

    def _stand_on(self, snapshot: Snapshot) -> None:
        """Reach the snapshot's index: from this store if it has it, else from a peer."""
        if self.state.applied_index >= snapshot.index:
            if snapshot.source is None:  # our own snapshot at start: its member list
                self.state.restore(snapshot.index, snapshot.state)
            return
        behind = self.state.applied_index
        log.warning(
            "%s: the ledger before index %d was compacted and this store is at %d: fetching the state from a peer",
            self.id,
            snapshot.index,
            behind,
        )
        self.stage = f"fetching state (index {snapshot.index})"

        def peers() -> list[str]:
            others = [m for m in self.engine.members() if m != self.id]
            leader = self.engine.leader()
            first = [p for p in (snapshot.source, leader) if p and p in others]
            return list(dict.fromkeys([*first, *others]))

        if not peers():
            self.halted = (
                f"the store is at ledger index {behind}, behind this node's snapshot at {snapshot.index}, and no "
                "peer can send the state: restore the store from a backup, or move the journal and its .snap away "
                "to start a new ledger"
            )
            log.critical("%s: %s", self.id, self.halted)
            self.stage = "halted"
            return
        shown = [0.0]

        def progress(done: int, total: int) -> None:
            self.stage = f"fetching state: {done} of {total} events"
            if time.monotonic() - shown[0] >= 2.0:  # a long transfer is never silent in the log
                shown[0] = time.monotonic()
                log.info("%s: %s", self.id, self.stage)

        got = transfer.fetch_from_any(
            self.transport, self.state, peers, snapshot.index, self.node.stopping, progress=progress
        )
        self.stage = "idle"
        if self.state.applied_index < snapshot.index:
            # Stopping mid-fetch: the entries queued after the snapshot must not be applied
            # over the hole; the next start fetches again.
            self.halted = f"stopped before the state up to ledger index {snapshot.index} arrived"
            return
        if got is not None:
            self.last_transfer = got
            log.info(
                "%s: fetched %d events (%.1f MB) up to index %d from %s in %.1f s",
                self.id,
                got.events,
                got.size / 1e6,
                got.index,
                got.peer,
                got.seconds,
            )
            with self._changed:
                self._applied = max(self._applied, got.index)
                self._changed.notify_all()

    def _apply_loop(self) -> None:
        """Apply committed entries, as many as are waiting, in one store transaction.

        A store that cannot be written stops this node's applying (fail-stop): carrying
        on would record later indexes over a missing one.  A restart re-delivers from
        the journal and applies what is missing.
        """
        while True:
            first, self._held = (
                (self._held, None) if self._held is not None else (self._commits.get(), None)
            )
            if first is None:
                return
            if isinstance(first, Snapshot):
                if not self.halted:
                    self._stand_on(first)
                continue
            batch = [first]
            while len(batch) < APPLY_BATCH:
                try:
                    more = self._commits.get_nowait()
                except queue.Empty:
                    break
                if more is None or isinstance(more, Snapshot):
                    self._held = more  # handled next, in order
                    break
                batch.append(more)
            if self.halted:
                continue
            try:
                results = self.state.apply_batch([(c.index, c.data) for c in batch])
            except Exception as exc:
                self.halted = (
                    f"applying ledger entries {batch[0].index}–{batch[-1].index} failed: {exc}"
                )
                log.critical(
                    "%s: %s; this node stops applying until it is restarted", self.id, self.halted
                )
                continue
            self._after_apply(results, batch[-1].index)

    def _after_apply(self, results: list[Applied], upto: int) -> None:
        with self._changed:
            self._applied = max(self._applied, upto)
            for applied in results:
                self._decided.update(applied.decided)
                for verdict in applied.decided.values():
                    self.counters["adopted" if verdict == "adopt" else "rejected"] += 1
            self._changed.notify_all()
        for applied in results:
            if applied.genome is None:
                continue
            for proposal, (version, voters) in applied.waiting.items():
                if self.id not in voters and (proposal, version) not in self._queued:
                    self._queued.add((proposal, version))
                    self._validations.put((applied.genome, proposal, version))

    def wait_applied(self, index: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._applied < index:
                left = deadline - time.monotonic()
                if left <= 0 or self.node.stopping.is_set():
                    raise ConsensusError(
                        f"{self.id}: ledger entry {index} committed but not applied within {timeout:.0f} s"
                    )
                self._changed.wait(left)

    def propose(self, data: bytes, timeout: float = 10.0) -> int:
        """Commit an entry and wait until this node's store has applied it."""
        index = self.engine.propose(data, timeout=timeout)
        self.wait_applied(index, timeout)
        return index

    def wait_decided(self, proposal: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while proposal not in self._decided:
                left = deadline - time.monotonic()
                if left <= 0 or self.node.stopping.is_set():
                    return None
                self._changed.wait(left)
            return self._decided[proposal]

    # -- votes --

    def _validate_loop(self) -> None:
        while True:
            job = self._validations.get()
            if job is None or self.node.stopping.is_set():
                return
            genome, proposal, version = job
            try:
                self._validate(genome, proposal, version)
            except TarsError as exc:
                log.warning("%s: cannot vote on %s of %s yet: %s", self.id, proposal, genome, exc)
                self._queued.discard((proposal, version))
            except Exception:
                log.exception("%s: validating %s of %s failed", self.id, proposal, genome)
                self._queued.discard((proposal, version))

    def _validate(self, genome: str, proposal: str, version: str) -> None:
        head = self.store.head(genome)
        data = head.proposals.get(proposal)
        if data is None or data["version"] != version or self.id in data["votes"]:
            return  # decided, rebased or voted meanwhile
        parent = (
            head.tree
            if data["parent"] == head.version
            else self.store.materialise(genome, data["parent"])
        )
        manifest = parse_manifest(head.manifest_text, f"{genome}/genome.toml")
        verdict: Verdict = self.node.supervisor.ask(
            "validator", Validate(genome, proposal, version, manifest, parent, data["patch"])
        )
        log.info(
            "%s votes %s on %s (%s): %s",
            self.id,
            "yes" if verdict.yes else "no",
            proposal,
            short(version),
            verdict.reason,
        )
        self.propose(
            vote_entry(genome, proposal, version, self.id, verdict.yes, verdict.reason, time.time())
        )
        self.counters["votes"] += 1

    # -- evolution (the leader's job) --

    def _evolve_loop(self) -> None:
        evolution = self.cluster.evolution
        role = ""
        while not self.node.stopping.wait(0.2):
            status = self.engine.status()
            if status.get("role") != role:
                role = str(status.get("role"))
                log.info(
                    "%s is %s in term %s (leader %s)",
                    self.id,
                    role,
                    status.get("term"),
                    status.get("leader"),
                )
            if not self.evolve_enabled or self.engine.leader() != self.id:
                continue
            try:
                for folder in self.cluster.genome_dirs:
                    name = self._ensure_registered(folder)
                    head = self.store.head(name)
                    if head.cycles_completed >= evolution.cycles:
                        continue
                    self._coordinator(name).cycle(head.cycles_completed + 1, evolution.seed)
                    break
            except TarsError as exc:
                self.counters["cycle_errors"] += 1
                log.warning("%s: cycle interrupted, will retry: %s", self.id, exc)
            except Exception:
                self.counters["cycle_errors"] += 1
                log.exception("%s: cycle failed", self.id)

    def _ensure_registered(self, folder: Path) -> str:
        manifest, tree = load_genome(folder)
        try:
            self.store.head(manifest.name)
            return manifest.name
        except UnknownGenomeError:
            pass
        fitness = self.node.baseline(manifest, tree)
        self.propose(
            register_entry(manifest.name, tree["genome.toml"], tree, fitness, self.id, time.time())
        )
        return manifest.name

    def _coordinator(self, genome: str) -> Coordinator:
        if genome not in self._coordinators:
            self._coordinators[genome] = Coordinator(
                self.store,
                self.node.supervisor,
                genome,
                self.id,
                candidates_per_cycle=self.cluster.evolution.candidates_per_cycle,
                recorder=self._record,
                progress=self._progress,
            )
        return self._coordinators[genome]

    def _progress(self, stage: str, info: dict[str, Any]) -> None:
        """What the leader is doing, for its log and for `status` (the demo shows it).

        A leader deposed mid-cycle stops at the next stage instead of benchmarking on
        cores the new leader needs; the new leader runs the cycle from the start.
        """
        cycle = info.get("cycle")
        if stage in ("analyze", "generate", "incubate") and self.engine.leader() != self.id:
            self.stage = "idle"
            raise ConsensusError(
                f"{self.id} is no longer the leader; cycle {cycle} is left to the new leader"
            )
        if stage == "analyze":
            self.stage = f"cycle {cycle}: profiling {info['version']}"
        elif stage == "generate":
            self.stage = (
                f"cycle {cycle}: {info['opportunities']} opportunities, {info['plans']} plans"
            )
        elif stage == "incubate":
            self.stage = f"cycle {cycle}: proving {info['candidates']} candidates in the sandbox"
        elif stage == "cycle":
            result = info["result"]
            self.stage = f"cycle {cycle}: done"
            log.info(
                "%s: cycle %s took %.1f s (%.1f s in the genome's processes), %d candidates, adopted %s",
                self.id,
                cycle,
                result.wall_seconds,
                result.child_seconds,
                result.candidates,
                short(result.adopted) if result.adopted else "nothing",
            )
            return
        else:
            return
        log.info("%s: %s", self.id, self.stage)

    def _record(
        self,
        genome: str,
        node: str,
        cycle: int,
        seed: int,
        evaluated: list[CandidateRecord],
        adoption: Adoption | None,
        held: list[Held],
    ) -> bool:
        """A cycle's results go to the ledger; a winner waits for the swarm's votes."""
        if adoption is not None:
            self.stage = f"cycle {cycle}: proposing {short(adoption.version)}, waiting for votes"
        self.propose(cycle_entry(genome, node, cycle, seed, evaluated, held, adoption, time.time()))
        if adoption is None:
            return False
        pid = proposal_id(genome, node, cycle, adoption.version)
        with self._changed:
            known = pid in self._decided or pid in self.store.head(genome).proposals
        if not known:
            # Another leader recorded this cycle first (we were deposed mid-cycle): the
            # ledger dropped our entry, so no vote will ever come.
            log.info(
                "%s: cycle %d of %s was recorded by another leader; proposal dropped",
                self.id,
                cycle,
                genome,
            )
            return False
        return self.wait_decided(pid, timeout=PROPOSAL_TIMEOUT) == "adopt"

    # -- admin requests (the CLI) --

    def status(self) -> dict[str, Any]:
        engine = self.engine.status()
        heads: dict[str, Any] = {}
        for name in self.store.genomes():
            head = self.store.head(name)
            heads[name] = {
                "version": head.version,
                "fitness": head.fitness,
                "versions": head.versions_count,
                "cycles": head.cycles_completed,
                "waiting": len(head.proposals),
                "chain": self.store.chain(name),
            }
        return {
            "node": self.id,
            "role": engine.get("role"),
            "leader": engine.get("leader"),
            "term": engine.get("term", 0),
            "commit_index": engine.get("commit_index", 0),
            "applied_index": self._applied,
            "members": self.state.members,
            "heads": heads,
            "halted": self.halted,
            "stage": self.stage,
            "counters": {
                **self.counters,
                **self.transport.stats(),
                "skipped_entries": self.state.rejected_entries,
                "incubated_on_peers": sum(ref.asks for ref in self._remote_incubators),
            },
            "log": {
                key: engine.get(key, 0)
                for key in (
                    "log_start",
                    "log_len",
                    "snapshot_index",
                    "compactions",
                    "snapshots_installed",
                )
            },
            "last_transfer": self.last_transfer._asdict()
            if self.last_transfer is not None
            else None,
        }

    def _admin(self, sender: str, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("op"), str):
            raise TarsError("admin request must be a map with an 'op'")
        op = body["op"]
        if op == "status":
            return self.status()
        if op in ("add", "remove"):
            return self._change_members(op, str(body.get("node", "")))
        if op == "rollback":
            genome, to = str(body.get("genome", "")), str(body.get("to", ""))
            try:
                target = self.store.resolve(genome, to)
                if target == self.store.head(genome).version:
                    raise PolicyError(
                        f"{genome} is already at {short(target)}",
                        hint="roll back to an earlier version (`tars log lineage` lists them)",
                    )
                reason = str(body.get("reason", "manual rollback"))
                index = self.propose(rollback_entry(genome, target, reason, sender, time.time()))
            except TarsError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "index": index, "head": self.store.head(genome).version}
        if op == "block":
            # Fault injection for partition tests: drop this node's traffic to and from
            # these peers at the transport, as a cut network would; [] heals.
            peers = [str(p) for p in body.get("peers", [])]
            self.transport.block(peers)
            log.warning(
                "%s: traffic with %s blocked by an admin request",
                self.id,
                ", ".join(peers) or "nobody",
            )
            return {"ok": True, "blocked": peers}
        raise TarsError(
            f"unknown admin op {op!r}", hint="ops: status, add, remove, rollback, block"
        )

    def _change_members(self, op: str, member: str) -> dict[str, Any]:
        from runtime.config import load_cluster
        from runtime.transport import Peer

        try:
            if op == "add":
                fresh = load_cluster(self.cluster.path)
                self.transport.add_peer(
                    Peer(member, fresh.endpoint(member), fresh.public_key(member))
                )
                self.engine.add_member(member)
                members = sorted(set(self.state.members) | {member})
            else:
                self.engine.remove_member(member)
                members = sorted(set(self.state.members) - {member})
            self.propose(members_entry(members, self.id, time.time()))
        except TarsError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "error": None, "members": members}


#: Committed entries a node applies in one store transaction when it has a backlog.
APPLY_BATCH = 256
#: How long a proposer waits for the swarm's votes before it moves on (they still count later).
PROPOSAL_TIMEOUT = 120.0
