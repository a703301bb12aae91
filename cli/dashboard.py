"""`tars dashboard`: the web dashboard of the whole swarm of a cluster.yml (docs/dashboard.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import typer

from cli.common import console, handle_errors

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the swarm's cluster.yml")


@handle_errors
def dashboard(
    config_path: Path = ConfigOpt,
    port: int = typer.Option(8470, "--port", "-p", min=0, max=65535, help="port (0: any free one)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
) -> None:
    """Serve the swarm's dashboard until Ctrl-C; log in with the admin secret or a token."""
    from runtime.config import load_cluster
    from runtime.dashboard import DashboardServer, for_swarm

    config = load_cluster(config_path)
    server = DashboardServer(for_swarm(config), host, port)
    server.start()
    console.print(
        f"dashboard of {config.name} on {server.url}\nlog in with the admin secret "
        f"({config.keys_dir}/admin.key_secret) or a token (`tars keys --token NAME`); Ctrl-C stops",
        highlight=False, markup=False,
    )  # fmt: skip
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
