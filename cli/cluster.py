"""`tars cluster up|status|down|add|remove` and `tars keys`: the swarm of cluster.yml from one shell.

Nodes are asked about themselves over their ``admin`` channel rather than read from
their stores, so status shows what each running node believes (role, term, applied
index) and a node that does not answer shows as down instead of failing the command.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cli.cluster_view import print_summary, status_rows, status_table
from cli.common import console, err_console, handle_errors
from cli.swarm_requests import change_membership, statuses
from evolution.errors import ConfigError, TarsError, TransportError

if TYPE_CHECKING:
    from runtime.config import ClusterConfig
    from runtime.launcher import Launcher

# runtime.config (pydantic, yaml) and runtime.launcher (zmq) are imported inside the
# commands: every `tars` invocation imports this module to register its commands.

app = typer.Typer(
    help="Start, inspect, grow and stop the swarm described by cluster.yml.", no_args_is_help=True
)

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml")
TimeoutOpt = typer.Option(1.0, "--timeout", min=0.05, help="seconds to wait for each node's answer")


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
    rows = status_rows(config, launcher, statuses(config, timeout))
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str))
        return
    console.print(status_table(config, rows))
    print_summary(config, rows)


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
    backend: str | None = typer.Option(
        None, "--backend", help="process or docker: overrides cluster.backend in the file"
    ),
) -> None:
    """Start every node of cluster.yml that is not running (making missing keys first)."""
    from runtime.config import load_cluster
    from runtime.docker_launcher import DockerLauncher
    from runtime.launcher import launcher_for

    config = load_cluster(config_path)
    launcher = launcher_for(config, backend)
    if isinstance(launcher, DockerLauncher) and not all(map(launcher.alive, config.ids)):
        with console.status("building the node image (once per version of TARS)…"):
            console.print(f"node image {launcher.image()}", highlight=False, markup=False)
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
                f"{node_id} is already running, pid {running}: left as it is",
                highlight=False,
                markup=False,
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
    failures = _wait_ready(config, launcher, timeout)
    console.print(status_table(config, status_rows(config, launcher, statuses(config, 1.0))))
    if failures:
        _report_not_ready(config, launcher, failures)
        raise typer.Exit(1)


def _wait_ready(config: ClusterConfig, launcher: Launcher, timeout: float) -> dict[str, TarsError]:
    """Wait for every node at once, a spinner each; what each node that never answered said."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
    return failures


def _report_not_ready(
    config: ClusterConfig, launcher: Launcher, failures: dict[str, TarsError]
) -> None:
    """Why each node failed, with the end of its log: the user's next step is in there."""
    from runtime.launcher import NodeNotReady
    from runtime.logs import readable

    for node_id, exc in failures.items():
        reason = exc.reason if isinstance(exc, NodeNotReady) else exc.message
        err_console.print(
            f"[bold red]error:[/] {escape(f'{node_id} {reason}; the end of {config.log_path(node_id)}:')}",
            highlight=False,
        )
        for line in launcher.log_tail(node_id, 15):
            err_console.print(f"  {readable(line)}", highlight=False, markup=False)
    err_console.print(
        f"the other nodes keep running; `tars cluster down --config {config.path}` stops them",
        highlight=False,
        markup=False,
    )


@app.command()
@handle_errors
def logs(
    config_path: Path = ConfigOpt,
    node_id: str = typer.Option(..., "--id", help="the node whose output to show"),
    lines: int = typer.Option(50, "--lines", "-n", min=1, help="how many of the last lines"),
    raw: bool = typer.Option(
        False, "--raw", help="the lines as written (JSON events), not made readable"
    ),
) -> None:
    """The end of a node's output: its container's (docker backend) or its node.log's."""
    from runtime.config import load_cluster
    from runtime.launcher import launcher_for
    from runtime.logs import readable

    config = load_cluster(config_path)
    for line in launcher_for(config).log_tail(node_id, lines):
        print(line if raw else readable(line))


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


