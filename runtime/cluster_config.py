"""A validated cluster.yml that answers every question about the swarm with absolute paths.

Nodes, their endpoints, where each keeps its state, store, journal, log and keys, and
how to change the file (add or remove a node, or write a copy elsewhere) without
losing what the user wrote.  The schema and the loading live in :mod:`runtime.config`,
which re-exports :class:`ClusterConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, Field

from evolution.errors import ConfigError
from runtime.approval_config import ApproverNames
from runtime.config_yaml import write_atomic

if TYPE_CHECKING:
    from runtime.config import (
        Bounds,
        ClusterFile,
        Compaction,
        EvolutionSection,
        NodeSpec,
        Timers,
    )

#: The key pair the CLI signs admin requests with; no node may take its name.
ADMIN = "admin"


def resolve(base_dir: Path, value: str | Path) -> Path:
    """A path as cluster.yml means it: ``~`` expanded, relative to the file's own folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def sqlite_url(base_dir: Path, url: str) -> str:
    """An absolute ``sqlite:////…`` URL, anchoring a relative one to ``base_dir``."""
    if "://" not in url:
        return f"sqlite:///{resolve(base_dir, url)}"
    if not url.lower().startswith("sqlite:///"):
        return url
    rest = unquote(url[len("sqlite:///") :])
    return f"sqlite:///{resolve(base_dir, rest)}"


