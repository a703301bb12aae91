"""`tars demo`: the main job on a fresh machine, on the embedded defaults."""

from __future__ import annotations

import time
from pathlib import Path

from rich.panel import Panel
from rich.table import Table

from cli.common import console
from cli.progress import CycleProgress
from evolution.stats import compare, median
from evolution.tree import short
from node import Node, NodeConfig
from runtime.incubation import IncubationReport, incubate

#: The genomes shipped with TARS live beside the packages.
GENOMES = Path(__file__).resolve().parent.parent / "genomes"
DEMO_GENOME = GENOMES / "logstats"


def run_demo(workdir: Path, seed: int, cycles: int, candidates: int, incubators: int = 1) -> None:
    started = time.monotonic()
    workdir = workdir.resolve()
    store_path = workdir / "node-1" / "store.db"
    console.print(Panel.fit(
        f"TARS demo: one node evolves [bold]{DEMO_GENOME.name}[/] for {cycles} cycles (seed {seed})\n"
        f"store: {store_path}", title="tars demo",
    ))
    config = NodeConfig(
        "node-1", f"sqlite:///{store_path}", workdir / "node-1", incubators=incubators, candidates_per_cycle=candidates
    )
    with Node(config) as node:
        node.install_signal_handlers()
        console.print(f"sandbox: {node.sandbox.isolation}")
        with CycleProgress(console, cycles, 0, label="logstats") as progress:
            name, _ = node.register(DEMO_GENOME, progress=progress)
            first = node.store.head(name)
            summary = node.evolve(name, cycles, seed, progress=progress)
        head = node.store.head(name)
        manifest = node.coordinator(name).manifest
        with console.status("measuring the first version against the final head (interleaved A/B)…"):
            report: IncubationReport = incubate(node.sandbox, manifest, "final", _registered_tree(node, name), head.tree, rounds=5)
        comparison = compare(report.parent_samples, report.candidate_samples, direction=manifest.fitness.direction) if report.failure is None else None
    table = Table(title=f"{name}: {len(summary.adopted)} versions adopted in {cycles} cycles", show_header=False)
    table.add_row("first version", short(first.version))
    table.add_row("head", short(head.version))
    if comparison is not None:
        unit = manifest.fitness.metric
        table.add_row(f"fitness before ({unit})", f"{median(report.parent_samples):.4f}")
        table.add_row(f"fitness after ({unit})", f"{median(report.candidate_samples):.4f}")
        table.add_row("improvement", f"[bold green]{comparison.ratio:.2f}×[/] (95% CI {comparison.low:.2f}–{comparison.high:.2f})")
    else:
        table.add_row("final check", f"[red]failed: {report.detail}[/]")
    table.add_row("tests of head", "pass" if report.tests_passed else "FAIL")
    table.add_row("event log", str(store_path))
    table.add_row("took", f"{time.monotonic() - started:.0f} s")
    console.print(table)
    console.print(f"inspect it:  tars log ls --store {store_path}\n             tars log lineage --store {store_path}\n             tars log verify --store {store_path}")


def _registered_tree(node: Node, name: str) -> dict[str, str]:
    for entry in node.store.log(genome=name, limit=1):
        return node.store.materialise(name, entry.version or "")
    raise AssertionError("registered genome has no first event")
