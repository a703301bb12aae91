"""What the MCP server runs on one node: analyze, plan, validate a patch, run cycles.

The steps of `tars evolve analyze|plan|validate|run`, called as the verbs call them but
returning JSON instead of printing.  ``analyze``, ``plan`` and ``validate`` run on a
scratch node with an in-memory store (they only look: the served store is read for the
genome's history and never written); ``run_cycles`` runs the node on the served store, as
`tars evolve run --store` does, and reports each cycle to a hook (MCP progress).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import refuse_swarm_store, store_url
from cli.mcp_ops import Target
from evolution.errors import PatchError, TarsError

if TYPE_CHECKING:
    from evolution.manifest import Manifest
    from evolution.tree import Tree
    from node import Node

#: Called once per finished cycle: (cycles done in this call, cycles asked, one line).
CycleHook = Callable[[int, int, str], None]


def source(target: Target, genome: str) -> tuple[Manifest, Tree, str]:
    """The manifest, tree and name of ``genome``: the head of a genome the store holds, or
    a genome folder on this machine (as the CLI's ``--genome PATH``)."""
    from evolution.manifest import parse_manifest
    from runtime.genome_files import load_genome

    with target.reading() as store:
        if genome in store.genomes():
            head = store.head(genome)
            return parse_manifest(head.manifest_text, f"{genome}/genome.toml"), head.tree, genome
        known = store.genomes()
    folder = Path(genome).expanduser()
    if (folder / "genome.toml").is_file():
        manifest, tree = load_genome(folder)
        return manifest, tree, manifest.name
    raise TarsError(
        f"argument 'genome': {genome!r} is neither a genome of the store nor a genome folder",
        hint=f"pass one of: {', '.join(known) or 'none yet'}, or the path of a folder with a genome.toml",
    )


@contextmanager
def scratch_node(target: Target) -> Iterator[Node]:
    """A node with its own in-memory store, for steps that only look (analyze, plan,
    validate): it never writes into the served store, a swarm node's least of all."""
    from node import Node, NodeConfig

    config = NodeConfig(
        "mcp", "memory://", target.workdir / "work", accept_weak_isolation=target.weak_isolation()
    )
    with Node(config) as node:
        yield node


def _history(target: Target, name: str) -> tuple[Any, Any]:
    from cli.planning import history

    with target.reading() as store:
        return history(store, name)


def analyze(target: Target, genome: str) -> dict[str, Any]:
    """Ranked opportunities, calibrated by the genome's log (`tars evolve analyze`)."""
    from actors.messages import Analyze
    from evolution.analysis import calibrated
    from evolution.stopping import worth_trying
    from evolution.tree import version_id

    manifest, tree, name = source(target, genome)
    calibration, outcomes = _history(target, name)
    with scratch_node(target) as node:
        found = node.supervisor.ask("analyzer", Analyze(version_id(tree), tree, manifest))
    ranked = calibrated(found, calibration)
    why = worth_trying(
        ranked,
        threshold=manifest.fitness.threshold,
        calibration=calibration,
        outcomes=outcomes,
        sources=manifest.genome.sources,
    )
    return {
        "genome": name,
        "version": version_id(tree),
        "opportunities": [_opportunity(opp) for opp in ranked],
        "stop_reason": why,
    }


def plan(target: Target, genome: str, seed: int = 7, limit: int = 8) -> dict[str, Any]:
    """The plans a cycle would make: a mutator per opportunity (`tars evolve plan`)."""
    from actors.messages import Analyze, PlanCycle
    from evolution.analysis import calibrated
    from evolution.tree import version_id

    if limit < 1:
        raise TarsError(f"argument 'limit' is {limit}", hint="pass a number of plans of 1 or more")
    manifest, tree, name = source(target, genome)
    calibration, outcomes = _history(target, name)
    version = version_id(tree)
    with scratch_node(target) as node:
        found = node.supervisor.ask("analyzer", Analyze(version, tree, manifest))
        ranked = calibrated(found, calibration)
        plans = node.supervisor.ask(
            "planner", PlanCycle(version, tree, manifest, ranked, outcomes, seed, 1, limit)
        )
    return {
        "genome": name,
        "version": version,
        "plans": [
            {"score": p.score, "mutator": p.mutator, "reason": p.reason}
            | _opportunity(p.opportunity)
            for p in plans
        ],
    }


def _opportunity(opp: Any) -> dict[str, Any]:
    return {
        "file": opp.file,
        "line": opp.line,
        "function": opp.function,
        "kind": opp.kind,
        "evidence": opp.evidence,
        "expected_gain": opp.expected_gain,
        "confidence": opp.confidence,
    }


def validate(target: Target, genome: str, patch: str, seed: int = 7) -> dict[str, Any]:
    """Prove one patch: applied to the genome, its tests, then the A/B or count against the
    parent, judged by the manifest's policy (`tars evolve validate`)."""
    from actors.governor import judge
    from evolution.generate import Candidate, candidate_id
    from evolution.patch import apply_patch
    from evolution.policy import Policy
    from evolution.tree import version_id
    from runtime.incubation import incubate

    if not patch.strip():
        raise PatchError("argument 'patch' is empty", hint="pass a unified diff against the genome")
    manifest, tree, name = source(target, genome)
    try:
        candidate_tree = apply_patch(tree, patch)
    except PatchError as exc:
        raise PatchError(f"argument 'patch': {exc.message}", hint=exc.hint) from exc
    version = version_id(tree)
    candidate = Candidate(
        candidate_id(version, patch), version, patch, "manual", "manual", "", "", 0, "mcp patch"
    )
    with scratch_node(target) as node:
        report = incubate(node.sandbox, manifest, candidate.id, tree, candidate_tree)
    policy = Policy(manifest.fitness.threshold, manifest.fitness.confidence)
    decision, evidence = judge(manifest, tree, candidate, report, policy, seed)
    c = evidence.comparison
    return {
        "genome": name,
        "parent": version,
        "version": version_id(candidate_tree),
        "tests_passed": report.tests_passed,
        "detail": report.detail,
        "measure": report.measure,
        "gain": None
        if c is None
        else {"ratio": c.ratio, "low": c.low, "high": c.high, "rounds": c.rounds},
        "figures": {"parent": report.parent_figures, "candidate": report.candidate_figures},
        "verdict": decision.verdict,
        "reasons": list(decision.reasons),
    }


def run_cycles(
    target: Target,
    genome: str,
    cycles: int,
    *,
    seed: int = 7,
    candidates: int = 4,
    hook: CycleHook | None = None,
) -> dict[str, Any]:
    """Evolve ``genome`` for ``cycles`` more cycles on this store (`tars evolve run`), calling
    ``hook`` after each; a swarm evolves on its own leader and is refused here."""
    if cycles < 1:
        raise TarsError(
            f"argument 'cycles' is {cycles}", hint="pass a number of cycles of 1 or more"
        )
    if candidates < 1:
        raise TarsError(f"argument 'candidates' is {candidates}", hint="pass 1 or more")
    if target.config_path is not None or target.store is None:
        raise TarsError(
            "a swarm's cycles are run by its leader, not asked of it",
            hint="set evolution.cycles in cluster.yml; `status` shows the heads moving",
        )
    from node import Node, NodeConfig

    url = store_url(target.store, must_exist=False)
    if Path(url.removeprefix("sqlite:///")).exists() or not url.startswith("sqlite:///"):
        refuse_swarm_store(url)
    config = NodeConfig(
        "local", url, target.workdir / "work", candidates_per_cycle=candidates,
        accept_weak_isolation=target.weak,
    )  # fmt: skip
    with target.writing, Node(config) as node:
        name = _registered(node, target, genome)
        done = node.store.head(name).cycles_completed
        summary = node.evolve(name, done + cycles, seed, progress=_progress(done, cycles, hook))
    return {
        "genome": name,
        "start": summary.start_version,
        "head": summary.head,
        "adopted": summary.adopted,
        "cycles": [
            {"cycle": c.cycle, "candidates": c.candidates, "adopted": c.adopted, "held": c.held}
            for c in summary.cycles
        ],
        "stopped": summary.stopped,
    }


def _registered(node: Node, target: Target, genome: str) -> str:
    """The genome's name in the node's store, registering a genome folder first."""
    if genome in node.store.genomes():
        return genome
    folder = Path(genome).expanduser()
    if (folder / "genome.toml").is_file():
        return node.register(folder)[0]
    raise TarsError(
        f"argument 'genome': {genome!r} is neither a genome of the store nor a genome folder",
        hint=f"pass one of: {', '.join(node.store.genomes()) or 'none yet'}, "
        "or the path of a folder with a genome.toml",
    )


def _progress(
    done: int, asked: int, hook: CycleHook | None
) -> Callable[[str, dict[str, Any]], None]:
    """The coordinator's progress callback, reduced to one call of ``hook`` per cycle."""

    def progress(stage: str, info: dict[str, Any]) -> None:
        if hook is None or stage != "cycle":
            return
        result, adoption = info["result"], info.get("adoption")
        if result.stopped:
            line = f"cycle {result.cycle}: stopping: {result.stopped}"
        elif adoption is not None:
            line = f"cycle {result.cycle}: adopted {adoption.version[:12]} ({adoption.mutator})"
        else:
            line = f"cycle {result.cycle}: nothing adopted"
        hook(min(result.cycle - done, asked), asked, line)

    return progress