class ClusterConfig(ApproverNames):
    """A validated cluster.yml plus where it lives, answering every path question absolutely."""

    def __init__(self, model: ClusterFile, path: Path, *, header: str = "") -> None:
        self.model = model
        self.path = path
        self.base_dir = path.parent
        self._header = header

    def __repr__(self) -> str:
        return f"ClusterConfig({self.path}, nodes={self.ids})"

    # -- sections ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.model.cluster.name

    @property
    def backend(self) -> str:
        return self.model.cluster.backend

    @property
    def timers(self) -> Timers:
        return self.model.cluster.timers

    @property
    def compaction(self) -> Compaction:
        return self.model.cluster.compaction

    @property
    def bounds(self) -> Bounds:
        return self.model.cluster.bounds

    @property
    def evolution(self) -> EvolutionSection:
        return self.model.evolution

    @property
    def nodes(self) -> list[NodeSpec]:
        return list(self.model.nodes)

    @property
    def ids(self) -> list[str]:
        return [node.id for node in self.model.nodes]

    def node(self, node_id: str) -> NodeSpec:
        for node in self.model.nodes:
            if node.id == node_id:
                return node
        raise ConfigError(
            f"node {node_id!r} is not in {self.path} (nodes: {', '.join(self.ids)})",
            hint="use one of those ids, or add the node with `tars cluster add`",
        )

    def endpoint(self, node_id: str) -> str:
        node = self.node(node_id)
        return f"tcp://{node.host}:{node.port}"

    def http_bind(self, node_id: str) -> tuple[str, int]:
        """Where the node's HTTP front listens: its host and ``http`` port (0: any free one)."""
        node = self.node(node_id)
        return node.host, node.http or 0

    def http_url(self, node_id: str) -> str | None:
        """``http://HOST:PORT`` when cluster.yml fixes the port (else the node says it)."""
        node = self.node(node_id)
        return f"http://{node.host}:{node.http}" if node.http else None

    # -- paths -------------------------------------------------------------------------

    @property
    def state_root(self) -> Path:
        return resolve(self.base_dir, self.model.cluster.state)

    @property
    def keys_dir(self) -> Path:
        return resolve(self.base_dir, self.model.cluster.keys)

    @property
    def genome_dirs(self) -> list[Path]:
        return [resolve(self.base_dir, folder) for folder in self.model.genomes]

    def state_dir(self, node_id: str) -> Path:
        return self.state_root / self.node(node_id).id

    def store_url(self, node_id: str) -> str:
        node = self.node(node_id)
        if node.store is None:
            return f"sqlite:///{self.state_root / node.id / 'store.db'}"
        return sqlite_url(self.base_dir, node.store)

    def journal_path(self, node_id: str) -> Path:
        return self.state_dir(node_id) / "raft.journal"

    def log_path(self, node_id: str) -> Path:
        return self.state_dir(node_id) / "node.log"

    def pid_path(self, node_id: str) -> Path:
        return self.state_dir(node_id) / "node.pid"

    # -- keys --------------------------------------------------------------------------

    def _key_files(self, name: str, *, secret: bool) -> None:
        needed = [f"{name}.key"] + ([f"{name}.key_secret"] if secret else [])
        missing = [file for file in needed if not (self.keys_dir / file).is_file()]
        if missing:
            raise ConfigError(
                f"{self.path}: no key file {', '.join(missing)} in {self.keys_dir}",
                hint=f"run `tars keys --config {self.path}` to make the missing key pairs",
            )

    def public_key(self, node_id: str) -> str:
        """A node's CurveZMQ public key: inline in cluster.yml, else from ``<keys>/<id>.key``."""
        node = self.node(node_id)
        if node.public_key is not None:
            return node.public_key
        from runtime.keys import read_public

        self._key_files(node.id, secret=False)
        return str(read_public(self.keys_dir, node.id))

    def keypair(self, name: str) -> tuple[str, str]:
        """(public, secret) of a node or of ``admin``, from the keys folder."""
        if name != ADMIN and name not in self.approvers:
            self.node(name)
        from runtime.keys import read_keypair

        self._key_files(name, secret=True)
        public, secret = read_keypair(self.keys_dir, name)
        return str(public), str(secret)

    def ensure_keys(self, names: Sequence[str] | None = None, *, force: bool = False) -> list[str]:
        """Make the key pairs that are missing (every node and admin by default); returns the names made.

        Each name gets a CurveZMQ pair (the transport) and an Ed25519 signing key (its
        ledger entries), whose public key is recorded in cluster.yml (``sign_key``, and
        ``cluster.admin_sign_key``) by a line edit that keeps the file's comments; this
        object then reads the file again.  A node whose public key is inline, or whose
        ``.key`` file is present without a secret, runs elsewhere: its owner holds the
        secret, so no pair is made for it (and likewise for a recorded ``sign_key``).
        """
        from runtime.keys import write_keypair

        wanted = list(names) if names is not None else [*self.ids, ADMIN]
        created: list[str] = []
        for name in wanted:
            inline = self._person(name) is None and self.node(name).public_key is not None
            if not force and (inline or (self.keys_dir / f"{name}.key").exists()):
                continue
            self.keys_dir.mkdir(parents=True, exist_ok=True)
            write_keypair(self.keys_dir, name, force=force)
            created.append(name)
        signed = self._ensure_sign_keys(wanted, force=force)
        return [*created, *(name for name in signed if name not in created)]

    def _ensure_sign_keys(self, wanted: Sequence[str], *, force: bool) -> list[str]:
        """Make missing signing keys and record every local public key cluster.yml lacks."""
        from runtime.config_edit import set_values
        from runtime.keys import (
            encode_sign_key,
            has_sign_secret,
            read_sign_secret,
            sign_public_of,
            write_sign_keypair,
        )

        made: list[str] = []
        record: dict[str, str] = {}
        for name in wanted:
            listed = self._listed_sign_key(name)
            if not (self.keys_dir / f"{name}.key_secret").is_file():
                continue  # runs elsewhere: its owner holds the secrets
            if force or (listed is None and not has_sign_secret(self.keys_dir, name)):
                record[name] = write_sign_keypair(self.keys_dir, name, force=force)
                made.append(name)
            elif has_sign_secret(self.keys_dir, name):
                public = encode_sign_key(sign_public_of(read_sign_secret(self.keys_dir, name)))
                if public != listed:
                    record[name] = public
        if record:
            admin = {"admin_sign_key": record.pop(ADMIN)} if ADMIN in record else {}
            people = {name: record.pop(name) for name in list(record) if name in self.approvers}
            nodes = {name: {"sign_key": key} for name, key in record.items()}
            set_values(self.path, cluster=admin, nodes=nodes, approval_keys=people)
            from runtime.config import load_cluster  # runtime.config imports this module

            fresh = load_cluster(self.path)
            self.model, self._header = fresh.model, fresh._header
        return made

    def _listed_sign_key(self, name: str) -> str | None:
        if name == ADMIN:
            return self.model.cluster.admin_sign_key
        if self._person(name) is not None:
            return self.model.approval.keys.get(name)
        return self.node(name).sign_key

    def sign_key(self, name: str) -> bytes:
        """The public Ed25519 key cluster.yml records for a node (or ``admin``), raw."""
        from runtime.keys import decode_sign_key

        if self._person(name) is None:
            self.node(name)
        listed = self._listed_sign_key(name)
        if listed is None:
            where = (
                "cluster.admin_sign_key"
                if name == ADMIN
                else f"approval.keys.{name}"
                if name in self.approvers
                else f"node {name}'s sign_key"
            )
            raise ConfigError(
                f"{self.path}: {where} is missing: {name} has no public signing key, so no "
                "node could verify the ledger entries it signs",
                hint=f"run `tars keys --config {self.path}` to make the signing keys and record them",
            )
        return decode_sign_key(listed, f"{self.path}: the sign_key of {name}")

    def sign_keys(self) -> dict[str, bytes]:
        """Every node's public signing key and the admin's (the swarm's first keyring)."""
        return {name: self.sign_key(name) for name in [*self.ids, ADMIN]}

    def sign_secret(self, name: str) -> bytes:
        """A node's (or ``admin``'s) private signing key, from ``<keys>/<name>.key_secret``."""
        from runtime.keys import read_sign_secret

        return read_sign_secret(self.keys_dir, name)

    # -- changing the file ---------------------------------------------------------------

    def _validated(self, data: dict[str, Any], path: Path) -> ClusterConfig:
        from runtime.config import validated  # runtime.config imports this module

        return validated(data, path, source=str(path), root=None, header=self._header)

    def _data(self) -> dict[str, Any]:
        return self.model.model_dump(mode="json", exclude_unset=True, exclude_none=True)

    def with_nodes(
        self,
        nodes: Sequence[NodeSpec] | None = None,
        *,
        state: Path | None = None,
        keys: Path | None = None,
        genomes: Sequence[Path] | None = None,
        evolution: EvolutionSection | None = None,
        timers: Timers | None = None,
        name: str | None = None,
        compaction: Compaction | None = None,
    ) -> ClusterConfig:
        """A copy with other nodes (and optionally other folders), every path made absolute.

        Absolute paths let :meth:`dump` write the copy anywhere, such as a demo's
        workdir, and still mean the same folders.  Relative arguments resolve against
        the current directory, as paths given on a command line do.
        """
        data = self._data()
        cluster = data.setdefault("cluster", {})
        cluster["state"] = str(
            state.expanduser().absolute() if state is not None else self.state_root
        )
        cluster["keys"] = str(keys.expanduser().absolute() if keys is not None else self.keys_dir)
        if timers is not None:
            cluster["timers"] = timers.model_dump(mode="json")
        if compaction is not None:
            cluster["compaction"] = compaction.model_dump(mode="json")
        if name is not None:
            cluster["name"] = name
        if evolution is not None:
            data["evolution"] = evolution.model_dump(mode="json")
        folders = (
            [g.expanduser().absolute() for g in genomes]
            if genomes is not None
            else self.genome_dirs
        )
        data["genomes"] = [str(folder) for folder in folders]
        chosen = list(nodes) if nodes is not None else self.model.nodes
        data["nodes"] = []
        for node in chosen:
            entry = node.model_dump(mode="json", exclude_unset=True, exclude_none=True)
            entry.setdefault("host", node.host)
            if node.store is not None:
                entry["store"] = sqlite_url(self.base_dir, node.store)
            data["nodes"].append(entry)
        return self._validated(data, self.path)

    def dump(self, path: Path) -> ClusterConfig:
        """Write this configuration to ``path`` with absolute paths; returns it as loaded from there."""
        from runtime.config import load_cluster  # runtime.config imports this module

        target = Path(path).expanduser().absolute()
        write_atomic(
            target,
            self.with_nodes()._data(),
            f"# Written by TARS from {self.path}; every path is absolute.\n",
        )
        return load_cluster(target)

    def add_node(self, spec: NodeSpec) -> ClusterConfig:
        """Append a node and write cluster.yml back (its other content kept as written)."""
        data = self._data()
        data["nodes"] = [*data["nodes"], spec.model_dump(mode="json", exclude_none=True)]
        updated = self._validated(data, self.path)
        write_atomic(self.path, updated._data(), self._header)
        return updated

    def remove_node(self, node_id: str) -> ClusterConfig:
        """Drop a node and write cluster.yml back; removing the last node is refused."""
        self.node(node_id)
        if len(self.model.nodes) == 1:
            raise ConfigError(
                f"{self.path}: {node_id} is the only node",
                hint="a swarm needs at least one node; stop it with `tars cluster down` instead",
            )
        data = self._data()
        data["nodes"] = [entry for entry in data["nodes"] if entry["id"] != node_id]
        updated = self._validated(data, self.path)
        write_atomic(self.path, updated._data(), self._header)
        return updated


# -- cluster.yml's `sandbox:` section (docs/cluster.md, docs/sandbox.md) ----------------


class SandboxSection(BaseModel):
    """How every node of the cluster runs candidate code.

    ``accept_weak_isolation`` lets the nodes run candidates where the full jail is
    unavailable (no bubblewrap, no cgroups; the same as `tars node start
    --accept-weak-isolation`); ``disk_mb`` caps every run's disk quota (its workdir,
    /tmp and /dev/shm together).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    accept_weak_isolation: bool = False
    disk_mb: Annotated[int, Field(ge=16, le=1 << 20)] = 512


def sandbox_settings(config: ClusterConfig) -> SandboxSection:
    """The file's ``sandbox:`` section (the defaults where it has none)."""
    found = getattr(config.model, "sandbox", None)
    return found if isinstance(found, SandboxSection) else SandboxSection()
