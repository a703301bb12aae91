"""The leader's evolution loop, and a genome's baseline fitness.

Only the leader evolves: the swarm spends its CPU on one line of work and the peers
spend theirs on checking it (their Voters).  The loop polls leadership, registers the
cluster's genomes through the ledger, and runs one cycle at a time with a
:class:`~actors.coordinator.Coordinator` whose recorder is the ledger: a cycle's
results are a ledger entry and a winner waits for the swarm's votes.

Like the Coordinator, this is a conductor in its own thread, not an actor: it waits on
the actors' answers and on the ledger, which an actor must never do for its own inbox.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from actors.coordinator import Coordinator
from actors.supervisor import Supervisor
from consensus.applier import Applier, Clock
from consensus.entries import offer_entry, offer_id
from consensus.ledger import cycle_entry, proposal_id, register_entry
from events.records import Adoption, CandidateRecord, Held
from events.store import GenomeStore
from evolution.errors import ConsensusError, GenomeError, TarsError, UnknownGenomeError
from evolution.generate import Candidate
from evolution.manifest import Manifest
from evolution.tree import Tree, short
from runtime.config import EvolutionSection
from runtime.genome_files import load_genome
from runtime.incubation import count_instructions, effective_measure, measure, run_tests
from runtime.sandbox import Sandbox

# The node's log lines keep the one logger name they had when all of this was node.py.
log = logging.getLogger("tars.node")

#: How long a proposer waits for the swarm's votes before it moves on (they still count later).
PROPOSAL_TIMEOUT = 120.0


def baseline(sandbox: Sandbox, manifest: Manifest, tree: Tree) -> float:
    """The genome must pass its own tests before any change; its first fitness."""
    tests = run_tests(sandbox, tree, manifest)
    if not tests.ok:
        last = (tests.stderr.strip().splitlines() or tests.stdout.strip().splitlines() or [""])[-1]
        raise GenomeError(
            f"genome {manifest.name}: its own tests fail before any change ({tests.detail}; {last[:160]})",
            hint="fix the genome's tests or its code first; TARS only evolves a passing genome",
        )
    try:
        if effective_measure(manifest) == "instructions":
            # The counted run is the one every candidate of this version is compared with.
            return count_instructions(sandbox, tree, manifest)
        samples = measure(sandbox, tree, manifest, repeats=3)
    except ValueError as exc:
        raise GenomeError(
            f"genome {manifest.name}: {exc}",
            hint="the bench command must print one JSON object with the fitness metric",
        ) from exc
    return sorted(samples)[1]


class Leadership(Protocol):
    """What the loop needs from the consensus engine (``RaftEngine`` offers it)."""

    def status(self) -> dict[str, Any]: ...

    def leader(self) -> str | None: ...


class Evolver:
    """The leader's loop: register the cluster's genomes, then run their cycles in turn."""

    def __init__(
        self,
        node_id: str,
        *,
        store: GenomeStore,
        supervisor: Supervisor,
        engine: Leadership,
        ledger: Applier,
        evolution: EvolutionSection,
        genome_dirs: Sequence[Path],
        baseline: Callable[[Manifest, Tree], float],
        clock: Clock,
        stopping: threading.Event,
        stage: Callable[[str], None],
        enabled: bool = True,
        offering: Callable[[], bool] = lambda: False,
    ) -> None:
        self.id = node_id
        self.store = store
        self.supervisor = supervisor
        self.engine = engine
        self.ledger = ledger
        self.evolution = evolution
        self.genome_dirs = list(genome_dirs)
        self.baseline = baseline
        self.clock = clock
        self.stopping = stopping
        self.stage = stage
        self.enabled = enabled
        #: whether peers' incubators are in the pool (spread on): a cycle then commits an offer
        self.offering = offering
        self.counters: dict[str, int] = {"cycle_errors": 0}
        self._coordinators: dict[str, Coordinator] = {}
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.id}-evolve", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the loop to end (it ends at its next poll once ``stopping`` is set)."""
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    # -- the loop --

    def _loop(self) -> None:
        role = ""
        while not self.stopping.wait(0.2):
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
            if not self.enabled or self.engine.leader() != self.id:
                continue
            try:
                self._step()
            except TarsError as exc:
                self.counters["cycle_errors"] += 1
                log.warning("%s: cycle interrupted, will retry: %s", self.id, exc)
            except Exception:
                self.counters["cycle_errors"] += 1
                log.exception("%s: cycle failed", self.id)

    def _step(self) -> None:
        """One cycle of the first genome that has cycles left (registering it if new)."""
        for folder in self.genome_dirs:
            name = self._ensure_registered(folder)
            head = self.store.head(name)
            if head.cycles_completed >= self.evolution.cycles:
                continue
            self._coordinator(name).cycle(head.cycles_completed + 1, self.evolution.seed)
            break

    def _ensure_registered(self, folder: Path) -> str:
        manifest, tree = load_genome(folder)
        try:
            self.store.head(manifest.name)
            return manifest.name
        except UnknownGenomeError:
            pass
        fitness = self.baseline(manifest, tree)
        self.ledger.propose(
            register_entry(manifest.name, tree["genome.toml"], tree, fitness, self.id, self.clock())
        )
        return manifest.name

    def _coordinator(self, genome: str) -> Coordinator:
        if genome not in self._coordinators:
            self._coordinators[genome] = Coordinator(
                self.store,
                self.supervisor,
                genome,
                self.id,
                candidates_per_cycle=self.evolution.candidates_per_cycle,
                rules=self.evolution.policy,  # the governor's hold rules (docs/approval.md)
                recorder=self._record,
                progress=self._progress,
                offer=self._offer,
            )
        return self._coordinators[genome]

    def _progress(self, stage: str, info: dict[str, Any]) -> None:
        """What the leader is doing, for its log and for `status` (the demo shows it).

        A leader deposed mid-cycle stops at the next stage instead of benchmarking on
        cores the new leader needs; the new leader runs the cycle from the start.
        """
        cycle = info.get("cycle")
        if stage in ("analyze", "generate", "incubate") and self.engine.leader() != self.id:
            self.stage("idle")
            raise ConsensusError(
                f"{self.id} is no longer the leader; cycle {cycle} is left to the new leader"
            )
        if stage == "analyze":
            now = f"cycle {cycle}: profiling {info['version']}"
        elif stage == "generate":
            now = f"cycle {cycle}: {info['opportunities']} opportunities, {info['plans']} plans"
        elif stage == "incubate":
            now = f"cycle {cycle}: proving {info['candidates']} candidates in the sandbox"
        elif stage == "cycle":
            result = info["result"]
            self.stage(f"cycle {cycle}: done")
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
        self.stage(now)
        log.info("%s: %s", self.id, now)

    def _offer(self, genome: str, parent: str, candidates: Sequence[Candidate]) -> str | None:
        """Commit the cycle's candidates before a peer is asked to prove one (issue 9): a
        peer's incubator runs only what the ledger holds.  One Raft commit more per cycle,
        and only while peers' incubators are in the pool."""
        if not self.offering():
            return None
        at = self.clock()
        offer = offer_id(genome, self.id, parent, [c.id for c in candidates], at)
        pairs = [(c.id, c.patch) for c in candidates]
        self.ledger.propose(offer_entry(genome, self.id, offer, parent, pairs, at))
        return offer

    def _record(
        self,
        genome: str,
        node: str,
        cycle: int,
        seed: int,
        evaluated: list[CandidateRecord],
        adoption: Adoption | None,
        held: list[Held],
        llm: dict[str, Any] | None = None,
    ) -> bool:
        """A cycle's results go to the ledger; a winner waits for the swarm's votes."""
        if adoption is not None:
            self.stage(f"cycle {cycle}: proposing {short(adoption.version)}, waiting for votes")
        at = self.clock()
        self.ledger.propose(
            cycle_entry(genome, node, cycle, seed, evaluated, held, adoption, at, llm=llm)
        )
        if adoption is None:
            return False
        pid = proposal_id(genome, node, cycle, adoption.version)
        if not self.ledger.known(genome, pid):
            # Another leader recorded this cycle first (we were deposed mid-cycle): the
            # ledger dropped our entry, so no vote will ever come.
            log.info(
                "%s: cycle %d of %s was recorded by another leader; proposal dropped",
                self.id,
                cycle,
                genome,
            )
            return False
        return self.ledger.wait_decided(pid, timeout=PROPOSAL_TIMEOUT) == "adopt"
