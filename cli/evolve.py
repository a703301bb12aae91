"""`tars evolve …`: one node's evolution steps, one at a time or as a run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import DEFAULT_STORE, console, handle_errors, store_url
from cli.node import WEAK_HELP
from evolution.errors import PatchError
from evolution.tree import short, version_id

if TYPE_CHECKING:
    from evolution.analysis import Opportunity
    from evolution.manifest import Manifest
    from evolution.planner import Plan
    from evolution.tree import Tree
    from node import Node
    from runtime.llm_session import LLMSession

# The node (pykka actors, the sandbox), the mutators (libcst) and the statistics are
# imported by the commands that use them, so `tars log …` and `tars --help` never load them.

app = typer.Typer(
    help="Analyse, plan, generate, validate and run evolution on one node.", no_args_is_help=True
)

GenomeOpt = typer.Option(..., "--genome", "-g", help="genome folder (with a genome.toml)")
StoreOpt = typer.Option(
    str(DEFAULT_STORE), "--store", help="event store: a SQLite path or a postgresql:// URL"
)
SeedOpt = typer.Option(7, "--seed", help="seed of the planner and the statistics")
LLMOpt = typer.Option(
    None,
    "--llm",
    help="llm.yml: also ask these language models for candidates (off without it; docs/llm.md)",
)


WeakOpt = typer.Option(False, "--accept-weak-isolation", help=WEAK_HELP)


def _node(store: str, workdir: Path | None = None, candidates: int = 4, weak: bool = False) -> Node:
    from node import Node, NodeConfig

    base = workdir or Path(".tars")
    return Node(
        NodeConfig(
            "local",
            store_url(store, must_exist=False),
            base / "work",
            candidates_per_cycle=candidates,
            accept_weak_isolation=weak,
        )
    )


@contextmanager
def _model(node: Node, config: Path | None) -> Iterator[LLMSession | None]:
    """With ``--llm FILE``: the node's generator also asks the models; their spend is printed at the end."""
    if config is None:
        yield None
        return
    from actors.generator import use_model
    from runtime.llm_session import LLMSession

    session = LLMSession.open(config)
    try:
        use_model(node.supervisor, session, node.store)
        yield session
    finally:
        for failure in session.failures[-10:]:
            console.print(f"llm failed: {failure}", highlight=False, markup=False, soft_wrap=True)
        console.print(session.summary(), highlight=False, soft_wrap=True)
        session.close()


def _opportunities(node: Node, genome: Path) -> tuple[list[Opportunity], Manifest, Tree, str]:
    from actors.messages import Analyze
    from runtime.genome_files import load_genome

    manifest, tree = load_genome(genome)
    version = version_id(tree)
    with console.status(f"profiling {manifest.name} {short(version)} in the sandbox…"):
        opportunities = node.supervisor.ask("analyzer", Analyze(version, tree, manifest))
    return opportunities, manifest, tree, version


def _plans(node: Node, genome: Path, seed: int, limit: int) -> tuple[list[Plan], Tree, str]:
    """The plans one cycle would make for the genome folder, with no history to learn from."""
    from actors.messages import PlanCycle
    from evolution.planner import Outcomes

    opportunities, manifest, tree, version = _opportunities(node, genome)
    plans = node.supervisor.ask(
        "planner",
        PlanCycle(version, tree, manifest, opportunities, Outcomes(table={}), seed, 1, limit),
    )
    return plans, tree, version


@app.command()
@handle_errors
def analyze(genome: Path = GenomeOpt, store: str = StoreOpt, weak: bool = WeakOpt) -> None:
    """Profile the genome and list ranked opportunities, calibrated by the genome's log."""
    from cli.planning import history, show_opportunities

    with _node(store, weak=weak) as node:
        opportunities, manifest, _, _ = _opportunities(node, genome)
        calibration, outcomes = history(node.store, manifest.name)
    show_opportunities(console, opportunities, manifest, calibration, outcomes)


@app.command()
@handle_errors
def plan(
    genome: Path = GenomeOpt,
    store: str = StoreOpt,
    seed: int = SeedOpt,
    limit: int = typer.Option(8, help="plans to show"),
    weak: bool = WeakOpt,
) -> None:
    """Rank opportunities and choose a mutator for each, learning from the genome's log."""
    from actors.messages import PlanCycle
    from cli.planning import history, show_plans
    from evolution.analysis import calibrated

    with _node(store, weak=weak) as node:
        opportunities, manifest, tree, version = _opportunities(node, genome)
        calibration, outcomes = history(node.store, manifest.name)
        ranked = calibrated(opportunities, calibration)
        plans = node.supervisor.ask(
            "planner", PlanCycle(version, tree, manifest, ranked, outcomes, seed, 1, limit)
        )
    show_plans(console, plans, ranked, manifest, calibration, outcomes)


@app.command()
@handle_errors
def generate(
    genome: Path = GenomeOpt,
    store: str = StoreOpt,
    seed: int = SeedOpt,
    limit: int = typer.Option(4, help="candidates to generate"),
    out: Path | None = typer.Option(
        None, "--out", help="folder to write one .patch file per candidate"
    ),
    llm: Path | None = LLMOpt,
    weak: bool = WeakOpt,
) -> None:
    """Generate candidate patches and print (or write) them."""
    from actors.messages import Generate

    with _node(store, weak=weak) as node, _model(node, llm):
        plans, tree, version = _plans(node, genome, seed, limit)
        generated = node.supervisor.ask("generator", Generate(version, tree, plans))
    for candidate in generated.candidates:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{candidate.id}.patch").write_text(candidate.patch, encoding="utf-8")
            console.print(f"wrote {out / (candidate.id + '.patch')}  ({candidate.description})")
        else:
            console.rule(f"{candidate.id} · {candidate.description}")
            console.print(candidate.patch, highlight=False, markup=False)
    for failure in generated.failures:
        console.print(f"[yellow]skipped:[/] {failure}")


