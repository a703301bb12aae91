"""The `tars` command."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from cli import cluster, evolve, log, node, rollout, service
from cli import log_plot as _log_plot  # noqa: F401  (registers `tars log plot`)
from cli import repair as _repair  # noqa: F401  (registers `tars node repair`)
from cli.common import DEFAULT_STORE, PlainGroup, console, handle_errors, open_store
from cli.dashboard import dashboard as _dashboard
from cli.log import resolve_version
from cli.mcp_command import mcp
from cli.run import run as _run
from cli.script import check as _check
from evolution.errors import PolicyError
from evolution.tree import short, version_id

app = typer.Typer(
    name="tars",
    help="TARS: a swarm of self-improving replicas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=PlainGroup,  # converts its own options without importing pydantic (see cli.common)
)
app.add_typer(evolve.app, name="evolve")
app.add_typer(log.app, name="log")
app.add_typer(node.app, name="node")
app.add_typer(cluster.app, name="cluster")
app.add_typer(rollout.app, name="rollout")
app.command("keys")(cluster.keys)
app.command("call")(service.call)
app.command("load")(service.load)
app.command("mcp")(mcp)
app.command("dashboard")(_dashboard)
app.command("check")(_check)
app.command("run")(_run)

StoreOpt = typer.Option(
    str(DEFAULT_STORE), "--store", help="event store: a SQLite path or a postgresql:// URL"
)


@app.command()
@handle_errors
def demo(
    workdir: Path = typer.Option(
        Path("tars-demo"),
        "--workdir",
        help="where the nodes keep their stores, journals, keys and logs",
    ),
    seed: int = typer.Option(7, "--seed", help="seed of the planner and the statistics"),
    cycles: int = typer.Option(10, "--cycles", min=1, help="evolution cycles"),
    candidates: int = typer.Option(3, "--candidates", min=1, help="candidates proven per cycle"),
    incubators: int = typer.Option(
        2,
        "--incubators",
        min=1,
        help="candidates proven at once (one per core; a timed A/B gets noisier with more)",
    ),
    nodes: int = typer.Option(3, "--nodes", min=1, max=9, help="nodes of the local swarm"),
    weak: bool = typer.Option(False, "--accept-weak-isolation", help=node.WEAK_HELP),
) -> None:
    """A local swarm evolves the shipped demo genome through the Raft ledger; shows what changed."""
    from cli.demo import run_demo

    run_demo(workdir, seed, cycles, candidates, incubators, nodes, weak)


@app.command()
@handle_errors
def rollback(
    genome: str = typer.Option(..., "--genome", "-g", help="genome name"),
    to: str = typer.Option(..., "--to", help="version (prefix) to return to"),
    reason: str = typer.Option("manual rollback", "--reason"),
    store: str = StoreOpt,
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="roll the whole running swarm of this cluster.yml back, through the ledger",
    ),
) -> None:
    """Make an earlier version the head again (appends an event; erases nothing)."""
    if config is not None:
        _swarm_rollback(config, genome, to, reason)
        return
    with open_store(store) as handle:
        version = resolve_version(handle, genome, to)
        before = handle.head(genome).version
        handle.rollback(genome, version, reason, "cli")
    console.print(f"{genome}: head {short(before)} → {short(version)} (rollback recorded)")


@app.command()
@handle_errors
def approve(
    genome: str | None = typer.Option(None, "--genome", "-g", help="genome name"),
    candidate: str | None = typer.Option(None, "--candidate", help="id of a held candidate"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="decide for the running swarm of this cluster.yml (signed)"
    ),
    listing: bool = typer.Option(False, "--list", help="show what waits, with diff and evidence"),
    approver: str = typer.Option("admin", "--as", help="the approver who signs (cluster.yml)"),
    reject: bool = typer.Option(False, "--reject", help="reject it (final for this candidate)"),
    reason: str = typer.Option("", "--reason", help="why, kept in the log"),
    store: str = StoreOpt,
    set_to: str | None = typer.Option(None, "--set-approvers", help="a,b: approvers from now on"),
    quorum: int = typer.Option(1, "--quorum", help="with --set-approvers: how many must approve"),
) -> None:
    """Decide on a candidate the governor held for a person: a signed ledger entry with
    --config (the swarm adopts at the quorum of approvers), or one node's store with --store.
    --set-approvers commits who approves (keys from cluster.yml) in an admin-signed entry."""
    from cli.approvals import decide, held, set_approvers, show_held

    if set_to is not None:
        if config is None:
            raise PolicyError(
                "--set-approvers commits a ledger entry: it needs the swarm",
                hint="pass --config cluster.yml (docs/approval.md)",
            )
        names = [n.strip() for n in set_to.split(",") if n.strip()]
        made = set_approvers(config, names, quorum)
        console.print(f"approvers {', '.join(sorted(names))}, quorum {quorum}: ledger index "
                      f"{made['index']} via {made['node']}")  # fmt: skip
        return
    if listing:
        show_held(held(config, genome) if config else _store_held(store, genome), console)
        return
    if genome is None or candidate is None:
        raise PolicyError(
            "approve needs --genome and --candidate (or --list)",
            hint="`tars approve --config cluster.yml --list` shows what waits",
        )
    if config is None:
        if reject:
            raise PolicyError(
                "a rejection is a swarm decision",
                hint="pass --config cluster.yml (docs/approval.md)",
            )
        _store_approve(store, genome, candidate, approver)
        return
    answer = decide(config, genome, candidate, "reject" if reject else "approve", approver, reason)
    done = (
        f"adopted on every node: head is now {short(answer['head'])}"
        if answer.get("adopted")
        else "rejected (final)"
        if reject
        else f"{len(answer['approvals'])} of {answer['quorum']} approvals: it waits for more"
    )
    console.print(
        f"{genome}: {approver} {'rejected' if reject else 'approved'} {candidate} "
        f"(ledger index {answer['index']} via {answer['node']}); {done}"
    )


def _store_held(store: str, genome: str | None) -> list[dict[str, object]]:
    """One node's held candidates from its store (no approvals: those are the swarm's)."""
    from dataclasses import asdict

    with open_store(store) as handle:
        names = [genome] if genome else handle.genomes()
        return [
            {**asdict(h), "genome": name, "rules": h.evidence.get("held_by", []),
             "approvals": [], "rejected_by": [], "rejected": False, "stale": False}
            for name in names for h in handle.head(name).pending.values()
        ]  # fmt: skip


def _store_approve(store: str, genome: str, candidate: str, approver: str) -> None:
    """Adopt a held candidate in one node's own store (a single node, no swarm)."""
    from events.records import Adoption
    from evolution.patch import apply_patch

    with open_store(store) as handle:
        head = handle.head(genome)
        if candidate not in head.pending:
            raise PolicyError(
                f"no held candidate {candidate} for {genome}",
                hint=f"held: {', '.join(head.pending) or 'none'}",
            )
        held = handle.approve(genome, candidate, "cli")
        tree = apply_patch(head.tree, held.patch)
        evidence = dict(held.evidence)
        handle.adopt(
            genome,
            Adoption(
                version=version_id(tree),
                parent=head.version,
                patch=held.patch,
                mutator=held.mutator,
                kind=held.kind,
                fitness_before=None,
                fitness_after=None,
                ratio=evidence.get("ratio"),
                low=evidence.get("low"),
                high=evidence.get("high"),
                evidence=evidence | {"approved_by": [approver]},
            ),
            "cli",
        )
    console.print(f"{genome}: approved {candidate}; head is now {short(version_id(tree))}")


def _swarm_rollback(config_path: Path, genome: str, to: str, reason: str) -> None:
    """Ask any node that answers to commit the rollback; every node applies it."""
    from evolution.errors import TransportError
    from runtime.config import load_cluster
    from runtime.launcher import admin_request

    config = load_cluster(config_path)
    errors = []
    for node_id in config.ids:
        try:
            reply = admin_request(
                config,
                node_id,
                {"op": "rollback", "genome": genome, "to": to, "reason": reason},
                timeout=15.0,
            )
        except TransportError as exc:
            errors.append(f"{node_id}: {exc.message}")
            continue
        if not reply.get("ok"):
            raise PolicyError(f"the swarm refused the rollback: {reply.get('error')}")
        console.print(
            f"{genome}: rollback committed at ledger index {reply['index']} via {node_id}; head is now {short(reply['head'])} on every node"
        )
        return
    raise TransportError(
        f"no node of {config_path} answered ({'; '.join(errors)})",
        hint="start the swarm with `tars cluster up`",
    )


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
