"""What the MCP server does: the same library calls as the `tars` verbs, returning JSON.

A :class:`Target` is what one `tars mcp` serves: a single store (``--store``), or a running
swarm (``--config cluster.yml``; its reads come from one node's store, its changes go
through the ledger over the admin channel, as `tars rollback --config` and `tars rollout`
do).  Every function here is synchronous and blocking (the sandbox, SQLite, ZeroMQ); the
server runs each in a worker thread.  None of them prints: the CLI's verbs print tables,
these return the values the tables are made of.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.common import read_store, refuse_swarm_store, store_url
from cli.mcp_reads import genome_name, genomes, version_of
from evolution.errors import ConfigError, PatchError, StoreError, TarsError, TransportError

if TYPE_CHECKING:
    from events.store import GenomeStore
    from evolution.manifest import Manifest
    from evolution.tree import Tree
    from node import Node
    from runtime.config import ClusterConfig

#: Called once per finished cycle: (cycles done in this call, cycles asked, one line).
CycleHook = Callable[[int, int, str], None]
#: The orders `tars rollout` gives a node's rollout.
ORDERS = ("status", "promote", "abort", "pause", "resume")
#: Seconds a node may take to answer an admin request (as `tars rollout`).
TIMEOUT = 15.0


@dataclass
class Target:
    """What the server serves, and where its scratch node keeps its sandbox."""

    store: str | None = None
    config_path: Path | None = None
    node: str | None = None
    workdir: Path = Path(".tars") / "mcp"
    weak: bool = False
    #: one change at a time: two runs on one store would race for its head
    writing: threading.Lock = field(default_factory=threading.Lock)
    _config: ClusterConfig | None = None

    def __post_init__(self) -> None:
        if self.store is None and self.config_path is None:
            raise ConfigError(
                "tars mcp needs something to serve",
                hint="pass --store PATH (one store) or --config cluster.yml (a running swarm)",
            )

    @property
    def config(self) -> ClusterConfig:
        """The swarm's cluster.yml (loaded once); an error when only a store is served."""
        if self.config_path is None:
            raise ConfigError(
                "this server serves a single store, not a swarm",
                hint="start it with `tars mcp --config cluster.yml` to reach a running swarm",
            )
        if self._config is None:
            from runtime.config import load_cluster

            self._config = load_cluster(self.config_path)
            if self.node is not None and self.node not in self._config.ids:
                raise ConfigError(
                    f"{self._config.path} has no node {self.node!r}",
                    hint=f"pass --node with one of: {', '.join(self._config.ids)}",
                )
        return self._config

    def read_url(self) -> str:
        """The store reads come from: --store, else the chosen (or first existing) node's."""
        if self.store is not None:
            return store_url(self.store, must_exist=True)
        config = self.config
        for node_id in [self.node] if self.node else config.ids:
            url = config.store_url(node_id)
            if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():
                return url
        raise StoreError(
            f"no node of {config.path} has a store yet",
            hint=f"start the swarm with `tars cluster up --config {config.path}`",
        )

    @contextmanager
    def reading(self) -> Iterator[GenomeStore]:
        """The served store, opened read-only for one call."""
        with read_store(self.read_url()) as handle:
            yield handle

    def weak_isolation(self) -> bool:
        if self.weak or self.config_path is None:
            return self.weak
        from runtime.cluster_config import sandbox_settings

        return sandbox_settings(self.config).accept_weak_isolation


# ---- the swarm -------------------------------------------------------------------------


