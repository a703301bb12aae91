"""Assembles one TARS node: store + sandbox + supervised actors; clean shutdown.

Everything with a side effect is created here and handed in, so the parts below stay
testable on their own and a node can be built the same way by the CLI, the demo and
the tests.  The swarm issue adds the ledger and the transport to this assembly.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from actors.analyzer import Analyzer
from actors.coordinator import Coordinator, Progress, RunSummary, _quiet
from actors.generator import Generator
from actors.governor import Governor
from actors.incubator import Incubator
from actors.planner import Planner
from actors.supervisor import Supervisor
from events.store import GenomeStore
from evolution.errors import GenomeError, UnknownGenomeError
from evolution.manifest import Manifest
from evolution.policy import Policy
from evolution.tree import Tree
from runtime.genome_files import load_genome
from runtime.incubation import measure, run_tests
from runtime.sandbox import Sandbox


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
            last = (tests.stderr.strip().splitlines() or tests.stdout.strip().splitlines() or [""])[-1]
            raise GenomeError(
                f"genome {manifest.name}: its own tests fail before any change ({tests.detail}; {last[:160]})",
                hint="fix the genome's tests or its code first; TARS only evolves a passing genome",
            )
        try:
            samples = measure(self.sandbox, tree, manifest, repeats=3)
        except ValueError as exc:
            raise GenomeError(f"genome {manifest.name}: {exc}", hint="the bench command must print one JSON object with the fitness metric") from exc
        return sorted(samples)[1]

    def coordinator(self, genome: str, *, progress: Progress = _quiet, policy: Policy | None = None) -> Coordinator:
        return Coordinator(
            self.store, self.supervisor, genome, self.config.node_id,
            policy=policy, candidates_per_cycle=self.config.candidates_per_cycle, progress=progress,
        )

    def evolve(self, genome: str, cycles: int, seed: int, progress: Progress = _quiet) -> RunSummary:
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> Any:
        self.close()
        return None
