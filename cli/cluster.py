"""`tars cluster up|status|down|add|remove` and `tars keys`: the swarm of cluster.yml from one shell.

Nodes are asked about themselves over their ``admin`` channel rather than read from
their stores, so status shows what each running node believes (role, term, applied
index) and a node that does not answer shows as down instead of failing the command.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from cli.common import console, err_console, handle_errors
from evolution.errors import ConfigError, TarsError, TransportError

if TYPE_CHECKING:
    from rich.table import Table

    from runtime.config import ClusterConfig
    from runtime.launcher import ProcessLauncher

# runtime.config (pydantic, yaml) and runtime.launcher (zmq) are imported inside the
# commands: every `tars` invocation imports this module to register its commands.

app = typer.Typer(
    help="Start, inspect, grow and stop the swarm described by cluster.yml.", no_args_is_help=True
)

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml")
TimeoutOpt = typer.Option(1.0, "--timeout", min=0.05, help="seconds to wait for each node's answer")


def _ask(config: ClusterConfig, node_id: str, body: dict[str, Any], timeout: float) -> Any:
    from runtime.launcher import admin_request

    return admin_request(config, node_id, body, timeout=timeout)


def _statuses(config: ClusterConfig, timeout: float) -> dict[str, dict[str, Any] | None]:
    """Every node's status, asked at once; None for a node that did not answer."""
    from runtime.config import ADMIN

    config.keypair(ADMIN)  # a missing admin key is the user's to fix, not a "down" swarm

    def one(node_id: str) -> dict[str, Any] | None:
        try:
            reply = _ask(config, node_id, {"op": "status"}, timeout)
        except TarsError:
            return None
        return reply if isinstance(reply, dict) else None

    with ThreadPoolExecutor(max_workers=len(config.ids)) as pool:
        return dict(zip(config.ids, pool.map(one, config.ids), strict=True))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _rows(
    config: ClusterConfig, launcher: ProcessLauncher, statuses: dict[str, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    applied = [_int(s.get("applied_index")) for s in statuses.values() if s is not None]
    newest = max(applied, default=0)
    rows = []
    for node_id in config.ids:
        status = statuses.get(node_id)
        pid = launcher.pid(node_id)
        row: dict[str, Any] = {
            "node": node_id,
            "endpoint": config.endpoint(node_id),
            "pid": pid,
            "up": status is not None,
        }
        if status is not None:
            row.update(
                role=status.get("role"),
                term=status.get("term"),
                leader=status.get("leader"),
                commit_index=status.get("commit_index"),
                applied_index=status.get("applied_index"),
                lag=newest - _int(status.get("applied_index")),
                members=status.get("members", []),
                heads=status.get("heads", {}),
                counters=status.get("counters", {}),
                log=status.get("log", {}),
                last_transfer=status.get("last_transfer"),
            )
        rows.append(row)
    return rows


def _heads(heads: dict[str, Any]) -> str:
    parts = []
    for genome, head in sorted(heads.items()):
        if not isinstance(head, dict):
            continue
        fitness = head.get("fitness")
        shown = f"{fitness:.4g}" if isinstance(fitness, int | float) else "?"
        parts.append(f"{genome} {str(head.get('version', ''))[:12]} {shown}")
    return "\n".join(parts) or "-"


def _log(row: dict[str, Any]) -> str:
    """Where the node's Raft log starts: the whole log, or a snapshot and what was fetched."""
    log = row.get("log") or {}
    snapshot = _int(log.get("snapshot_index"))
    shown = f"from {snapshot}" if snapshot else "whole"
    fetched = row.get("last_transfer")
    if isinstance(fetched, dict):
        shown += f"\nfetched {_int(fetched.get('events'))}"
    return shown


def _table(config: ClusterConfig, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=escape(f"cluster {config.name} ({config.path})"))
    for column in ("node", "pid", "role", "term", "leader", "applied", "lag", "log", "heads"):
        table.add_column(
            column,
            justify="right" if column in ("pid", "term", "applied", "lag") else "left",
            no_wrap=column != "heads",
        )
    for row in rows:
        pid = str(row["pid"]) if row["pid"] is not None else "-"
        if not row["up"]:
            role = "[yellow]not answering[/]" if row["pid"] is not None else "[red]down[/]"
            table.add_row(row["node"], pid, role, "-", "-", "-", "-", "-", "-")
            continue
        role = escape(str(row["role"] or "?"))
        styled = f"[bold green]{role}[/]" if role == "leader" else role
        table.add_row(
            row["node"],
            pid,
            styled,
            str(row["term"]),
            escape(str(row["leader"] or "-")),
            str(row["applied_index"]),
            str(row["lag"]),
            escape(_log(row)),
            escape(_heads(row["heads"])),
        )
    return table


def _summary(config: ClusterConfig, rows: list[dict[str, Any]]) -> None:
    up = [row for row in rows if row["up"]]
    console.print(f"{len(up)} of {len(rows)} nodes answering", highlight=False, markup=False)
    leaders = {row["leader"] for row in up if row.get("leader")}
    if len(leaders) > 1:
        console.print(
            f"[yellow]nodes disagree on the leader: {escape(', '.join(sorted(map(str, leaders))))}[/] (an election is in progress)"
        )
    members = next((row["members"] for row in up if row.get("role") == "leader"), None)
    if members is not None and sorted(members) != sorted(config.ids):
        console.print(
            f"[yellow]the swarm's members ({escape(', '.join(sorted(map(str, members))))}) differ from cluster.yml's nodes "
            f"({', '.join(config.ids)})[/]: `tars cluster add|remove` changes both"
        )


@app.command()
@handle_errors
def status(
    config_path: Path = ConfigOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = typer.Option(
        False, "--json", help="print one JSON object per node instead of a table"
    ),
) -> None:
    """One row per node: pid, role, term, leader, applied index, lag behind the newest, each genome's head."""
    from runtime.config import load_cluster
    from runtime.launcher import launcher_for

    config = load_cluster(config_path)
    launcher = launcher_for(config)
    rows = _rows(config, launcher, _statuses(config, timeout))
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    console.print(_table(config, rows))
    _summary(config, rows)


@app.command()
@handle_errors
def up(
    config_path: Path = ConfigOpt,
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="wait until every node answers status"
    ),
    timeout: float = typer.Option(
        30.0, "--timeout", min=0.1, help="seconds each node has to answer"
    ),
) -> None:
    """Start every node of cluster.yml that is not running (making missing keys first)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from runtime.config import load_cluster
    from runtime.launcher import NodeNotReady, launcher_for

    config = load_cluster(config_path)
    launcher = launcher_for(config)
    created = config.ensure_keys()
    if created:
        console.print(
            f"made key pairs for {', '.join(created)} in {config.keys_dir}",
            highlight=False,
            markup=False,
        )
    for node_id in config.ids:
        running = launcher.pid(node_id)
        if running is not None:
            console.print(
                f"{node_id} already running (pid {running})", highlight=False, markup=False
            )
        else:
            pid = launcher.start(node_id)
            console.print(
                f"started {node_id} (pid {pid}) on {config.endpoint(node_id)}, log {config.log_path(node_id)}",
                highlight=False,
                markup=False,
            )
    if not wait:
        return
    failures: dict[str, TarsError] = {}
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        tasks = {
            node_id: progress.add_task(f"{node_id}: waiting for an answer", total=1)
            for node_id in config.ids
        }

        def ready(node_id: str) -> None:
            try:
                answer = launcher.wait_ready(node_id, timeout)
            except TarsError as exc:
                failures[node_id] = exc
                progress.update(
                    tasks[node_id], description=f"[red]{node_id}: failed[/]", completed=1
                )
                return
            progress.update(
                tasks[node_id],
                description=f"{node_id}: [green]ready[/] ({answer.get('role', '?')})",
                completed=1,
            )

        with ThreadPoolExecutor(max_workers=len(config.ids)) as pool:
            list(pool.map(ready, config.ids))
    console.print(_table(config, _rows(config, launcher, _statuses(config, 1.0))))
    if failures:
        for node_id, exc in failures.items():
            reason = exc.reason if isinstance(exc, NodeNotReady) else exc.message
            err_console.print(
                f"[bold red]error:[/] {escape(f'{node_id} {reason}; the end of {config.log_path(node_id)}:')}",
                highlight=False,
            )
            for line in launcher.log_tail(node_id, 15):
                err_console.print(f"  {line}", highlight=False, markup=False)
        err_console.print(
            f"the other nodes keep running; `tars cluster down --config {config.path}` stops them",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


@app.command()
@handle_errors
def down(
    config_path: Path = ConfigOpt,
    timeout: float = typer.Option(10.0, "--timeout", min=0.0, help="seconds before SIGKILL"),
) -> None:
    """Stop every node cleanly (SIGTERM; SIGKILL after --timeout)."""
    from runtime.config import load_cluster
    from runtime.launcher import launcher_for

    config = load_cluster(config_path)
    launcher = launcher_for(config)
    pids = {node_id: launcher.pid(node_id) for node_id in config.ids}
    with console.status(f"stopping {sum(p is not None for p in pids.values())} nodes…"):
        stopped = launcher.down(timeout=timeout)
    for node_id, was_running in stopped.items():
        if was_running:
            console.print(f"stopped {node_id} (pid {pids[node_id]})", highlight=False, markup=False)
        else:
            console.print(f"{node_id} was not running", highlight=False, markup=False)


def _leader_first(config: ClusterConfig, skip: str, timeout: float) -> list[str]:
    """Nodes to ask for a membership change: the leader first, then every other answering node."""
    statuses = {k: v for k, v in _statuses(config, timeout).items() if k != skip}
    answering = [node_id for node_id, status in statuses.items() if status is not None]
    leaders = [
        status.get("leader")
        for status in statuses.values()
        if status is not None and status.get("leader")
    ]
    leader = leaders[0] if leaders else None
    if leader in answering:
        answering.remove(leader)
        answering.insert(0, leader)
    return answering


def _change(
    config: ClusterConfig, op: str, node_id: str, timeout: float
) -> tuple[str | None, str | None]:
    """Ask the swarm to add or remove a member: (node that agreed, None) or (None, why not)."""
    asked = _leader_first(config, node_id, timeout)
    if not asked:
        return None, f"no node of {config.path} answered"
    why = "no answer"
    for target in asked:
        try:
            reply = _ask(config, target, {"op": op, "node": node_id}, max(timeout, 5.0))
        except TransportError as exc:
            why = exc.message
            continue
        if isinstance(reply, dict) and reply.get("ok"):
            return target, None
        why = str(reply.get("error") if isinstance(reply, dict) else reply)
    return None, why


@app.command()
@handle_errors
def add(
    config_path: Path = ConfigOpt,
    node_id: str = typer.Option(..., "--id", help="id of the new node, such as node-4"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the node listens on"),
    port: int = typer.Option(..., "--port", help="TCP port the node listens on"),
    timeout: float = TimeoutOpt,
) -> None:
    """Write a node into cluster.yml (making its keys) and ask the swarm to make it a member."""
    from runtime.config import ADMIN, NodeSpec, load_cluster

    config = load_cluster(config_path)
    existing = next((node for node in config.nodes if node.id == node_id), None)
    if existing is not None and (existing.host, existing.port) != (host, port):
        raise ConfigError(
            f"{config.path}: node {node_id!r} is already listed at {existing.host}:{existing.port}",
            hint="pick another --id, or `tars cluster remove` it first",
        )
    if existing is None:
        config = config.add_node(NodeSpec(id=node_id, host=host, port=port))
        console.print(
            f"wrote {node_id} ({host}:{port}) into {config.path}", highlight=False, markup=False
        )
    created = config.ensure_keys([node_id, ADMIN])
    if created:
        console.print(
            f"made key pairs for {', '.join(created)} in {config.keys_dir}",
            highlight=False,
            markup=False,
        )
    agreed, why = _change(config, "add", node_id, timeout)
    if agreed is None:
        raise TransportError(
            f"{node_id} is in {config.path} but the swarm did not add it: {why}",
            hint="start the swarm with `tars cluster up`, then run this `tars cluster add` again",
        )
    console.print(
        f"the swarm added {node_id} (via {agreed}); start it with `tars cluster up --config {config.path}`",
        highlight=False,
        markup=False,
    )


@app.command()
@handle_errors
def remove(
    config_path: Path = ConfigOpt,
    node_id: str = typer.Option(..., "--id", help="id of the node to remove"),
    force: bool = typer.Option(
        False, "--force", help="remove it from cluster.yml even if no node answers"
    ),
    timeout: float = TimeoutOpt,
) -> None:
    """Ask the swarm to drop a member, then remove it from cluster.yml and stop its process."""
    from runtime.config import load_cluster
    from runtime.launcher import launcher_for

    config = load_cluster(config_path)
    config.node(node_id)
    agreed, why = _change(config, "remove", node_id, timeout)
    if agreed is None and not force:
        raise TransportError(
            f"the swarm did not remove {node_id}: {why}",
            hint="start the swarm with `tars cluster up` and retry, or pass --force to only edit cluster.yml",
        )
    if agreed is not None:
        console.print(f"the swarm removed {node_id} (via {agreed})", highlight=False, markup=False)
    launcher = launcher_for(config)
    if launcher.stop(node_id):
        console.print(f"stopped {node_id}", highlight=False, markup=False)
    config.remove_node(node_id)
    console.print(
        f"removed {node_id} from {config.path} (its state stays in {config.state_dir(node_id)})",
        highlight=False,
        markup=False,
    )


@handle_errors
def keys(
    config_path: Path = ConfigOpt,
    node_id: str | None = typer.Option(None, "--id", help="only this node (or 'admin')"),
    force: bool = typer.Option(
        False, "--force", help="replace existing key pairs (peers must then be restarted)"
    ),
) -> None:
    """Make the CurveZMQ key pairs cluster.yml needs (every node and admin) and print the public keys."""
    from rich.table import Table
    from rich.text import Text

    from runtime.config import ADMIN, load_cluster

    config = load_cluster(config_path)
    names = [node_id] if node_id is not None else [*config.ids, ADMIN]
    created = config.ensure_keys(names, force=force)
    table = Table(title=f"keys in {config.keys_dir}")
    table.add_column("name")
    table.add_column("public key (Z85)", no_wrap=True)
    table.add_column("")
    for name in names:
        inline = name != ADMIN and config.node(name).public_key is not None
        try:
            public = config.public_key(name) if name != ADMIN else config.keypair(ADMIN)[0]
        except ConfigError:
            public = "-"
        note = "made" if name in created else ("inline in cluster.yml" if inline else "kept")
        if inline and name in created:
            note = "[yellow]made, but cluster.yml lists another public_key: update it[/]"
        table.add_row(name, Text(public), note)
    console.print(table)
