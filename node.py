"""Assembles one TARS node: store + sandbox + supervised actors; clean shutdown.

Everything with a side effect is created here and handed in, so the parts stay testable
on their own and a node is built the same way by the CLI, the demo and the tests.
:class:`Node` is one replica alone; :class:`SwarmNode` wires a swarm member from its
parts (docs/swarm.md, "A node's parts"): transport, Raft engine, the ledger's applier
(``consensus.applier``), the Voter (``actors.voter``), the leader's loop
(``actors.evolver``) and the admin channel (``consensus.admin``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from actors.analyzer import Analyzer
from actors.coordinator import Coordinator, Progress, RunSummary, _quiet
from actors.evolver import PROPOSAL_TIMEOUT, Evolver, baseline
from actors.generator import Generator, use_model
from actors.governor import Governor
from actors.incubator import Incubator
from actors.live import Live
from actors.messages import Validate, Verdict
from actors.planner import Planner
from actors.spread import Spread
from actors.supervisor import Supervisor
from actors.validator import Validator
from actors.voter import Votes
from consensus import transfer
from consensus.admin import Admin
from consensus.applier import APPLY_BATCH, Applier, Clock, GuardedLedgerState
from consensus.journal import check_journal
from consensus.ledger import LEDGER
from consensus.signing import node_keys
from events.store import GenomeStore
from evolution.errors import ConfigError, IntegrityError, StoreError, UnknownGenomeError
from evolution.manifest import Manifest
from evolution.policy import Policy
from evolution.tree import Tree
from runtime.cluster_config import ADMIN, sandbox_settings
from runtime.cluster_llm import node_session
from runtime.config import ClusterConfig
from runtime.dashboard import for_node
from runtime.docker_service import service_containers
from runtime.genome_files import load_genome
from runtime.sandbox import Sandbox

if TYPE_CHECKING:
    from runtime.llm_session import LLMSession

__all__ = ["APPLY_BATCH", "PROPOSAL_TIMEOUT", "Clock", "Node", "NodeConfig", "SwarmNode"]

log = logging.getLogger("tars.node")


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    store_url: str
    workdir: Path
    isolation: str = "auto"
    incubators: int = 0  # 0: one per core
    candidates_per_cycle: int = 4
    #: run candidates where the full jail is missing (docs/sandbox.md); else refuse
    accept_weak_isolation: bool = False
    disk_mb: int | None = None  # caps each run's disk quota (cluster.yml sandbox.disk_mb)
    #: what never leaves a run's output (the node's key files' text): scrubbed from evidence
    secrets: tuple[str, ...] = ()
    #: how cycles are planned ("learning", "plain", "random": evolution.planner.PLANNERS)
    #: and whether a cycle's winners are composed; the benchmarks switch them off
    planner: str = "learning"
    compose: bool = True


class Node:
    """One replica: owns its store, its sandbox and its actors."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.sandbox = Sandbox(
            config.workdir / "sandbox", isolation=config.isolation,
            accept_weak_isolation=config.accept_weak_isolation, disk_mb=config.disk_mb,
            secrets=config.secrets,
        )  # fmt: skip
        #: the isolation in force, one line; a machine without the jail refuses here
        self.isolation = self.sandbox.isolation
        log.info("%s: candidate isolation: %s", config.node_id, self.isolation)
        self.store = GenomeStore.open(config.store_url)
        self.supervisor = Supervisor()
        self.stopping = threading.Event()
        size = config.incubators or max(1, os.cpu_count() or 1)
        sandbox = self.sandbox
        self.supervisor.start("analyzer", lambda: Analyzer.start(sandbox))
        self.supervisor.start("planner", Planner.start)
        self.supervisor.start("generator", Generator.start)
        self.supervisor.start("incubator", lambda: Incubator.start(sandbox), size=size)
        self.supervisor.start("governor", Governor.start)
        # a single node runs the held-out tests before it adopts; a swarm's voters do
        self.supervisor.start("validator", lambda: Validator.start(sandbox))

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
        return baseline(self.sandbox, manifest, tree)

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
            held_out=True,
            planner=self.config.planner,
            compose=self.config.compose,
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
    applier threads (committed entries reach the :class:`Applier`, which applies them
    in runs on its own thread), the Voter actor (re-runs the tests of a peer's proposal,
    then votes through the ledger) and the :class:`Evolver` (only the leader evolves, so
    the swarm spends its CPU on one line of work and peers spend theirs on checking it).
    ``clock`` stamps the ledger entries this node writes.
    """

    def __init__(
        self,
        cluster: ClusterConfig,
        node_id: str,
        *,
        evolve: bool = True,
        clock: Clock = time.time,
        accept_weak_isolation: bool = False,
    ) -> None:
        from consensus.engine import RaftEngine
        from runtime.node_transport import node_transport

        self.cluster, self.id, self.clock = cluster, node_id, clock
        self.accept_weak_isolation = accept_weak_isolation
        evolution = cluster.evolution
        #: what this node's damage messages tell the user to run
        self.repair = repair_command(cluster, node_id)
        signing = node_keys(cluster, node_id)  # signed decisions (docs/swarm.md)
        self.transport = node_transport(cluster, node_id)
        self.node = self._open(cluster, node_id)
        self.store, stopping = self.node.store, self.node.stopping
        self._check_store()
        self.llm = self._model(cluster, node_id)  # cluster.yml's llm: section (docs/llm.md)
        self.state = GuardedLedgerState(
            self.store, cluster.ids, check=self._store_check, keys=signing.keys,
            approval=signing.approval,  # who may approve a held candidate (docs/approval.md)
        )  # fmt: skip
        self.engine = RaftEngine(
            node_id, self.transport, cluster.ids, cluster.journal_path(node_id), cluster.timers
        )
        #: what this node's evolution is doing now (shown by `status`)
        self.stage = "idle"
        self.applier = Applier(node_id, self.state, self.store, self.engine, self.transport,
                               stopping, on_applied=self._after_apply, stage=self._set_stage,
                               repair=self.repair, signer=signing.signer)  # fmt: skip
        self.votes = Votes(
            node_id, self.store, self._validate, self.applier.propose, clock, stopping
        )
        self.evolver = Evolver(
            node_id,
            store=self.store,
            supervisor=self.node.supervisor,
            engine=self.engine,
            ledger=self.applier,
            evolution=evolution,
            genome_dirs=cluster.genome_dirs,
            baseline=self.node.baseline,
            clock=clock,
            stopping=stopping,
            stage=self._set_stage,
            enabled=evolve,
            offering=lambda: self.spread.pooled,  # commit offers while peers prove candidates
        )
        self.spread = Spread(
            self.transport, self.node.supervisor, store=self.store, offers=self.state.offers.get
        )
        self.live = self._live(cluster, clock, stopping)  # service, Deployer, /metrics
        self.service = self.live.service
        self.admin = Admin(
            node_id,
            store=self.store,
            state=self.state,
            engine=self.engine,
            ledger=self.applier,
            counters=self._status_counters,
            stage=lambda: self.stage,
            add_peer=self._add_peer,
            block=self.transport.block,
            clock=clock,
            admin_signer=signing.admin,
            sign_key_of=signing.sign_key_of,
            ops=self.live.admin_ops(),
        )
        self._connect(cluster)
        # the node's own web dashboard on its HTTP front, at /dashboard (docs/dashboard.md)
        self.service.front.dashboard = for_node(cluster, node_id, lambda body: self._admin(ADMIN, body))  # fmt: skip
        self._stopped = False

    def _live(self, cluster: ClusterConfig, clock: Clock, stopping: threading.Event) -> Live:
        return Live(self.id, sandbox=self.node.sandbox, store=self.store,
                    http=cluster.http_bind(self.id), propose=self.applier.propose, clock=clock,
                    stopping=stopping, rollout=cluster.model.rollout, raft=self._raft_figures,
                    transport=self.transport.stats,
                    containers=service_containers(cluster, self.id))  # fmt: skip

    def _connect(self, cluster: ClusterConfig) -> None:
        """Hand the parts to each other: commits, snapshots, the channels peers use."""
        self.engine.on_commit(self.applier.on_commit)
        compaction = cluster.compaction
        self.engine.on_snapshot(self.applier, compact_after=compaction.after, keep=compaction.keep)
        self.transport.serve("admin", self._admin)
        self.transport.serve(transfer.CHANNEL, transfer.serve(self.state))

    # -- lifecycle (a node that finds its own store or journal damaged refuses to start) --

    def _open(self, cluster: ClusterConfig, node_id: str) -> Node:
        evolution = cluster.evolution
        spec = (cluster.store_url(node_id), cluster.state_dir(node_id))
        jail = sandbox_settings(cluster)
        weak = self.accept_weak_isolation or jail.accept_weak_isolation
        try:
            return Node(NodeConfig(node_id, *spec, incubators=evolution.incubators,
                                   candidates_per_cycle=evolution.candidates_per_cycle,
                                   accept_weak_isolation=weak, disk_mb=jail.disk_mb,
                                   secrets=_secrets(cluster, node_id)))  # fmt: skip
        except StoreError as exc:
            hint = f"{exc.hint or 'check the store'}; if it is damaged, run `{self.repair}`"
            raise type(exc)(f"{node_id} refuses to start: {exc}", hint=hint) from exc

    def _model(self, cluster: ClusterConfig, node_id: str) -> LLMSession | None:
        """The generator also asks cluster.yml's models; a key not in the environment refuses."""
        try:
            session = node_session(cluster, node_id)
        except ConfigError:
            self.node.close()
            raise
        if session is not None:
            use_model(self.node.supervisor, session, self.store, swarm=True)
        return session

    def _store_check(self) -> object:
        return self.store.check(store_mark(self.cluster, self.id), [LEDGER])

    def _check_store(self) -> None:
        """SQLite's quick_check and the hash chain from the last check (docs/event-store.md)."""
        started = time.monotonic()
        try:
            found = self._store_check()
        except StoreError as exc:
            self.node.close()
            raise (IntegrityError if isinstance(exc, IntegrityError) else StoreError)(
                f"{self.id} refuses to start: its store {self.store.url} is damaged: {exc}",
                hint=f"stop the node if it runs and run `{self.repair}`: it moves the store and "
                "journal aside (never deleting them); the node rebuilds from the swarm",
            ) from exc
        log.info("%s: store checked in %.2f s: %s", self.id, time.monotonic() - started, found)

    def start(self) -> None:
        """Listen, join the ledger, then start voting and evolving; a taken port fails here."""
        check_journal(
            self.cluster.journal_path(self.id), self.repair, f"{self.id} refuses to start"
        )
        self.transport.start()
        if self.state.applied_index == 0 and self.cluster.journal_path(self.id).exists():
            log.warning(
                "%s: the store is empty but a ledger journal exists: rebuilding the store from the ledger",
                self.id,
            )
        self.engine.start()
        self.votes.start()  # queues the proposals that waited for this node's vote
        if self.cluster.evolution.spread:  # the leader's candidates are proven on every node
            self.spread.pool_with(peer for peer in self.cluster.ids if peer != self.id)
        self.applier.start()
        self.live.start()
        self.evolver.start()
        members = ", ".join(self.state.members)
        log.info("node %s started: store %s, members %s", self.id, self.store.url, members)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.node.stopping.set()
        self.votes.stop()
        self.live.stop()  # the Deployer's last step still reaches the ledger; workers killed
        self.engine.stop()  # no more commits after this: then the applier drains and ends
        self.applier.stop()
        self.applier.join(timeout=30)
        self.votes.join(timeout=30)
        self.evolver.join(timeout=30)
        self.transport.stop()
        self.node.close()
        if self.llm is not None:
            self.llm.close()

    def __enter__(self) -> SwarmNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ledger (the applier's) --

    def propose(self, data: bytes, timeout: float = 10.0) -> int:
        """Commit an entry and wait until this node's store has applied it."""
        return self.applier.propose(data, timeout)

    def wait_applied(self, index: int, timeout: float = 30.0) -> None:
        self.applier.wait_applied(index, timeout)

    def wait_decided(self, proposal: str, timeout: float) -> str | None:
        return self.applier.wait_decided(proposal, timeout)

    @property
    def halted(self) -> str | None:
        """Why this node stopped applying the ledger (None while healthy)."""
        return self.applier.halted

    @property
    def last_transfer(self) -> transfer.Fetched | None:
        """The last state transfer this node received (shown by `status`)."""
        return self.applier.last_transfer

    @property
    def evolve_enabled(self) -> bool:
        return self.evolver.enabled

    @property
    def counters(self) -> dict[str, int]:
        """Decisions, votes, failed cycles and work done for peers, as `status` shows them."""
        return {
            **self.applier.counters,
            **self.votes.counters,
            **self.evolver.counters,
            "incubated_for_peers": self.spread.served,
            "refused_incubations": self.spread.refused,
        }

    # -- what the parts are handed --

    def _after_apply(self, results: list[Any]) -> None:
        self.votes.after_apply(results)
        self.live.after_apply(results)

    def _raft_figures(self) -> dict[str, Any]:
        return {**self.engine.status(), "applied_index": self.applier.applied}

    def _set_stage(self, stage: str) -> None:
        self.stage = stage

    def _validate(self, message: Validate) -> Verdict:
        verdict: Verdict = self.node.supervisor.ask("validator", message)
        return verdict

    def _add_peer(self, member: str) -> None:
        """A new member's address and key, read afresh from cluster.yml."""
        from runtime.config import load_cluster
        from runtime.transport import Peer

        fresh = load_cluster(self.cluster.path)
        self.transport.add_peer(Peer(member, fresh.endpoint(member), fresh.public_key(member)))

    def status(self) -> dict[str, Any]:
        """What the admin channel's ``status`` answers (see :meth:`Admin.status`)."""
        return {**self.admin.status(), "isolation": self.node.isolation, "http": self.live.url}

    def _admin(self, sender: str, body: Any) -> Any:
        """The admin channel; ``status`` also says the isolation in force (`cluster status`)."""
        answer = self.admin.handle(sender, body)
        if isinstance(body, dict) and body.get("op") == "status" and isinstance(answer, dict):
            answer = {**answer, "isolation": self.node.isolation, "http": self.live.url}
        return answer

    def _status_counters(self) -> dict[str, int]:
        return {
            **self.counters,
            **self.transport.stats(),
            "skipped_entries": self.state.rejected_entries,
            "incubated_on_peers": self.spread.asked,
        }


def repair_command(cluster: ClusterConfig, node_id: str) -> str:
    """The `tars node repair` command line for this node of this cluster."""
    return f"tars node repair --config {cluster.path} --id {node_id}"


def store_mark(cluster: ClusterConfig, node_id: str) -> Path:
    """Where the store's start-up check keeps what it verified (see events/verify.py)."""
    return cluster.state_dir(node_id) / "store.verified"


def _secrets(cluster: ClusterConfig, node_id: str) -> tuple[str, ...]:
    """The key files a run's output must never carry: this node's, the admin's and every
    approver's (a person's signing key adopts held candidates), those present here."""
    names = dict.fromkeys((node_id, "admin", *cluster.approvers))
    files = [cluster.keys_dir / f"{name}.key_secret" for name in names]
    return tuple(f.read_text(encoding="utf-8") for f in files if f.is_file())
