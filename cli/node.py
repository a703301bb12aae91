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
from collections.abc import Callable
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
    log_format: str = typer.Option(
        "text",
        "--log-format",
        help="text: one readable line per event; json: one JSON object per line with node, "
        "genome and version (what `tars cluster up` starts nodes with; docs/monitoring.md)",
    ),
) -> None:
    """Start a node: listen, join the ledger, vote on proposals, evolve when leader."""
    from evolution.errors import ConfigError
    from runtime.config import load_cluster
    from runtime.logs import FORMATS, configure
    from runtime.node_lock import StateLock

    if log_format not in FORMATS:
        raise ConfigError(
            f"unknown log format {log_format!r}", hint=f"use one of {', '.join(FORMATS)}"
        )
    configure(node_id, log_format, level=logging.INFO if verbose else logging.WARNING)
    cluster = load_cluster(config)
    cluster.node(node_id)  # an unknown id is refused before a folder is made for it
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    hint = f"stop it first with `tars cluster down --config {cluster.path}`, or leave it running"
    with StateLock(cluster.state_dir(node_id), node_id, hint=hint):
        _run(cluster, node_id, evolve, stop, accept_weak_isolation, say=_say(log_format))


def _say(log_format: str) -> Callable[[str], None]:
    """How the node tells it is ready or stopped: a plain line, or a JSON log line (so a
    JSON log file holds nothing else)."""
    if log_format == "json":
        return lambda text: logging.getLogger("tars.node").info("%s", text)
    return lambda text: console.print(text, highlight=False, markup=False)


def _run(
    cluster: ClusterConfig,
    node_id: str,
    evolve: bool,
    stop: threading.Event,
    weak: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """Build, start and serve the node until ``stop`` is set; always stop it cleanly."""
    from node import SwarmNode

    node = SwarmNode(cluster, node_id, evolve=evolve, accept_weak_isolation=weak)
    try:
        node.start()
        say(f"{node_id} ready on {cluster.endpoint(node_id)} (store {node.store.url})")
        say(f"{node_id} candidate isolation: {node.node.isolation}")
        while not stop.wait(1.0):
            pass
    finally:
        node.stop()
        say(f"{node_id} stopped cleanly")
