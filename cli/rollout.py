"""`tars rollout …`, and the swarm side of `tars evolve deploy|sync`: asked of running nodes.

Every node runs its own rollout of a genome (docs/rollouts.md), so each command asks each
chosen node over its admin channel (the CLI's admin key) and prints one line or row per
node; a node that does not answer is shown as such, never an error of the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from cli.common import PlainCommand, console, handle_errors
from evolution.errors import PolicyError, TarsError, TransportError
from evolution.tree import short

if TYPE_CHECKING:
    from evolution.rollout_plan import RolloutPlan
    from runtime.config import ClusterConfig

app = typer.Typer(
    help="Progressive delivery on each node: status, promote, abort, pause, resume.",
    no_args_is_help=True,
)

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml")
GenomeOpt = typer.Option(..., "--genome", "-g", help="genome name")
NodeOpt = typer.Option(None, "--node", "-n", help="only this node (default: every node)")
#: Seconds a node may take to answer (an order waits for the Deployer between two steps).
TIMEOUT = 15.0


def _config(path: Path) -> ClusterConfig:
    from runtime.config import load_cluster

    return load_cluster(path)


def ask_each(
    config: ClusterConfig, nodes: list[str], body: dict[str, Any], timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Each node's reply (None for a node that did not answer), asked in turn."""
    from cli.swarm_requests import ask

    replies: dict[str, Any] = {}
    for node_id in nodes:
        try:
            replies[node_id] = ask(config, node_id, body, timeout)
        except TransportError:
            replies[node_id] = None
        except TarsError as exc:  # the node raised: an op it does not know (no Deployer)
            replies[node_id] = {"ok": False, "error": str(exc)}
    return replies


def chosen(config: ClusterConfig, node: str | None) -> list[str]:
    if node is None:
        return list(config.ids)
    if node not in config.ids:
        raise TarsError(
            f"{config.path} has no node {node!r}", hint=f"nodes: {', '.join(config.ids)}"
        )
    return [node]


def _order(order: str, genome: str, node: str | None, config_path: Path) -> None:
    config = _config(config_path)
    replies = ask_each(
        config, chosen(config, node), {"op": "rollout", "genome": genome, "order": order}
    )
    table = Table("node", "phase", "version", "blue", "step", "weight", "last analysis", "reason")
    refused = []
    for node_id, reply in replies.items():
        if not isinstance(reply, dict):
            table.add_row(node_id, "[red]no answer[/]", "", "", "", "", "", "")
            continue
        if not reply.get("ok"):
            refused.append(f"{node_id}: {reply.get('error')}")
            table.add_row(
                node_id, "[yellow]refused[/]", "", "", "", "", "", str(reply.get("error"))
            )
            continue
        paused = " (paused)" if reply.get("paused") else ""
        table.add_row(
            node_id,
            f"{reply.get('phase')}{paused}",
            short(str(reply.get("version") or "")),
            short(str(reply.get("blue") or "")),
            f"{reply.get('step')}/{reply.get('steps')}",
            f"{float(reply.get('weight') or 0):.0%}",
            str(reply.get("last") or ""),
            str(reply.get("reason") or ""),
        )
    console.print(table)
    answered = [r for r in replies.values() if isinstance(r, dict)]
    if not answered:
        raise TransportError(
            f"no node of {config.path} answered", hint="start the swarm with `tars cluster up`"
        )
    if order != "status" and len(refused) == len(answered):
        raise PolicyError(f"no node could {order} the rollout of {genome}: {refused[0]}")


def _command(order: str, doc: str) -> None:
    def command(
        genome: str = GenomeOpt, node: str | None = NodeOpt, config_path: Path = ConfigOpt
    ) -> None:
        _order(order, genome, node, config_path)

    command.__doc__ = doc
    app.command(order, cls=PlainCommand)(handle_errors(command))


