"""Every ledger entry, as typed NamedTuples, encoded and validated in this one place.

One module, like ``actors/messages.py``: a reader sees the whole ledger schema at once.
On the wire (and in every Raft journal) an entry is a msgpack map: ``type`` first, then
the entry's fields in the order declared here.  That byte layout predates these types and
existing journals and peers depend on it, so :func:`encode` must keep producing exactly
the same bytes (``tests/test_ledger_entries.py`` pins them).

:func:`decode` turns bytes into a typed entry or raises :class:`ConsensusError` naming the
entry type and the bad field, so the state machine never meets a half-checked map.  The
check is a pure function of the bytes, so every node rejects the same entry the same way.
Fields beyond the declared ones are ignored (a newer proposer may add some); the records
nested in a ``cycle`` entry must have exactly their dataclass's fields, as before.

``at`` is the proposer's clock (epoch seconds): every node stores that timestamp, so the
same events with the same hash chain.

Every entry names its author in ``node`` and is signed by it: the ``*_entry``
constructors take the author's :class:`~consensus.signing.Signer` and append ``sig``
(:mod:`consensus.signing`, an envelope over the bytes, so it covers every field of
every entry type); who may author what, and the state machine's check, are in
:mod:`consensus.authors`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, NamedTuple

import msgpack

from consensus._msgspec import FastDecoder
from consensus._schema import Bad, Defaults, Schema, defaults_of, name_of, schema_of
from consensus.approvals import Approval, ApproverList, approver_list_problem
from consensus.rollout_entry import Rollout, rollout_problem
from consensus.rollout_entry import rollout_entry as rollout_entry
from consensus.signing import Signer, sign
from events.records import Adoption, CandidateRecord, Held, left_out
from evolution.errors import ConsensusError

#: Largest entry a node will decode (a whole genome tree fits many times over).
MAX_ENTRY = 32 << 20


class Proposal(NamedTuple):
    """A cycle's winner put before the swarm: the adoption it would become, and its id.

    On the wire it is the adoption's fields followed by ``id`` (one flat map).
    """

    id: str
    adoption: Adoption


class Register(NamedTuple):
    """A genome joins the swarm with its first version (``tree``) and baseline fitness."""

    genome: str
    manifest: str
    tree: dict[str, str]
    fitness: float | None
    node: str
    at: float


class Cycle(NamedTuple):
    """One evolution cycle's results; its winner (if any) becomes a proposal."""

    genome: str
    node: str
    cycle: int
    seed: int
    evaluated: list[CandidateRecord]
    held: list[Held]
    proposal: Proposal | None
    at: float
    #: the models' calls, spend and failures (evolution.llm_usage; empty: left out)
    llm: dict[str, Any] = {}  # noqa: RUF012  (never mutated; left out of the bytes when empty)


class Vote(NamedTuple):
    """A node's verdict on one version of a waiting proposal."""

    genome: str
    proposal: str
    version: str
    node: str
    yes: bool
    reason: str
    at: float


class Rollback(NamedTuple):
    """The genome's head goes back to the earlier version ``to``."""

    genome: str
    to: str
    reason: str
    node: str
    at: float


class Members(NamedTuple):
    """The swarm's member list from this entry on (the majority is counted over it).

    ``keys`` records the public signing keys (base64) of members the swarm did not know
    yet (a node added later), so every node verifies their entries with the same keys.
    """

    members: list[str]
    node: str
    at: float
    keys: dict[str, str] = {}  # noqa: RUF012  (never mutated; left out of the bytes when empty)


# ---- offers: the candidates a proposer may ask its peers' incubators to prove (issue 9) ----


@dataclasses.dataclass(frozen=True)
class Offered:
    """One candidate of an offer: its id and its patch against the offer's parent."""

    candidate: str
    patch: str


class Offer(NamedTuple):
    """Candidates committed before any peer proves them: a peer's incubator runs only these.

    A peer asked to prove one (``actors.messages.IncubateOffered``) builds the run from its
    own ledger state: this patch, its own store's tree of ``parent``, its own manifest.
    """

    genome: str
    node: str
    id: str
    parent: str
    candidates: list[Offered]
    at: float


