"""`tars demo`: the main job on a fresh machine — a three-node local swarm evolves a genome.

The demo writes its own cluster.yml into the workdir (free ports on 127.0.0.1, fresh
CurveZMQ keys), starts the nodes as local processes exactly as `tars cluster up` does,
watches them through the admin channel, and stops them at the end.  The leader evolves;
the followers re-run the tests of each proposal and vote through the Raft ledger.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from cli.common import console
from cli.demo_live import DemoLoad, live_rows, settle
from evolution.errors import TarsError, TransportError
from evolution.manifest import parse_manifest
from evolution.stats import compare, median
from evolution.tree import short
from runtime.ports import free_ports

#: The genomes shipped with TARS live beside the packages.
GENOMES = Path(__file__).resolve().parent.parent / "genomes"
DEMO_GENOME = GENOMES / "logstats"


def write_cluster(
    workdir: Path,
    nodes: int,
    genome: Path,
    cycles: int,
    candidates: int,
    seed: int,
    incubators: int,
) -> Path:
    """A cluster.yml for the demo, every path absolute, ports free."""
    lines = [
        "# Written by `tars demo`: a local swarm on 127.0.0.1.",
        "cluster:",
        "  name: demo",
        "  backend: process",
        f"  state: {workdir}",
        f"  keys: {workdir / 'keys'}",
        "nodes:",
    ]
    ports = free_ports(2 * nodes)  # each node's transport and its HTTP front (docs/service.md)
    for number, (port, http) in enumerate(zip(ports[::2], ports[1::2], strict=True), 1):
        lines += [f"  - id: node-{number}", "    host: 127.0.0.1", f"    port: {port}",
                  f"    http: {http}"]  # fmt: skip
    lines += [
        "genomes:",
        f"  - {genome}",
        "evolution:",
        f"  cycles: {cycles}",
        f"  candidates_per_cycle: {candidates}",
        f"  seed: {seed}",
        f"  incubators: {incubators}",
        # the nodes share the machine's cores with valgrind's counts: a live latency
        # compared at the default 1.5x over a 5 ms floor would fail good versions on noise
        "rollout:",
        "  max_p99_ratio: 3.0",
        "  p99_floor: 0.05",
        # the demo's load is light (20 requests/s): mirror half of it, judge each second
        "  interval: 1.0",
        "  min_requests: 10",
        "  mirror: 0.5",
    ]
    path = workdir / "cluster.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def run_demo(
    workdir: Path,
    seed: int,
    cycles: int,
    candidates: int,
    incubators: int = 1,
    nodes: int = 3,
    accept_weak_isolation: bool = False,
) -> None:
    from runtime.config import load_cluster
    from runtime.launcher import ProcessLauncher, node_command
    from runtime.sandbox import Sandbox

    started = time.monotonic()
    workdir = workdir.resolve()
    # The jail first: a machine without it refuses here, before any node starts.
    isolation = Sandbox(
        workdir / "demo-sandbox", accept_weak_isolation=accept_weak_isolation
    ).isolation
    console.print(f"candidate isolation: {isolation}", highlight=False, markup=False)
    earlier = sorted(workdir.glob("node-*/store.db"))
    config = load_cluster(
        write_cluster(workdir, nodes, DEMO_GENOME, cycles, candidates, seed, incubators)
    )
    created = config.ensure_keys()
    stores = {n: config.store_url(n) for n in config.ids}
    console.print(
        Panel.fit(
            f"TARS demo: a {nodes}-node swarm evolves [bold]{DEMO_GENOME.name}[/] for {cycles} cycles (seed {seed})\n"
            f"cluster: {config.path}  ({len(created)} key pairs made)\n"
            + "\n".join(
                f"{n}: {config.endpoint(n)}  store {stores[n].removeprefix('sqlite:///')}"
                for n in config.ids
            ),
            title="tars demo",
        )
    )
    if earlier:
        console.print(
            f"[yellow]{workdir} holds an earlier demo: the swarm resumes it (cycles already recorded are not run "
            "again). For a fresh run, pass a new --workdir or remove this one.[/]"
        )
    _warn_without_counter()
    command = node_command(config)
    weak = ["--accept-weak-isolation"] if accept_weak_isolation else []
    launcher = ProcessLauncher(config, tied=True, command=lambda node: [*command(node), *weak])
    load = DemoLoad(config, DEMO_GENOME.name)
    try:
        with console.status("starting the nodes…"):
            launcher.up()
            for node_id in config.ids:
                launcher.wait_ready(node_id, timeout=60)
        final = _watch(config, launcher, cycles, load)
        settle(config, DEMO_GENOME.name, final)
    finally:
        load.stop()  # before the nodes: a request to a stopping node is not a lost one
        with console.status("stopping the nodes…"):
            launcher.down()
    _summary(config, final, cycles, started, accept_weak_isolation, load)


def _warn_without_counter() -> None:
    """The demo genome is judged by instruction counts; say so when they cannot be taken."""
    from runtime.incubation import valgrind

    manifest = parse_manifest(
        (DEMO_GENOME / "genome.toml").read_text(encoding="utf-8"), str(DEMO_GENOME / "genome.toml")
    )
    if manifest.fitness.measure == "instructions" and valgrind() is None:
        console.print(
            "[yellow]valgrind is not installed: candidates are judged by timed A/B benchmarks instead of exact "
            "instruction counts, so two runs with one seed may adopt different patches "
            "(install it: apt-get install valgrind)[/]"
        )


def _status(config: Any, node_id: str) -> dict[str, Any] | None:
    from runtime.launcher import admin_request

    try:
        reply: dict[str, Any] = admin_request(config, node_id, {"op": "status"}, timeout=2.0)
    except TransportError:
        return None
    return reply


def _watch(config: Any, launcher: Any, cycles: int, load: DemoLoad) -> dict[str, dict[str, Any]]:
    """Follow the swarm until the last cycle is recorded and every node has the same head."""
    genome = DEMO_GENOME.name
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("waiting for a leader", total=cycles)
    seen_adopted = 0
    with progress:
        while True:
            statuses = {n: _status(config, n) for n in config.ids}
            live = {n: s for n, s in statuses.items() if s is not None}
            for node_id in config.ids:
                if not launcher.alive(node_id):
                    raise TarsError(
                        f"{node_id} died during the demo",
                        hint=f"see its log: {config.log_path(node_id)}",
                    )
            leader = next((s for s in live.values() if s["role"] == "leader"), None)
            if leader is None or genome not in leader["heads"]:
                what = (
                    "registering the genome (its tests and baseline benchmark)"
                    if leader
                    else "electing a leader"
                )
                progress.update(task, description=what)
                time.sleep(0.5)
                continue
            load.poll(progress.console.print)
            head = leader["heads"][genome]
            adopted = head["versions"] - 1
            if adopted > seen_adopted:
                progress.console.print(
                    f"  version {adopted} adopted by the swarm: [green]{short(head['version'])}[/] "
                    f"(fitness {_fitness(head['fitness'])}, leader {leader['node']}, term {leader['term']})"
                )
                seen_adopted = adopted
            votes = f", {head['waiting']} proposal waiting for votes" if head["waiting"] else ""
            progress.update(
                task,
                completed=min(head["cycles"], cycles),
                description=f"{leader['node']} (leader) {leader.get('stage', '')}{votes}",
            )
            heads = {s["heads"].get(genome, {}).get("chain") for s in live.values()}
            if (
                head["cycles"] >= cycles
                and not head["waiting"]
                and len(live) == len(config.ids)
                and len(heads) == 1
            ):
                return live
            time.sleep(0.5)


def _fitness(value: float | None) -> str:
    """A count in millions (instructions), anything else as it is (seconds)."""
    if value is None:
        return "?"
    return f"{value / 1e6:,.0f} M" if value >= 1e6 else f"{value:.4g}"


def _summary(
    config: Any,
    final: dict[str, dict[str, Any]],
    cycles: int,
    started: float,
    weak: bool = False,
    load: DemoLoad | None = None,
) -> None:
    from events.store import GenomeStore
    from runtime.incubation import IncubationReport, effective_measure, incubate
    from runtime.sandbox import Sandbox

    genome = DEMO_GENOME.name
    first_node = config.ids[0]
    with GenomeStore.open(config.store_url(first_node), create=False) as store:
        head = store.head(genome)
        first = next(iter(store.log(genome=genome, limit=1)))
        first_tree = store.materialise(genome, first.version or "")
        events = [(e.type, e.data) for e in store.log(genome=genome)]  # fmt: skip
    adopted = sum(1 for kind, _ in events if kind == "VersionAdopted")
    votes = sum(1 for kind, _ in events if kind == "VoteCast")
    manifest = parse_manifest(head.manifest_text, f"{genome}/genome.toml")
    counted = effective_measure(manifest) == "instructions"
    with (
        console.status("timing the first version against the final head (interleaved A/B)…"),
        Sandbox(config.state_root / "demo-sandbox", accept_weak_isolation=weak) as sandbox,
    ):
        report: IncubationReport = incubate(
            sandbox, manifest, "final", first_tree, head.tree, rounds=5, measure="benchmark"
        )
    direction = manifest.fitness.direction
    comparison = (
        None
        if report.failure is not None
        else compare(report.parent_samples, report.candidate_samples, direction=direction)
    )
    table = Table(
        title=f"{genome}: {adopted} versions adopted by the swarm in {cycles} cycles",
        show_header=False,
    )
    table.add_row("first version", short(first.version or ""))
    table.add_row("head (every node)", short(head.version))
    before = first.data.get("fitness")
    if counted and isinstance(before, int | float) and head.fitness:
        # The fitness the swarm judged by: exact counts recorded in the log, not measured again.
        table.add_row("fitness before (instructions)", f"{before:,.0f}")
        table.add_row("fitness after (instructions)", f"{head.fitness:,.0f}")
        table.add_row("improvement", f"[bold green]{before / head.fitness:.2f}×[/] (exact count)")
    unit = manifest.fitness.metric
    if comparison is not None:
        before_s, after_s = median(report.parent_samples), median(report.candidate_samples)
        if counted:  # the timing is shown beside the fitness, not as it
            table.add_row(f"{unit} before → after", f"{before_s:.4f} → {after_s:.4f}")
            label = f"time ({unit}, A/B)"
        else:
            table.add_row(f"fitness before ({unit})", f"{before_s:.4f}")
            table.add_row(f"fitness after ({unit})", f"{after_s:.4f}")
            label = "improvement"
        table.add_row(
            label,
            f"[bold green]{comparison.ratio:.2f}×[/] (95% CI {comparison.low:.2f}–{comparison.high:.2f})",
        )
    else:
        table.add_row("final check", f"[red]failed: {report.detail}[/]")
    table.add_row("tests of head", "pass" if report.tests_passed else "FAIL")
    table.add_row("votes cast", str(votes))
    live_rows(table, events, load)
    for node_id, status in sorted(final.items()):
        table.add_row(
            f"{node_id} ({status['role']})",
            f"ledger index {status['applied_index']}, log {config.store_url(node_id).removeprefix('sqlite:///')}",
        )
    table.add_row("took", f"{time.monotonic() - started:.0f} s")
    console.print(table)
    path = config.store_url(first_node).removeprefix("sqlite:///")
    console.print(
        f"inspect it:  tars log ls --store {path}\n             tars log lineage --store {path}\n"
        f"             tars log verify --store {path}\n             tars cluster up --config {config.path}   (restart the swarm)"
    )