@app.command()
@handle_errors
def validate(
    genome: Path = GenomeOpt,
    patch: Path = typer.Option(..., "--patch", help="unified diff against the genome folder"),
    store: str = StoreOpt,
    seed: int = SeedOpt,
    weak: bool = WeakOpt,
) -> None:
    """Prove one patch: the genome's tests, then the benchmark A/B against the parent."""
    from actors.governor import judge
    from evolution.generate import Candidate, candidate_id
    from evolution.patch import apply_patch
    from evolution.policy import Policy
    from runtime.genome_files import load_genome
    from runtime.incubation import effective_measure, incubate

    manifest, tree = load_genome(genome)
    try:
        text = patch.read_text(encoding="utf-8")
    except OSError as exc:
        raise PatchError(
            f"patch {patch} cannot be read ({exc.strerror})",
            hint="pass --patch PATH to a readable file",
        ) from exc
    candidate_tree = apply_patch(tree, text)
    version = version_id(tree)
    candidate = Candidate(
        candidate_id(version, text), version, text, "manual", "manual", "", "", 0, f"patch {patch}"
    )
    how = (
        "instruction counts"
        if effective_measure(manifest) == "instructions"
        else f"{manifest.fitness.rounds} A/B rounds"
    )
    with _node(store, weak=weak) as node, console.status(f"proving {patch} ({how})…"):
        report = incubate(node.sandbox, manifest, candidate.id, tree, candidate_tree)
    decision, evidence = judge(
        manifest,
        tree,
        candidate,
        report,
        Policy(manifest.fitness.threshold, manifest.fitness.confidence),
        seed,
    )
    console.print(
        f"tests: {'[green]pass[/]' if report.tests_passed else '[red]fail[/]'}  {report.detail}"
    )
    if evidence.comparison:
        c = evidence.comparison
        if report.measure == "instructions":
            console.print(
                f"gain: {c.ratio:.4f}× fewer instructions ({report.parent_samples[0]:,.0f} → {report.candidate_samples[0]:,.0f})"
            )
        else:
            console.print(
                f"gain: {c.ratio:.3f}× [{c.low:.3f}, {c.high:.3f}] at {c.confidence:.0%} over {c.rounds} rounds"
            )
    for name in sorted(set(report.parent_figures) | set(report.candidate_figures)):
        if ":" not in name:  # a figure's range (name:lo, name:hi) is in the log, not here
            before, after = report.parent_figures.get(name), report.candidate_figures.get(name)
            console.print(f"{name}: {_figure(before)} → {_figure(after)}")
    console.print(f"verdict: [bold]{decision.verdict}[/] — {'; '.join(decision.reasons)}")
    if decision.verdict == "reject":
        raise typer.Exit(2)


@app.command()
@handle_errors
def run(
    genome: Path = GenomeOpt,
    store: str = StoreOpt,
    seed: int = SeedOpt,
    cycles: int = typer.Option(
        5, "--cycles", "-n", min=1, help="cycles to reach (a resumed run continues its count)"
    ),
    candidates: int = typer.Option(4, "--candidates", min=1, help="candidates per cycle"),
    llm: Path | None = LLMOpt,
    weak: bool = WeakOpt,
) -> None:
    """Evolve the genome for N cycles, recording every decision in the store."""
    from cli.progress import CycleProgress

    with _node(store, candidates=candidates, weak=weak) as node, _model(node, llm):
        console.print(f"candidate isolation: {node.isolation}", highlight=False, markup=False)
        node.install_signal_handlers()
        name, _ = node.register(genome)
        done = node.store.head(name).cycles_completed
        if done:
            console.print(f"resuming {name} at cycle {done + 1} of {cycles}")
        with CycleProgress(console, cycles, done, label=name) as progress:
            summary = node.evolve(name, cycles, seed, progress=progress)
        console.print(
            f"{name}: {len(summary.adopted)} versions adopted this run; head {short(summary.head)}"
        )


def _figure(value: float | None) -> str:
    return "not measured" if value is None else f"{value:g}"


@app.command()
@handle_errors
def deploy(
    genome: str = typer.Option(..., "--genome", "-g", help="genome name"),
    version: str = typer.Option(..., "--version", help="a version (prefix) the log holds"),
    node: str | None = typer.Option(None, "--node", "-n", help="only this node (default: all)"),
    config: Path = typer.Option(
        Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml"
    ),
    steps: str | None = typer.Option(
        None, "--steps", help="this rollout's own steps, percent of traffic: 1,10,50,100"
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", help="canary (with --steps) or blue_green (all at once)"
    ),
    interval: float | None = typer.Option(
        None, "--interval", help="seconds of one analysis window for this rollout"
    ),
) -> None:
    """Start a rollout of VERSION by hand on the running nodes (docs/rollouts.md); with
    --steps (or --strategy) the nodes run this plan instead of their rollout settings."""
    from cli.rollout import deploy as deploy_on
    from cli.rollout import plan_of

    deploy_on(config, genome, version, node, plan_of(strategy, steps, interval))


@app.command()
@handle_errors
def sync(
    node: str | None = typer.Option(None, "--node", "-n", help="only this node (default: all)"),
    config: Path = typer.Option(
        Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml"
    ),
) -> None:
    """Bring nodes to the swarm's head and say what each applied or fetched."""
    from cli.rollout import sync as sync_nodes

    sync_nodes(config, node)
