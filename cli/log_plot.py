"""`tars log plot`: fitness over versions and over time, every objective, as a PNG or SVG file.

Registered on the `tars log` group (cli/main.py).  It reads a store directly (``--store``,
read-only) or a running swarm (``--config``, over a node's admin channel), so a plot of
a swarm needs no file of any node.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from cli.common import DEFAULT_STORE, PlainCommand, console, handle_errors, read_store
from cli.log import app
from evolution.errors import TarsError, TransportError


def _from_store(store: str, genome: str | None) -> dict[str, Any]:
    from cli.log import _genome
    from consensus.admin_reads import read_ops

    with read_store(store) as handle:
        name = _genome(handle, genome)
        reply: dict[str, Any] = read_ops(handle)["genome"]({"genome": name})
    return reply


def _from_swarm(config_path: Path, genome: str | None) -> dict[str, Any]:
    from runtime.config import load_cluster
    from runtime.launcher import admin_request

    config = load_cluster(config_path)
    if genome is None:
        raise TarsError("--config needs --genome", hint="pass --genome NAME")
    for node_id in config.ids:
        try:
            reply: dict[str, Any] = admin_request(config, node_id, {"op": "genome", "genome": genome}, timeout=30)  # fmt: skip
        except TransportError:
            continue
        return reply
    raise TransportError(f"no node of {config_path} answered", hint="start the swarm with `tars cluster up`")  # fmt: skip


@app.command("plot", cls=PlainCommand)
@handle_errors
def plot(
    genome: str | None = typer.Option(
        None, "--genome", "-g", help="genome name (default: the only one)"
    ),
    store: str | None = typer.Option(
        None, "--store", help=f"event store (default {DEFAULT_STORE})"
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="read a running swarm instead"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="FILE.png or FILE.svg (default GENOME-fitness.png)"
    ),
    by: str = typer.Option("both", "--by", help="x axis: version, time or both"),
) -> None:
    """Plot fitness over versions (and over time), one panel per objective of the manifest."""
    from runtime.plots import objectives_of, plot_fitness

    if by not in ("version", "time", "both"):
        raise TarsError(f"--by {by}", hint="version, time or both")
    if store is not None and config is not None:
        raise TarsError("--store and --config together", hint="read one store, or one swarm")
    reply = _from_swarm(config, genome) if config is not None else _from_store(store or str(DEFAULT_STORE), genome)  # fmt: skip
    if not reply.get("ok"):
        raise TarsError(str(reply.get("error")), hint="`tars log ls` lists the genomes' events")
    name = str(reply["genome"])
    path = out or Path(f"{name}-fitness.png")
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise TarsError(f"{path}: not a .png or .svg file", hint="--out FILE.png or FILE.svg")
    data = plot_fitness(reply["versions"], objectives_of(reply["manifest"]), genome=name, fmt=fmt, by=by)  # fmt: skip
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    tmp.replace(path)
    count = len(reply["versions"])
    console.print(f"wrote {path.resolve()} ({name}, {count} versions, {fmt})", highlight=False, markup=False)  # fmt: skip