@app.command()
@handle_errors
def add(
    config_path: Path = ConfigOpt,
    node_id: str = typer.Option(..., "--id", help="id of the new node, such as node-4"),
    host: str = typer.Option("127.0.0.1", "--host", help="address the node listens on"),
    port: int = typer.Option(..., "--port", help="TCP port the node listens on"),
    http: int | None = typer.Option(
        None, "--http", help="port of the node's HTTP service front (default: a free one)"
    ),
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
        config = config.add_node(NodeSpec(id=node_id, host=host, port=port, http=http))
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
    agreed, why = change_membership(config, "add", node_id, timeout)
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
    agreed, why = change_membership(config, "remove", node_id, timeout)
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
    node_id: str | None = typer.Option(
        None, "--id", help="only this node, 'admin', or an approver cluster.yml lists"
    ),
    force: bool = typer.Option(
        False, "--force", help="replace existing key pairs (peers must then be restarted)"
    ),
    token: str | None = typer.Option(
        None, "--token", help="make a dashboard/MCP login token for NAME instead (shown once)"
    ),
    role: str = typer.Option(
        "operator", "--role", help="the token's role: viewer, operator, approver or admin"
    ),
) -> None:
    """Make the key pairs cluster.yml needs (every node and admin): CurveZMQ for the transport
    and Ed25519 for signing ledger entries, whose public keys are recorded in cluster.yml;
    `--id NAME` makes an approver's (approval.approvers), recorded under approval.keys.
    With --token NAME, make a login token instead (docs/dashboard.md)."""
    from rich.table import Table
    from rich.text import Text

    from runtime.config import ADMIN, load_cluster
    from runtime.keys import encode_sign_key

    config = load_cluster(config_path)
    if token is not None:
        _token(config, token, role)
        return
    names = [node_id] if node_id is not None else [*config.ids, ADMIN]
    people = [ADMIN, *config.approvers]
    if node_id is not None and node_id not in config.ids and node_id not in people:
        raise ConfigError(
            f"node {node_id!r} is not in {config.path}, nor an approver "
            f"(nodes: {', '.join(config.ids)}; approvers: {', '.join(config.approvers)})",
            hint="use one of those names; for a new approver, list it under approval.approvers "
            "(docs/approval.md), then run this again",
        )
    created = config.ensure_keys(names, force=force)
    table = Table(title=f"keys in {config.keys_dir}")
    table.add_column("name")
    table.add_column("public key (Z85)", no_wrap=True)
    table.add_column("")
    for name in names:
        inline = name not in people and config.node(name).public_key is not None
        try:
            public = config.public_key(name) if name not in people else config.keypair(name)[0]
        except ConfigError:
            public = "-"
        note = "made" if name in created else ("inline in cluster.yml" if inline else "kept")
        if inline and name in created:
            note = "[yellow]made, but cluster.yml lists another public_key: update it[/]"
        table.add_row(name, Text(public), note)
    console.print(table)
    signing = Table(title=f"signing keys (Ed25519) recorded in {config.path}")
    signing.add_column("name")
    signing.add_column("public key (base64)", no_wrap=True)
    for name in names:
        try:
            signing.add_row(name, Text(encode_sign_key(config.sign_key(name))))
        except ConfigError:
            signing.add_row(name, "- (its owner runs `tars keys` where its secret is)")
    console.print(signing)


def _token(config: ClusterConfig, name: str, role: str) -> None:
    """Make a login token and print it once (only its hash is kept)."""
    from runtime.access_tokens import make_token, tokens_dir

    made = make_token(config, name, role=role)
    console.print(
        f"token for {name} ({role}); it is shown only now, keep it secret:",
        highlight=False,
        markup=False,
    )
    print(made, flush=True)
    console.print(f"(its SHA-256 is kept in {tokens_dir(config)})", highlight=False, markup=False)