def status(target: Target, timeout: float = 2.0) -> dict[str, Any]:
    """Members, leader, term, and each node's applied index and heads (`tars cluster status`);
    for a single store, its genomes' heads."""
    if target.config_path is None:
        with target.reading() as store:
            return {"swarm": None, "genomes": genomes(store)}
    from cli.swarm_requests import statuses

    config = target.config
    replies = statuses(config, timeout)
    applied = [int(s.get("applied_index") or 0) for s in replies.values() if s]
    nodes: list[dict[str, Any]] = []
    for node_id, reply in replies.items():
        if reply is None:
            nodes.append({"node": node_id, "up": False})
            continue
        nodes.append(
            {
                "node": node_id,
                "up": True,
                "role": reply.get("role"),
                "term": reply.get("term"),
                "leader": reply.get("leader"),
                "commit_index": reply.get("commit_index"),
                "applied_index": reply.get("applied_index"),
                "lag": max(applied, default=0) - int(reply.get("applied_index") or 0),
                "heads": reply.get("heads", {}),
                "isolation": reply.get("isolation"),
            }
        )
    up = [n for n in nodes if n["up"]]
    leaders = sorted({str(n["leader"]) for n in up if n.get("leader")})
    members = sorted({m for r in replies.values() if r for m in r.get("members", [])})
    return {
        "swarm": config.name,
        "members": members or list(config.ids),
        "leader": leaders[0] if len(leaders) == 1 else None,
        "term": max((int(n["term"] or 0) for n in up), default=None),
        "nodes": nodes,
    }


def rollback(target: Target, genome: str, to: str, reason: str, caller: str) -> dict[str, Any]:
    """Make an earlier version the head again: through the ledger for a swarm (every node
    applies it), else an event in the store (`tars rollback`)."""
    with target.reading() as store:
        name = genome_name(store, genome)
        version = version_of(store, name, to, "to")
        before = store.head(name).version
    if target.config_path is None:
        return _store_rollback(target, name, version, before, f"{reason} (by {caller})")
    from cli.swarm_requests import ask

    config, errors = target.config, []
    body = {"op": "rollback", "genome": name, "to": version, "reason": f"{reason} (by {caller})"}
    for node_id in config.ids:
        try:
            reply = ask(config, node_id, body, TIMEOUT)
        except TransportError as exc:
            errors.append(f"{node_id}: {exc.message}")
            continue
        if not isinstance(reply, dict) or not reply.get("ok"):
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise TarsError(
                f"the swarm refused the rollback of {name} to {version[:12]}: {error}",
                hint="the `lineage` tool lists the versions; `status` shows the swarm",
            )
        return {"genome": name, "from": before, "head": reply["head"], "index": reply["index"]}
    raise TransportError(
        f"no node of {config.path} answered ({'; '.join(errors)})",
        hint="start the swarm with `tars cluster up`",
    )


def _store_rollback(
    target: Target, name: str, version: str, before: str, reason: str
) -> dict[str, Any]:
    url = target.read_url()
    refuse_swarm_store(url)
    from events.store import GenomeStore

    with target.writing, GenomeStore.open(url, create=False) as handle:
        handle.rollback(name, version, reason, "mcp")
    return {"genome": name, "from": before, "head": version, "index": None}


def rollout(target: Target, genome: str, order: str, node: str | None) -> dict[str, Any]:
    """Each chosen node's rollout after ``order`` (`tars rollout status|promote|abort|…`)."""
    from cli.rollout import ask_each, chosen

    if order not in ORDERS:
        raise TarsError(
            f"argument 'order': {order!r} is not a rollout order",
            hint=f"pass one of: {', '.join(ORDERS)}",
        )
    config = target.config
    try:
        nodes = chosen(config, node)
    except TarsError as exc:
        raise TarsError(f"argument 'node': {exc.message}", hint=exc.hint) from exc
    replies = ask_each(config, nodes, {"op": "rollout", "genome": genome, "order": order})
    answered = [r for r in replies.values() if isinstance(r, dict)]
    if not answered:
        raise TransportError(
            f"no node of {config.path} answered", hint="start the swarm with `tars cluster up`"
        )
    return {"genome": genome, "order": order, "nodes": replies}


# ---- one node's steps: analyze, plan, validate, run -------------------------------------


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
