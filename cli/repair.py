"""`tars node repair`: a node whose own store or journal is damaged is rebuilt from the swarm.

A node that finds its store or journal damaged refuses to start, or halts, and names
this command (``node.py``, ``consensus/applier.py``).  Repairing never deletes anything:
the damaged store (with its SQLite side files and the start-up check's mark) and the
Raft journal (entries, snapshot) move into ``<state>/damaged-<UTC time>/`` beside the
node's other state.  On its next start the node is a member with an empty store and an
empty log: the leader sends it the ledger, or its snapshot, and the node fetches the
state a snapshot stands for from a peer, checked event by event against the hash chain
(``consensus/transfer.py``), then applies the ledger from there.

The one thing that is kept is the node's Raft term and vote (``raft.journal.meta``, copied
aside and written anew without its commit index): Raft forbids voting twice in a term,
and a node that forgot its vote could.  The node must be stopped; a node that is the only
member has no peer to rebuild from, so repairing it is refused unless ``--keep-journal``
lets it rebuild its store from its own log.
"""

from __future__ import annotations

import errno
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import console, handle_errors
from cli.node import app
from evolution.errors import ConfigError, StoreError, TarsError

if TYPE_CHECKING:
    from runtime.config import ClusterConfig


@app.command("repair")
@handle_errors
def repair(
    config: Path = typer.Option(
        Path("cluster.yml"), "--config", "-c", help="the cluster's cluster.yml"
    ),
    node_id: str = typer.Option(..., "--id", help="the id of the damaged node in cluster.yml"),
    keep_journal: bool = typer.Option(
        False,
        "--keep-journal",
        help="move only the store aside; the node rebuilds it from its own Raft journal "
        "(when only the store is damaged)",
    ),
) -> None:
    """Move a stopped node's damaged store and journal aside; it rebuilds from the swarm on start."""
    from runtime.config import load_cluster

    cluster = load_cluster(config)
    cluster.node(node_id)  # an unknown id is a ConfigError naming the known ones
    _refuse_if_running(cluster, node_id)
    if not keep_journal and not [n for n in cluster.ids if n != node_id]:
        raise ConfigError(
            f"{node_id} is the only member of {cluster.path}: there is no peer to rebuild its "
            "store and journal from",
            hint="if only the store is damaged, run again with --keep-journal (the node "
            "rebuilds its store from its own journal); otherwise restore a backup",
        )
    aside = cluster.state_dir(node_id) / f"damaged-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    moved = _move_store(cluster, node_id, aside)
    if not keep_journal:
        moved += _move_journal(cluster.journal_path(node_id), aside)
    if not moved:
        console.print(f"{node_id}: no store or journal to move; nothing changed", highlight=False)
        return
    for path in moved:
        console.print(f"moved {path} -> {aside / path.name}", highlight=False)
    source = "its own journal and, past it, a peer" if keep_journal else "the ledger and a peer"
    console.print(
        f"{node_id} repaired: the damaged files are kept in {aside}; on its next start "
        f"(`tars node start --config {cluster.path} --id {node_id}`, or `tars cluster up`) it "
        f"rebuilds its store from {source}'s checked state and rejoins at the swarm's head",
        highlight=False,
    )


def _refuse_if_running(cluster: ClusterConfig, node_id: str) -> None:
    """Moving a running node's files would pull them from under it: refuse, naming its pid."""
    from runtime.launcher import ProcessLauncher

    pid = ProcessLauncher(cluster).pid(node_id)
    spec = cluster.node(node_id)
    if pid is None:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((spec.host, spec.port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                pid = -1
    if pid is not None:
        who = f"pid {pid}" if pid > 0 else f"something listens on {spec.host}:{spec.port}"
        raise TarsError(
            f"{node_id} is running ({who}): its store and journal cannot be moved under it",
            hint=f"stop it first (`tars cluster down --config {cluster.path}`, or SIGTERM), "
            "then repair it",
        )


def _move_store(cluster: ClusterConfig, node_id: str, aside: Path) -> list[Path]:
    from events.backends import sqlite_path
    from node import store_mark

    url = cluster.store_url(node_id)
    if not url.startswith("sqlite:"):
        raise StoreError(
            f"{node_id}'s store is not a SQLite file ({url.split('://', 1)[0]})",
            hint="repair moves SQLite files only: create a new, empty database for it (keep the "
            "damaged one), point its `store` in cluster.yml at it, and start the node",
        )
    store = sqlite_path(url)
    mark = store_mark(cluster, node_id)
    files = [Path(f"{store}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")]
    files += [mark, mark.with_name(mark.name + ".tmp")]
    return _move(files, aside)


def _move_journal(journal: Path, aside: Path) -> list[Path]:
    """The journal's entries and snapshot move; its term and vote are kept (see the module)."""
    import msgpack

    from consensus.journal import atomic_write

    meta = journal.with_name(journal.name + ".meta")
    keep: dict[str, object] | None = None
    if meta.exists():
        try:
            body = msgpack.unpackb(meta.read_bytes(), raw=False)
            keep = {"term": int(body["term"]), "voted_for": body["voted_for"], "commit_index": 1}
        except Exception:
            console.print(
                f"warning: {meta} is unreadable, so this node's vote in the current term is "
                "lost: start it once the swarm has a leader",
                highlight=False,
            )
    files = sorted(journal.parent.glob(journal.name + "*"))
    moved = _move(files, aside)
    if keep is not None:
        atomic_write(meta, msgpack.packb(keep, use_bin_type=True))
    return moved


def _move(files: list[Path], aside: Path) -> list[Path]:
    moved = []
    for path in files:
        if path.exists():
            aside.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), aside / path.name)
            moved.append(path)
    return moved