def offer_id(genome: str, node: str, parent: str, candidates: Sequence[str], at: float) -> str:
    """The offer's name: the same on every node, a different one for every offer made."""
    name = f"tars:offer:{genome}:{node}:{parent}:{float(at)!r}:{','.join(candidates)}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16]


def offer_entry(
    genome: str,
    node: str,
    offer: str,
    parent: str,
    candidates: Sequence[tuple[str, str]],
    at: float,
) -> bytes:
    """A cycle's candidates to prove, as (candidate id, patch) pairs against ``parent``."""
    listed = [Offered(candidate, patch) for candidate, patch in candidates]
    return encode(Offer(genome, node, offer, parent, listed, at))


# ---- all entry types -------------------------------------------------------------------

Entry = Register | Cycle | Vote | Rollback | Members | Offer | Rollout | Approval | ApproverList

#: The ``type`` tag of each entry class, as it is on the wire.
TYPES: dict[str, type[Entry]] = {
    "register": Register,
    "cycle": Cycle,
    "vote": Vote,
    "rollback": Rollback,
    "members": Members,
    "offer": Offer,
    "rollout": Rollout,  # its own module: consensus/rollout_entry.py
    "approval": Approval,  # its own module: consensus/approvals.py
    "approvers": ApproverList,  # the admin's: who approves, the quorum (approvals.py)
}
_KIND: dict[type, str] = {cls: kind for kind, cls in TYPES.items()}

#: Fields an older or sparser proposer may leave out (or send as nil), with their value.
_OPTIONAL: dict[type, Defaults] = {
    Cycle: {"evaluated": list, "held": list, "proposal": lambda: None, "llm": dict},
    Vote: {"reason": str},
    Rollback: {"reason": str},
    Members: {"keys": dict},
    Rollout: {"result": str, "reason": str, "plan": dict},
    Approval: {"reason": str},
}
#: Fields added after entries' bytes were pinned: left out of the bytes when empty, so an
#: entry that does not use them is byte for byte what it was.
_LEFT_OUT_EMPTY: dict[type, frozenset[str]] = {
    Members: frozenset({"keys"}),
    Cycle: frozenset({"llm"}),
    Rollout: frozenset({"plan"}),
}
#: Checks beyond the fields' types, by entry type: what is wrong, or None.
_BEYOND: dict[type, Callable[[Any], str | None]] = {
    Rollout: rollout_problem,
    ApproverList: approver_list_problem,
}
#: The name entries of the admin (the CLI's key) carry in ``node``.
ADMIN = "admin"


def kind_of(entry: Entry) -> str:
    """The wire ``type`` of a typed entry."""
    return _KIND[type(entry)]


def proposal_id(genome: str, node: str, cycle: int, version: str) -> str:
    """The same id on every node, and a different one for every proposal a node makes."""
    name = f"tars:proposal:{genome}:{node}:{cycle}:{version}"
    return uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:16]


# ---- encoding --------------------------------------------------------------------------


def encode(entry: Entry, signer: Signer | None = None) -> bytes:
    """The entry's bytes for ``Consensus.propose``: ``type``, then its fields in order,
    then ``sig`` when a ``signer`` (the entry's author) is given."""
    body: dict[str, Any] = {"type": kind_of(entry)}
    empty_ok = _LEFT_OUT_EMPTY.get(type(entry), frozenset())
    for name, value in zip(entry._fields, entry, strict=True):
        if name in empty_ok and not value:
            continue
        body[name] = _plain(value)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data if signer is None else sign(data, signer)


def _plain(value: Any) -> Any:
    if isinstance(value, Proposal):
        return {**asdict(value.adoption), "id": value.id}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return left_out(type(value), asdict(value))
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def register_entry(
    genome: str,
    manifest: str,
    tree: Mapping[str, str],
    fitness: float | None,
    node: str,
    at: float,
    *,
    signer: Signer | None = None,
) -> bytes:
    """A genome's registration; the same tree registered twice changes nothing."""
    return encode(Register(genome, manifest, dict(tree), fitness, node, at), signer)


