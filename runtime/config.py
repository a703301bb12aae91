"""``cluster.yml``: which nodes form the swarm, where they keep their state, which keys they trust.

Every relative path in the file resolves against the file's own folder, never the
current directory, so ``tars cluster up`` and a node started by it agree on where the
stores and keys are whatever folder each was started from.  Validation happens once,
here, so every error names the file, the line, the key path and the fix before any
process starts; the rest of TARS asks :class:`ClusterConfig` for absolute paths and
never parses the file itself.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evolution.errors import ConfigError

#: The key pair the CLI signs admin requests with; no node may take its name.
ADMIN = "admin"

_Z85 = re.compile(r"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timers(_Strict):
    """Raft timing in seconds: cluster.yml's ``cluster.timers`` and what the engine runs on.

    The defaults fail over in well under a second yet survive a node whose cores are
    busy running benchmarks: with 0.15–0.3 s (the fastest tuning in ANCHORS.md) a
    leader busy incubating was deposed by late heartbeats several times per demo.
    ``leader_fallback`` is how long a leader keeps leading without hearing from a
    majority (unset: 2 × election_max; pysyncobj's own 30 s would let a partitioned
    leader accept doomed proposals for half a minute); ``tick`` is the engine driver's
    longest sleep when nothing wakes it; ``removed_grace`` is how long a removed node is
    still sent the log, so that it learns its removal committed.  One type for both the
    file and the engine (``consensus.engine.RaftTimers`` builds it with the engine's
    own defaults), so the rules below are written once.
    """

    election_min: Annotated[float, Field(gt=0, le=60)] = 0.4
    election_max: Annotated[float, Field(gt=0, le=120)] = 0.8
    heartbeat: Annotated[float, Field(gt=0, le=20)] = 0.08
    leader_fallback: Annotated[float, Field(gt=0)] | None = None
    tick: Annotated[float, Field(gt=0)] = 0.005
    removed_grace: Annotated[float, Field(ge=0)] = 3.0

    @property
    def fallback(self) -> float:
        """``leader_fallback``, or 2 × ``election_max`` when it is not set."""
        return 2 * self.election_max if self.leader_fallback is None else self.leader_fallback

    @model_validator(mode="after")
    def _ordered(self) -> Timers:
        # A follower must miss several heartbeats before it calls an election, or a
        # healthy leader is deposed by ordinary jitter.
        if self.election_min <= 3 * self.heartbeat:
            raise ValueError(
                f"election_min ({self.election_min:g}) must be more than 3 × heartbeat ({self.heartbeat:g})"
            )
        if self.election_max <= self.election_min:
            raise ValueError(
                f"election_max ({self.election_max:g}) must be more than election_min ({self.election_min:g})"
            )
        if self.fallback <= self.heartbeat:
            raise ValueError(
                f"leader_fallback ({self.fallback:g}) must be more than heartbeat ({self.heartbeat:g})"
            )
        return self


class Compaction(_Strict):
    """When a node drops the Raft log before what its store has applied.

    Once the log holds more than ``after`` entries, the entries older than ``keep``
    entries behind the store's applied index are replaced by a snapshot.  A follower
    within ``keep`` entries catches up from the log; one further behind fetches the
    stored events from a peer (bulk transfer) instead.
    """

    after: Annotated[int, Field(ge=3)] = 10_000
    keep: Annotated[int, Field(ge=2)] = 1_000

    @model_validator(mode="after")
    def _ordered(self) -> Compaction:
        if self.after <= self.keep:
            raise ValueError(f"after ({self.after}) must be more than keep ({self.keep})")
        return self


class ClusterSection(_Strict):
    name: Annotated[str, Field(min_length=1)] = "local"
    backend: Literal["process", "docker"] = "process"
    state: Annotated[str, Field(min_length=1)] = "tars-cluster"
    keys: Annotated[str, Field(min_length=1)] = "tars-cluster/keys"
    timers: Timers = Timers()
    compaction: Compaction = Compaction()


class NodeSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=63)]
    host: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9.\-]+$")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]
    store: Annotated[str, Field(min_length=1)] | None = None
    public_key: str | None = None

    @field_validator("public_key")
    @classmethod
    def _z85(cls, value: str | None) -> str | None:
        if value is not None and not _Z85.match(value):
            raise ValueError("must be a 40-character Z85 CurveZMQ public key")
        return value


class EvolutionSection(_Strict):
    cycles: Annotated[int, Field(ge=1)] = 8
    candidates_per_cycle: Annotated[int, Field(ge=1)] = 2
    seed: int = 7
    #: candidates proven at once on each node; 0 means one per core
    incubators: Annotated[int, Field(ge=0)] = 1
    #: also prove the leader's candidates on the other nodes' incubators (remote actor
    #: messages); a node that cannot be reached is replaced by a local incubator
    spread: bool = False


class ClusterFile(_Strict):
    """The file as written: paths stay as the user wrote them so writing it back keeps them."""

    cluster: ClusterSection = ClusterSection()
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    genomes: list[str] = []
    evolution: EvolutionSection = EvolutionSection()


# -- errors ---------------------------------------------------------------------------

_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): ClusterFile,
    ("cluster",): ClusterSection,
    ("cluster", "timers"): Timers,
    ("cluster", "compaction"): Compaction,
    ("nodes",): NodeSpec,
    ("evolution",): EvolutionSection,
}

_KEY_FIXES = {
    "id": "use lowercase letters, digits and '-', starting with a letter or digit (node-1)",
    "host": "write a host name or an IP address such as 127.0.0.1",
    "port": "use a free TCP port between 1 and 65535",
    "public_key": "paste the line `tars keys` prints for the node, or remove the key to read <keys>/<id>.key",
    "timers": "for example {election_min: 0.15, election_max: 0.30, heartbeat: 0.03}",
    "compaction": "for example {after: 10000, keep: 1000}",
    "nodes": "list at least one node with id, host and port",
}

_TYPE_FIXES = {
    "missing": "add it",
    "literal_error": "use one of the allowed values",
    "int_type": "write a whole number",
    "int_parsing": "write a whole number",
    "float_parsing": "write a number",
}


def _key_path(loc: Sequence[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _line_of(root: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """The 1-based line of the deepest part of ``loc`` present in the YAML (a missing key: its parent's)."""
    if root is None or not loc:
        return None
    node: yaml.Node = root
    line: int | None = None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _error(
    source: str, root: yaml.Node | None, loc: Sequence[str | int], message: str, hint: str
) -> ConfigError:
    line = _line_of(root, loc)
    where = f"{source}:{line}" if line is not None else source
    return ConfigError(f"{where}: {_key_path(loc)}: {message}", hint=hint)


def _from_validation(source: str, root: yaml.Node | None, exc: ValidationError) -> ConfigError:
    errors = exc.errors()
    # A misspelt key also makes the real one "missing": the unknown key is the better clue.
    first = next((error for error in errors if error["type"] == "extra_forbidden"), errors[0])
    loc: tuple[str | int, ...] = tuple(first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section = tuple(part for part in loc[:-1] if isinstance(part, str))
        model = _SECTIONS.get(section)
        allowed = ", ".join(model.model_fields) if model else ""
        fix = (
            f"remove it or check its spelling (allowed here: {allowed})" if allowed else "remove it"
        )
        return _error(source, root, loc, f"unknown key {loc[-1]!r}", fix)
    named = next((part for part in reversed(loc) if isinstance(part, str)), "")
    fix = _KEY_FIXES.get(named) or _TYPE_FIXES.get(first["type"]) or "see docs/cluster.md"
    if first["type"] == "missing":
        fix = "add it"
    return _error(source, root, loc, message, fix)


def _check(model: ClusterFile, base_dir: Path, source: str, root: yaml.Node | None) -> None:
    """What a per-field validator cannot see: clashes between nodes, folders on disk."""
    seen_ids: dict[str, int] = {}
    seen_addresses: dict[tuple[str, int], str] = {}
    for index, node in enumerate(model.nodes):
        if node.id == ADMIN:
            raise _error(
                source,
                root,
                ("nodes", index, "id"),
                f"{ADMIN!r} is reserved for the CLI's key pair",
                "give the node another id, such as node-4",
            )
        if node.id in seen_ids:
            raise _error(
                source,
                root,
                ("nodes", index, "id"),
                f"{node.id!r} is used twice (also nodes[{seen_ids[node.id]}])",
                "give every node its own id",
            )
        seen_ids[node.id] = index
        address = (node.host, node.port)
        if address in seen_addresses:
            raise _error(
                source,
                root,
                ("nodes", index, "port"),
                f"{node.host}:{node.port} is already taken by {seen_addresses[address]}",
                "give every node on a host its own port",
            )
        seen_addresses[address] = node.id
        if node.store is not None:
            scheme = node.store.split("://", 1)[0].lower() if "://" in node.store else ""
            if scheme and scheme not in ("sqlite", "postgresql", "postgres", "memory"):
                raise _error(
                    source,
                    root,
                    ("nodes", index, "store"),
                    f"unknown kind of store {scheme}://",
                    "use sqlite:///path/store.db (relative to cluster.yml) or postgresql://user@host/db",
                )
    for index, folder in enumerate(model.genomes):
        path = _resolve(base_dir, folder)
        if not path.is_dir():
            raise _error(
                source,
                root,
                ("genomes", index),
                f"folder {path} does not exist",
                f"name a genome folder, relative to {base_dir} or absolute",
            )


def _resolve(base_dir: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


# -- loading --------------------------------------------------------------------------


def load_cluster(path: Path) -> ClusterConfig:
    """Read and validate ``cluster.yml``; every problem is one :class:`ConfigError` naming file, line, key and fix."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{source}: no such file",
            hint="pass --config PATH of a cluster.yml (TARS ships one at its top level)",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{source}: cannot read ({exc})", hint="check the path and its permissions"
        ) from exc
    return parse_cluster(text, Path(path), source=source)


def parse_cluster(text: str, path: Path, *, source: str | None = None) -> ClusterConfig:
    """Validate cluster.yml text as if it lived at ``path`` (its folder anchors relative paths)."""
    source = source or str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(
            f"{where}: not valid YAML ({problem})",
            hint="fix the syntax at the line and column shown",
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})", hint="fix the syntax") from exc
    _no_duplicate_keys(root, source)
    if data is None:
        raise ConfigError(
            f"{source}: is empty", hint="write at least a nodes: list (see docs/cluster.md)"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of cluster, nodes, genomes and evolution, got {type(data).__name__}",
            hint="see docs/cluster.md for the layout",
        )
    try:
        model = ClusterFile.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(source, root, exc) from exc
    absolute = Path(path).expanduser().absolute()
    _check(model, absolute.parent, source, root)
    return ClusterConfig(model, absolute, header=_header(text))


def _no_duplicate_keys(
    node: yaml.Node | None, source: str, loc: tuple[str | int, ...] = ()
) -> None:
    """PyYAML keeps the last of two equal keys silently; a doubled ``port:`` is a mistake to report."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(getattr(key, "value", ""))
            if name in seen:
                raise ConfigError(
                    f"{source}:{key.start_mark.line + 1}: {_key_path((*loc, name))}: given twice",
                    hint="keep one of the two lines",
                )
            seen.add(name)
            _no_duplicate_keys(value, source, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _no_duplicate_keys(item, source, (*loc, index))


def _header(text: str) -> str:
    """The comment block at the top of the file, kept when the CLI writes the file back."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def _sqlite_url(base_dir: Path, url: str) -> str:
    """An absolute ``sqlite:////…`` URL, anchoring a relative one to ``base_dir``."""
    if "://" not in url:
        return f"sqlite:///{_resolve(base_dir, url)}"
    if not url.lower().startswith("sqlite:///"):
        return url
    rest = unquote(url[len("sqlite:///") :])
    return f"sqlite:///{_resolve(base_dir, rest)}"


# -- the validated configuration --------------------------------------------------------


class ClusterConfig:
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

    # -- paths -------------------------------------------------------------------------

    @property
    def state_root(self) -> Path:
        return _resolve(self.base_dir, self.model.cluster.state)

    @property
    def keys_dir(self) -> Path:
        return _resolve(self.base_dir, self.model.cluster.keys)

    @property
    def genome_dirs(self) -> list[Path]:
        return [_resolve(self.base_dir, folder) for folder in self.model.genomes]

    def state_dir(self, node_id: str) -> Path:
        return self.state_root / self.node(node_id).id

    def store_url(self, node_id: str) -> str:
        node = self.node(node_id)
        if node.store is None:
            return f"sqlite:///{self.state_root / node.id / 'store.db'}"
        return _sqlite_url(self.base_dir, node.store)

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
        if name != ADMIN:
            self.node(name)
        from runtime.keys import read_keypair

        self._key_files(name, secret=True)
        public, secret = read_keypair(self.keys_dir, name)
        return str(public), str(secret)

    def ensure_keys(self, names: Sequence[str] | None = None, *, force: bool = False) -> list[str]:
        """Make the key pairs that are missing (every node and admin by default); returns the names made.

        A node whose public key is inline, or whose ``.key`` file is present without a
        secret, runs elsewhere: its owner holds the secret, so no pair is made for it.
        """
        from runtime.keys import write_keypair

        wanted = list(names) if names is not None else [*self.ids, ADMIN]
        created: list[str] = []
        for name in wanted:
            inline = name != ADMIN and self.node(name).public_key is not None
            if not force and (inline or (self.keys_dir / f"{name}.key").exists()):
                continue
            self.keys_dir.mkdir(parents=True, exist_ok=True)
            write_keypair(self.keys_dir, name, force=force)
            created.append(name)
        return created

    # -- changing the file ---------------------------------------------------------------

    def _validated(self, data: dict[str, Any], path: Path) -> ClusterConfig:
        source = str(path)
        try:
            model = ClusterFile.model_validate(data)
        except ValidationError as exc:
            raise _from_validation(source, None, exc) from exc
        _check(model, path.parent, source, None)
        return ClusterConfig(model, path, header=self._header)

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
                entry["store"] = _sqlite_url(self.base_dir, node.store)
            data["nodes"].append(entry)
        return self._validated(data, self.path)

    def dump(self, path: Path) -> ClusterConfig:
        """Write this configuration to ``path`` with absolute paths; returns it as loaded from there."""
        target = Path(path).expanduser().absolute()
        _write(
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
        _write(self.path, updated._data(), self._header)
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
        _write(self.path, updated._data(), self._header)
        return updated


def _write(path: Path, data: dict[str, Any], header: str) -> None:
    """Write atomically: a crash mid-write must not leave a half cluster.yml behind."""
    text = header + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
