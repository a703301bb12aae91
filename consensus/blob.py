"""The ledger's state that is not in the store, as a snapshot's state blob carries it.

A compacted log is replaced by a snapshot: the store holds the events, and this small
msgpack map holds the rest: the member list, the signing keys the swarm recorded (so a
node standing on the snapshot verifies later entries with the same keys as every other
node), and the *committed chain heads* — each lineage's last position and chain at the
ledger index ``heads_index``.  A node whose store is behind the snapshot fetches a
peer's events and accepts them only through those heads (``consensus.transfer``), so
an authenticated peer cannot hand it history the ledger never made.  A blob written
before the keys and heads existed holds only ``members``.  Once an ``approvers`` entry
committed, the blob carries the approvers (name -> base64 key) and the quorum it set, so
a node standing on the snapshot judges approvals as the others do; a blob without them
leaves the node with cluster.yml's, as before that entry existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from consensus.approvals import Approvers
from consensus.entries import Offer
from consensus.offers import Offers
from consensus.signing import Keyring
from events.domain import lineage_id
from events.store import GenomeStore
from evolution.errors import ConsensusError
from runtime.keys import decode_sign_key

__all__ = [
    "Heads",
    "approvers_of",
    "encode_blob",
    "heads_of",
    "members_and_keys",
    "offers_of",
    "store_heads",
]

#: lineage id (32 hex) -> (its last position, that event's chain)
Heads = dict[str, tuple[int, str]]


def store_heads(store: GenomeStore) -> Heads:
    """Every lineage's last position and chain, read from the store."""
    positions = store.positions()
    heads: Heads = {}
    for name in store.genomes():
        ident = lineage_id(name).hex
        if ident in positions:
            heads[ident] = (positions[ident], store.chain(name))
    return heads


def encode_blob(
    members: Sequence[str],
    keys: Mapping[str, str],
    heads_index: int,
    heads: Heads,
    offers: Sequence[Sequence[Any]] = (),
    approval: Approvers | None = None,
) -> bytes:
    """The blob: members, keys (name -> base64), the heads at ``heads_index``, and the
    recent committed offers (``[index, entry bytes]`` pairs, :mod:`consensus.offers`)."""
    blob: dict[str, Any] = {
        "members": list(members),
        "keys": dict(sorted(keys.items())),
        "heads_index": heads_index,
        "heads": {ident: list(head) for ident, head in sorted(heads.items())},
        "offers": [list(pair) for pair in offers],
    }
    if approval is not None:  # set by an ``approvers`` entry (else cluster.yml's stand)
        texts = Keyring(approval.keys).as_text()
        blob["approvers"] = {"keys": dict(sorted(texts.items())), "quorum": approval.quorum}
    return msgpack.packb(blob, use_bin_type=True)


def heads_of(state: bytes) -> tuple[int, Heads] | None:
    """The committed chain heads of a blob: (the ledger index they are at, the heads);
    None for a blob written without them, or one that is malformed."""
    try:
        blob = msgpack.unpackb(state, raw=False)
        index, heads = blob["heads_index"], blob["heads"]
        out = {str(k): (int(v[0]), str(v[1])) for k, v in heads.items()}
    except Exception:
        return None
    return (index, out) if type(index) is int else None


def members_and_keys(index: int, state: bytes) -> tuple[list[str], dict[str, bytes]]:
    """The member list and the signing keys (raw) of the blob of a snapshot at ``index``."""
    try:
        blob = msgpack.unpackb(state, raw=False)
        members = blob["members"]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise TypeError("members is not a list of node ids")
        where = f"snapshot state at ledger index {index}"
        keys = {str(n): decode_sign_key(t, where) for n, t in (blob.get("keys") or {}).items()}
    except Exception as exc:
        raise ConsensusError(f"snapshot state at ledger index {index} is malformed: {exc}") from exc
    return members, keys


def offers_of(index: int, state: bytes) -> list[tuple[int, Offer]]:
    """The recent committed offers of a snapshot's blob (none in a blob older than offers)."""
    try:
        return Offers.read(msgpack.unpackb(state, raw=False).get("offers"))
    except Exception as exc:
        raise ConsensusError(f"snapshot state at ledger index {index} is malformed: {exc}") from exc


def approvers_of(index: int, state: bytes) -> Approvers | None:
    """The approvers and quorum an ``approvers`` entry set, as the blob carries them;
    None for a blob without them (cluster.yml's stand)."""
    try:
        found = msgpack.unpackb(state, raw=False).get("approvers")
        if found is None:
            return None
        where = f"snapshot state at ledger index {index}"
        keys = {str(n): decode_sign_key(t, where) for n, t in sorted(found["keys"].items())}
        quorum = found["quorum"]
        if type(quorum) is not int or not keys or not 1 <= quorum <= len(keys):
            raise ValueError(f"quorum {quorum!r} does not fit {len(keys)} approvers")
    except Exception as exc:
        raise ConsensusError(f"snapshot state at ledger index {index} is malformed: {exc}") from exc
    return Approvers(keys, quorum)