_command("status", "Each node's rollout of the genome: step, weight, last analysis and why.")
_command("promote", "Promote green now on each node (or --node): all traffic to the new version.")
_command("abort", "Abort on each node (or --node): all traffic back to blue at once; no rollback.")
_command("pause", "Hold each node's rollout at its step (a failed analysis still aborts).")
_command("resume", "Let paused rollouts go on.")


# ---- `tars evolve deploy` and `tars evolve sync` (registered in cli/evolve.py) -------------


def plan_of(strategy: str | None, steps: str | None, interval: float | None) -> RolloutPlan | None:
    """The plan `tars evolve deploy` asks for (None: the nodes' own settings), checked here
    as each node checks it again (:func:`evolution.rollout_plan.make_plan`)."""
    from evolution.rollout_plan import make_plan, parse_steps

    if strategy is None and steps is None and interval is None:
        return None
    listed = parse_steps(steps) if steps is not None else None
    return make_plan(strategy or "canary", listed, interval)


def deploy(
    config_path: Path,
    genome: str,
    version: str,
    node: str | None,
    plan: RolloutPlan | None = None,
) -> None:
    """Ask each chosen node to roll ``version`` out (with ``plan``: its own steps); a version
    not in the log, or a plan a node finds wrong, is refused."""
    config = _config(config_path)
    body: dict[str, Any] = {"op": "deploy", "genome": genome, "version": version}
    if plan is not None:
        body["plan"] = plan.to_wire()
    replies = ask_each(config, chosen(config, node), body)
    how = f" ({plan.describe()})" if plan is not None else ""
    started = 0
    for node_id, reply in replies.items():
        if not isinstance(reply, dict):
            console.print(f"{node_id}: no answer")
        elif reply.get("ok"):
            started += 1
            console.print(f"{node_id}: rolling {genome} {short(reply['version'])} out{how}")
        else:
            raise PolicyError(
                f"{node_id} refused to deploy {version} of {genome}: {reply.get('error')}",
                hint="`tars log lineage` lists the versions the log holds",
            )
    if not started:
        raise TransportError(
            f"no node of {config.path} answered", hint="start the swarm with `tars cluster up`"
        )
    console.print(f"follow it with `tars rollout status --genome {genome} --config {config.path}`")


def sync(config_path: Path, node: str | None) -> None:
    """Bring each chosen node to the swarm's commit index; say what it applied and fetched."""
    from cli.swarm_requests import statuses

    config = _config(config_path)
    known = {k: v for k, v in statuses(config, 5.0).items() if v is not None}
    if not known:
        raise TransportError(
            f"no node of {config.path} answered", hint="start the swarm with `tars cluster up`"
        )
    index = max(int(s.get("commit_index") or 0) for s in known.values())
    down: list[str] = []
    for node_id, reply in ask_each(
        config, chosen(config, node), {"op": "sync", "index": index}, 45.0
    ).items():
        if not isinstance(reply, dict):
            console.print(f"{node_id}: no answer")
            down.append(node_id)
            continue
        if not reply.get("ok"):
            raise TarsError(
                f"{node_id} did not reach index {index}: {reply.get('error')}",
                hint="see `tars cluster status`",
            )
        console.print(sync_line(node_id, reply))
    if down:
        raise TransportError(
            f"{', '.join(down)} did not answer: not synced",
            hint=f"start it with `tars cluster up --config {config.path}`",
        )


def sync_line(node_id: str, reply: dict[str, Any]) -> str:
    """One node's sync, in words: entries applied, heads moved, a state transfer."""
    before, after = int(reply["applied_before"]), int(reply["applied"])
    text = f"{node_id}: at ledger index {after}"
    text += f" ({after - before} entries applied now)" if after > before else " (already in sync)"
    for genome, (old, new) in sorted(reply.get("moved", {}).items()):
        text += f"; {genome} {short(old or '')} → {short(new)}"
    fetched = reply.get("transfer")
    if fetched:
        text += (
            f"; fetched {fetched['events']} events ({fetched['size'] / 1e6:.1f} MB) "
            f"from {fetched['peer']} in {fetched['seconds']:.1f} s"
        )
    return text
