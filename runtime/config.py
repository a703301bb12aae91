"""``cluster.yml``: which nodes form the swarm, where they keep their state, which keys they trust.

Every relative path in the file resolves against the file's own folder, never the
current directory, so ``tars cluster up`` and a node started by it agree on where the
stores and keys are whatever folder each was started from.  Validation happens once,
here, so every error names the file, the line, the key path and the fix before any
process starts; the rest of TARS asks :class:`ClusterConfig` for absolute paths and
never parses the file itself.

This module holds the schema and the way in (:func:`load_cluster`, :func:`parse_cluster`,
:func:`validated`); the YAML text is read and written by :mod:`runtime.config_yaml`,
problems are worded by :mod:`runtime.config_errors`, and :class:`ClusterConfig` lives in
:mod:`runtime.cluster_config`.  Every name is importable from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evolution.errors import ConfigError
from evolution.manifest import HoldRules, RolloutSettings
from runtime.approval_config import ApprovalSection
from runtime.cluster_config import ADMIN, ClusterConfig, SandboxSection, resolve
from runtime.config_errors import config_error, from_validation
from runtime.config_yaml import header, read_yaml
from runtime.llm_config import LLMConfig, ModelConfig

_B64_KEY = r"^[A-Za-z0-9+/]{43}=$"  # a 32-byte Ed25519 public key, base64
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


_MIB = 1 << 20


class Bounds(_Strict):
    """What one peer can make a node hold, in bytes (``runtime.transport``'s bounds).

    A peer that sends more than these is refused and counted, never remembered without
    limit; a reliable stream recovers what was refused by retransmission
    (docs/transport.md, "Bounded peers").  The defaults hold a busy swarm's traffic.
    """

    reorder_bytes: Annotated[int, Field(ge=1)] = 4 * _MIB
    backlog_bytes: Annotated[int, Field(ge=1)] = 16 * _MIB
    unacked_bytes: Annotated[int, Field(ge=1)] = 32 * _MIB
    request_bytes: Annotated[int, Field(ge=1)] = 32 * _MIB


class ClusterSection(_Strict):
    name: Annotated[str, Field(min_length=1)] = "local"
    backend: Literal["process", "docker"] = "process"
    state: Annotated[str, Field(min_length=1)] = "tars-cluster"
    keys: Annotated[str, Field(min_length=1)] = "tars-cluster/keys"
    admin_sign_key: Annotated[str, Field(pattern=_B64_KEY)] | None = None  # `tars keys` writes it
    timers: Timers = Timers()
    compaction: Compaction = Compaction()
    bounds: Bounds = Bounds()


class NodeSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=63)]
    host: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9.\-]+$")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]
    #: the service's HTTP front (docs/service.md); absent or 0: a free port at start
    http: Annotated[int, Field(ge=0, le=65535)] | None = None
    store: Annotated[str, Field(min_length=1)] | None = None
    public_key: str | None = None
    sign_key: Annotated[str, Field(pattern=_B64_KEY)] | None = None  # Ed25519, `tars keys`

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
    #: the governor's hold rules for every genome (a genome's ``[policy]`` overrides them)
    policy: HoldRules | None = None


class ServiceSection(_Strict):
    """Where a node runs its service's workers (docs/service.md, "Workers in containers").

    ``jail``: jailed processes of the node (bwrap, cgroups). ``container``: every pool —
    blue at start and each green of a new version — in a new container of the node's
    image, the version's tree mounted read-only, no network, as nobody. ``auto`` (the
    default): containers when the node itself runs in one (the docker backend tells it
    its image), else the jail. ``image``: the image for them (default: the node's own,
    or the one `tars cluster up --backend docker` builds).
    """

    placement: Literal["auto", "jail", "container"] = "auto"
    image: (
        Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@-]*$")] | None
    ) = None


class ClusterFile(_Strict):
    """The file as written: paths stay as the user wrote them so writing it back keeps them."""

    cluster: ClusterSection = ClusterSection()
    nodes: Annotated[list[NodeSpec], Field(min_length=1)]
    genomes: list[str] = []
    evolution: EvolutionSection = EvolutionSection()
    sandbox: SandboxSection = SandboxSection()
    service: ServiceSection = ServiceSection()
    #: every genome's rollout settings unless its manifest has ``[rollout]`` (docs/rollouts.md)
    rollout: RolloutSettings | None = None
    #: who may approve a held candidate, and how many must (docs/approval.md)
    approval: ApprovalSection = ApprovalSection()
    #: the language models every node's generator also asks (llm.yml's keys; docs/llm.md)
    llm: LLMConfig | None = None


# -- validation ------------------------------------------------------------------------

_SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): ClusterFile,
    ("cluster",): ClusterSection,
    ("cluster", "timers"): Timers,
    ("cluster", "compaction"): Compaction,
    ("cluster", "bounds"): Bounds,
    ("nodes",): NodeSpec,
    ("evolution",): EvolutionSection,
    ("evolution", "policy"): HoldRules,
    ("sandbox",): SandboxSection,
    ("service",): ServiceSection,
    ("rollout",): RolloutSettings,
    ("approval",): ApprovalSection,
    ("llm",): LLMConfig,
    ("llm", "models"): ModelConfig,
}


def _check(model: ClusterFile, base_dir: Path, source: str, root: yaml.Node | None) -> None:
    """What a per-field validator cannot see: clashes between nodes, folders on disk."""
    seen_ids: dict[str, int] = {}
    seen_addresses: dict[tuple[str, int], str] = {}
    for index, node in enumerate(model.nodes):
        if node.id == ADMIN:
            raise config_error(
                source,
                root,
                ("nodes", index, "id"),
                f"{ADMIN!r} is reserved for the CLI's key pair",
                "give the node another id, such as node-4",
            )
        if node.id in seen_ids:
            raise config_error(
                source,
                root,
                ("nodes", index, "id"),
                f"{node.id!r} is used twice (also nodes[{seen_ids[node.id]}])",
                "give every node its own id",
            )
        seen_ids[node.id] = index
        address = (node.host, node.port)
        if address in seen_addresses:
            raise config_error(
                source,
                root,
                ("nodes", index, "port"),
                f"{node.host}:{node.port} is already taken by {seen_addresses[address]}",
                "give every node on a host its own port",
            )
        seen_addresses[address] = node.id
        if node.http:  # the HTTP front's port may not be any node's port on the host
            web = (node.host, node.http)
            if web in seen_addresses or web == address:
                raise config_error(
                    source,
                    root,
                    ("nodes", index, "http"),
                    f"{node.host}:{node.http} is already taken by {seen_addresses.get(web, node.id)}",
                    "give the node's http front a port no other port of this host uses",
                )
            seen_addresses[web] = f"{node.id} (http)"
        if node.store is not None:
            scheme = node.store.split("://", 1)[0].lower() if "://" in node.store else ""
            if scheme and scheme not in ("sqlite", "postgresql", "postgres", "memory"):
                raise config_error(
                    source,
                    root,
                    ("nodes", index, "store"),
                    f"unknown kind of store {scheme}://",
                    "use sqlite:///path/store.db (relative to cluster.yml) or postgresql://user@host/db",
                )
    for index, name in enumerate(model.approval.approvers):
        if name in seen_ids:  # a member's key must never count as a person's decision
            raise config_error(
                source,
                root,
                ("approval", "approvers", index),
                f"{name!r} is a node: a node cannot approve what the swarm held for a person",
                "list the people (or admin) who approve, each with their own signing key",
            )
    if model.llm is not None and Path(model.llm.cache).expanduser().is_absolute():
        raise config_error(
            source, root, ("llm", "cache"), "must be a file name, not an absolute path",
            "each node keeps its own reply cache in its state folder: give a name such as llm-cache.sqlite",
        )  # fmt: skip
    for index, folder in enumerate(model.genomes):
        path = resolve(base_dir, folder)
        if not path.is_dir():
            raise config_error(
                source,
                root,
                ("genomes", index),
                f"folder {path} does not exist",
                f"name a genome folder, relative to {base_dir} or absolute",
            )


def validated(
    data: dict[str, Any], path: Path, *, source: str, root: yaml.Node | None, header: str
) -> ClusterConfig:
    """The one way from data to a :class:`ClusterConfig`: the schema, then what it cannot see."""
    try:
        model = ClusterFile.model_validate(data)
    except ValidationError as exc:
        raise from_validation(source, root, exc, _SECTIONS) from exc
    _check(model, path.parent, source, root)
    return ClusterConfig(model, path, header=header)


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
    root, data = read_yaml(text, source)
    absolute = Path(path).expanduser().absolute()
    return validated(data, absolute, source=source, root=root, header=header(text))


__all__ = [
    "ADMIN",
    "ApprovalSection",
    "Bounds",
    "ClusterConfig",
    "ClusterFile",
    "ClusterSection",
    "Compaction",
    "EvolutionSection",
    "NodeSpec",
    "SandboxSection",
    "ServiceSection",
    "Timers",
    "load_cluster",
    "parse_cluster",
    "validated",
]