def cycle_entry(
    genome: str,
    node: str,
    cycle: int,
    seed: int,
    evaluated: Sequence[CandidateRecord],
    held: Sequence[Held],
    adoption: Adoption | None,
    at: float,
    *,
    signer: Signer | None = None,
    llm: Mapping[str, Any] | None = None,
) -> bytes:
    """One cycle's results; a winner becomes a proposal carrying the proposer's own yes vote."""
    proposal = None
    if adoption is not None:
        proposal = Proposal(proposal_id(genome, node, cycle, adoption.version), adoption)
    entry = Cycle(
        genome, node, cycle, seed, list(evaluated), list(held), proposal, at, dict(llm or {})
    )
    return encode(entry, signer)


def vote_entry(
    genome: str,
    proposal: str,
    version: str,
    node: str,
    yes: bool,
    reason: str,
    at: float,
    *,
    signer: Signer | None = None,
) -> bytes:
    """A vote on ``version`` of a proposal (a vote for a version it no longer has is stale)."""
    return encode(Vote(genome, proposal, version, node, yes, reason, at), signer)


def rollback_entry(
    genome: str, to: str, reason: str, node: str, at: float, *, signer: Signer | None = None
) -> bytes:
    """The whole swarm goes back to ``to`` together (a rollback is itself an event)."""
    return encode(Rollback(genome, to, reason, node, at), signer)


def members_entry(
    members: Sequence[str],
    node: str,
    at: float,
    *,
    keys: Mapping[str, str] | None = None,
    signer: Signer | None = None,
) -> bytes:
    """The member list, sorted and without repeats (so every proposer writes it alike),
    with the public signing keys (base64) of members the swarm is to learn."""
    chosen = dict(sorted((keys or {}).items()))
    return encode(Members(sorted(set(members)), node, at, chosen), signer)


# ---- decoding --------------------------------------------------------------------------


def read_map(data: bytes) -> dict[str, Any]:
    """The entry's msgpack map, checked only for a string ``type`` (the first stage of decode).

    The applier needs the type and genome of an entry even when its fields are bad, to
    report the skip; and a re-delivered entry needs nothing more than this.
    """
    if len(data) > MAX_ENTRY:
        raise ConsensusError(
            f"ledger entry of {len(data)} bytes is over the {MAX_ENTRY} byte limit"
        )
    try:
        entry = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ConsensusError(f"ledger entry does not decode as msgpack: {exc}") from exc
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConsensusError("ledger entry is not a map with a 'type'")
    return entry


def parse(raw: Mapping[str, Any]) -> Entry:
    """A checked map as its typed entry; ConsensusError names the type and the bad field."""
    kind = raw.get("type")
    cls = TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConsensusError(f"unknown entry type {kind!r}")
    try:
        values = _SCHEMAS[cls].read(raw, _OPTIONAL.get(cls, {}), strict=False)
    except Bad as bad:
        raise ConsensusError(f"{kind} entry: field '{bad.path}' {bad.problem}") from None
    entry = cls(**values)
    problem = _BEYOND[cls](entry) if cls in _BEYOND else None
    if problem is not None:
        raise ConsensusError(f"{kind} entry: {problem}")
    return entry


#: Entry types whose in-memory part of the ledger state (the member list, the recent
#: offers) is rebuilt from re-deliveries too, so they are decoded even then.
REBUILT = frozenset({"members", "offer", "approvers"})


class Incoming(NamedTuple):
    """A committed entry as the applier first sees it (see :func:`incoming`)."""

    #: the checked entry, or None when it is still to be parsed (or is a re-delivery)
    entry: Entry | None
    #: the decoded map where the reference path read it (else empty)
    raw: Mapping[str, Any]
    kind: str
    genome: str | None


