"""`tars node start`: run one node of a cluster in the foreground until SIGTERM/SIGINT.

The process first takes the lock on the node's state folder and writes its pid
(:mod:`runtime.node_lock`), before it builds anything: a second start of the same node,
from here or from `tars cluster up`, refuses with the running one's pid, and `tars
cluster down` finds this node however it was started.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from cli.common import console, handle_errors

if TYPE_CHECKING:
    from runtime.config import ClusterConfig

app = typer.Typer(help="Run one node of the swarm.", no_args_is_help=True)

#: the one help text of every command's --accept-weak-isolation (docs/sandbox.md)
WEAK_HELP = (
    "run candidate code even where the full jail (bubblewrap, cgroups) is unavailable; "
    "without it such a machine refuses"
)


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
    accept_weak_isolation: bool = typer.Option(False, "--accept-weak-isolation", help=WEAK_HELP),
) -> None:
    """Start a node: listen, join the ledger, vote on proposals, evolve when leader."""
    from runtime.config import load_cluster
    from runtime.node_lock import StateLock

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    cluster = load_cluster(config)
    cluster.node(node_id)  # an unknown id is refused before a folder is made for it
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    hint = f"stop it first with `tars cluster down --config {cluster.path}`, or leave it running"
    with StateLock(cluster.state_dir(node_id), node_id, hint=hint):
        _run(cluster, node_id, evolve, stop, accept_weak_isolation)


def _run(
    cluster: ClusterConfig, node_id: str, evolve: bool, stop: threading.Event, weak: bool = False
) -> None:
    """Build, start and serve the node until ``stop`` is set; always stop it cleanly."""
    from node import SwarmNode

    node = SwarmNode(cluster, node_id, evolve=evolve, accept_weak_isolation=weak)
    try:
        node.start()
        console.print(
            f"{node_id} ready on {cluster.endpoint(node_id)} (store {node.store.url})\n"
            f"{node_id} candidate isolation: {node.node.isolation}",
            highlight=False,
            markup=False,
        )
        while not stop.wait(1.0):
            pass
    finally:
        node.stop()
        console.print(f"{node_id} stopped cleanly", highlight=False)
