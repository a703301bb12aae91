"""`tars node start`: run one node of a cluster in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import typer

from cli.common import console, handle_errors

app = typer.Typer(help="Run one node of the swarm.", no_args_is_help=True)


@app.command("start")
@handle_errors
def start(
    config: Path = typer.Option(
        Path("cluster.yml"), "--config", "-c", help="the cluster's cluster.yml"
    ),
    node_id: str = typer.Option(..., "--id", help="this node's id in cluster.yml"),
    evolve: bool = typer.Option(
        True, "--evolve/--no-evolve", help="evolve genomes when this node leads"
    ),
    verbose: bool = typer.Option(
        True, "--verbose/--quiet", help="log the node's decisions to stderr"
    ),
) -> None:
    """Start a node: listen, join the ledger, vote on proposals, evolve when leader."""
    from node import SwarmNode
    from runtime.config import load_cluster

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    cluster = load_cluster(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = SwarmNode(cluster, node_id, evolve=evolve)
    try:
        node.start()
        console.print(
            f"{node_id} ready on {cluster.endpoint(node_id)} (store {node.store.url})",
            highlight=False,
        )
        while not stop.wait(1.0):
            pass
    finally:
        node.stop()
        console.print(f"{node_id} stopped cleanly", highlight=False)
