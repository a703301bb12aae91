"""What a node's container sees of the host: the paths it needs, at the same places.

cluster.yml resolves its relative paths against its own folder, so every path the node
reads inside its container is the host's path; mounting each at the same place keeps
one resolution for the CLI, the process launcher and the containers.  A node sees:

- the cluster.yml folder, read-only (the node re-reads cluster.yml when a member joins,
  and `tars cluster add` replaces the file, so the folder is mounted, not the file);
- its own state folder, writable (store, journal, lock, pid file, log), and its SQLite
  store's folder when the store lives elsewhere;
- the keys folder read-only, with the other nodes' secrets hidden behind ``/dev/null``
  (the admin secret stays: runtime/node_transport.py reads the admin pair to learn its
  public half);
- the other nodes' state folders hidden behind empty tmpfs;
- the genome folders, read-only;
- the host's cgroup tree, writable, for the jail's per-run groups (cgroup v1 mounts
  the container's own group read-only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.config import ADMIN, ClusterConfig

#: File in a node's state folder naming the container that runs it (docker backend).
MARKER = "container.id"
CGROUP_FS = Path("/sys/fs/cgroup")


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _sqlite_folder(url: str) -> Path | None:
    """The folder of a ``sqlite:///`` store (absolute once resolved), else None."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0]).parent


def _bind(path: Path, *, read_only: bool) -> Any:
    from docker.types import Mount

    return Mount(str(path), str(path), type="bind", read_only=read_only)


def container_mounts(config: ClusterConfig, node_id: str) -> list[Any]:
    """The mounts of ``node_id``'s container (Docker orders them by depth, parents first)."""
    from docker.types import Mount

    base = config.base_dir
    own = config.state_dir(node_id)
    own.mkdir(parents=True, exist_ok=True)
    mounts = [_bind(base, read_only=True), _bind(own, read_only=False)]
    for other in config.ids:
        folder = config.state_dir(other)
        if other != node_id and not _inside(own, folder):
            folder.mkdir(parents=True, exist_ok=True)  # made later, it would show through
            mounts.append(Mount(str(folder), None, type="tmpfs"))
    keys = config.keys_dir
    if keys.is_dir():
        mounts.append(_bind(keys, read_only=True))
        shown = {f"{node_id}.key_secret", f"{ADMIN}.key_secret"}
        for secret in sorted(keys.glob("*.key_secret")):
            if secret.name not in shown:
                mounts.append(Mount(str(secret), "/dev/null", type="bind", read_only=True))
    for genome in config.genome_dirs:
        if not _inside(genome, base):
            mounts.append(_bind(genome, read_only=True))
    store = _sqlite_folder(config.store_url(node_id))
    if store is not None and not _inside(store, own) and store.is_dir():
        mounts.append(_bind(store, read_only=False))
    if CGROUP_FS.is_dir():
        mounts.append(_bind(CGROUP_FS, read_only=False))
    return mounts