def incoming(data: bytes, *, again: bool) -> Incoming:
    """What the applier needs of an entry's bytes, read as cheaply as it allows.

    A well-formed entry takes the fast path (msgspec, :mod:`consensus._msgspec`); a
    re-delivered one (``again``) needs only its type and genome, unless it is one of
    :data:`REBUILT` (the member list, an offer), which are rebuilt from re-deliveries too;
    anything else takes the reference path, which can name what is wrong.  Bytes that are
    not a map with a ``type`` raise :class:`ConsensusError`; a ``members`` or ``offer``
    entry that fails its checks comes back with no entry (it is reported once it is known
    not to be a re-delivery).
    """
    head = peek(data)
    if head is not None and (head[0] in REBUILT or not again):
        entry = fast_decode(data)
        if entry is not None:
            return Incoming(entry, {}, kind_of(entry), getattr(entry, "genome", None))
    if head is not None and again and head[0] not in REBUILT:
        return Incoming(None, {}, *head)
    raw = read_map(data)
    genome = raw.get("genome") if isinstance(raw.get("genome"), str) else None
    members = None
    if raw["type"] in REBUILT:
        try:
            members = parse(raw)
        except ConsensusError:
            members = None
    return Incoming(members, raw, raw["type"], genome)


def authored_by(sender: str, data: bytes) -> bool:
    """Whether ``sender``, the authenticated member forwarding ``data`` to the leader, may
    propose it: entries name their author in ``node``, and a member writes only its own.

    A rollback or a member list names the admin (its author, through a node's admin
    channel, which answers only the admin key), and any member may forward it: the
    admin's signature decides whether it counts.  This is the leader's door only; the
    state machine checks every signature on every node (:func:`signature_problem`), so
    a lying leader gains nothing by skipping it.  A malformed entry passes: it is
    skipped the same way on every node once committed, as before.
    """
    try:
        entry = decode(data)
    except ConsensusError:
        return True
    if isinstance(entry, Rollback | Members | ApproverList):  # the admin's (authors.ADMIN_ONLY)
        return entry.node in (sender, ADMIN)
    if isinstance(entry, Approval):  # a person's: its signature decides (consensus.approvals)
        return True
    return entry.node == sender


def decode(data: bytes) -> Entry:
    """Bytes as a typed entry, or a :class:`ConsensusError` (never any other exception)."""
    entry = fast_decode(data)
    return entry if entry is not None else parse(read_map(data))


# ---- the checks, built once from the declared types (consensus/_schema.py) ------------


def _proposal_check(value: Any) -> Proposal:
    """A proposal travels flat: the adoption's fields and ``id`` in one map."""
    if type(value) is not dict:
        raise Bad(f"should be a map, not {name_of(value)}")
    pid = value.get("id")
    if type(pid) is not str:
        raise Bad("is missing" if pid is None else f"should be a string, not {name_of(pid)}", ".id")
    fields = {k: v for k, v in value.items() if k != "id"}
    return Proposal(pid, Adoption(**_ADOPTION.read(fields, _ADOPTION_DEFAULTS, strict=True)))


_ADOPTION = schema_of(Adoption, {})
_ADOPTION_DEFAULTS = defaults_of(Adoption)
_SCHEMAS: dict[type, Schema] = {
    cls: schema_of(cls, {Proposal: _proposal_check}) for cls in TYPES.values()
}

_FAST = FastDecoder(
    TYPES,
    _OPTIONAL,
    {Proposal: (Adoption, "id", lambda pid, adoption: Proposal(pid, adoption))},
)


def peek(data: bytes) -> tuple[str, str | None] | None:
    """An entry's ``type`` and ``genome`` (if a string) without decoding the rest, or None
    where :func:`read_map` must look (the applier's re-deliveries need no more than this)."""
    if len(data) > MAX_ENTRY:
        return None
    return _FAST.peek(data)


def fast_decode(data: bytes) -> Entry | None:
    """:func:`decode`'s answer for a well-formed entry, about ten times faster (msgspec);
    None for anything else, which :func:`decode` then checks and names."""
    if len(data) > MAX_ENTRY:
        return None
    entry: Entry | None = _FAST.decode(data)
    if entry is not None and type(entry) in _BEYOND and _BEYOND[type(entry)](entry) is not None:
        return None  # the reference path names the problem
    return entry
