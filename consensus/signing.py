"""Signed ledger entries: Ed25519 signatures of their authors, checked on every node.

One member key controlled the swarm while entries were unsigned: whoever could append to
the log (a member through the leader's door, or a lying leader directly) could write a
vote in any member's name.  Now every entry carries ``sig``, its author's Ed25519
signature (the ``cryptography`` package) over the entry's bytes *without* ``sig``, and
the state machine counts an entry only when that signature verifies with the public key
the swarm recorded for the author (:class:`Keyring`).

The signature is an envelope on the bytes, not a field of the typed entries, so it
covers every field of every entry type alike (a field added later, or a new entry type,
is signed with no change here).  A signed entry is the unsigned entry's msgpack map with
one more key, ``sig`` (64 bytes, ``bin``), written last; :func:`split` takes it off and
gives back exactly the bytes that were signed (the map's header one key shorter, the
last 70 bytes gone).  Nothing here reads a clock or a random source while verifying, so
every node gives the same answer for the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from consensus.approvals import Approvers
from evolution.errors import ConfigError
from runtime.cluster_config import ADMIN, ClusterConfig
from runtime.keys import (
    decode_sign_key,
    encode_sign_key,
    has_sign_secret,
    new_sign_secret,
    sign_public_of,
)

__all__ = [
    "SIG_BYTES",
    "Keyring",
    "NodeKeys",
    "Signer",
    "decode_sign_key",
    "encode_sign_key",
    "new_sign_secret",
    "node_keys",
    "sign",
    "sign_public_of",
    "split",
    "with_signature",
]

#: An Ed25519 signature's length.
SIG_BYTES = 64
#: ``"sig"`` as a msgpack fixstr, then the ``bin 8`` marker for 64 bytes.
_TAIL = b"\xa3sig\xc4\x40"
_TAIL_LEN = len(_TAIL) + SIG_BYTES


class Signer:
    """One author's signing key: a node's, or the admin's (the CLI)."""

    def __init__(self, name: str, secret: bytes) -> None:
        self.name = name
        self._key = Ed25519PrivateKey.from_private_bytes(secret)
        self.public = sign_public_of(secret)

    def __repr__(self) -> str:  # never the secret
        return f"Signer({self.name!r}, public={encode_sign_key(self.public)})"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def sign(data: bytes, signer: Signer) -> bytes:
    """The entry bytes ``data`` (an unsigned msgpack map) with ``sig`` added last."""
    return with_signature(data, signer.sign(data))


def with_signature(data: bytes, signature: bytes) -> bytes:
    """``data`` (an unsigned msgpack map) with ``signature`` made elsewhere as its ``sig``
    (a person's client may sign an approval's bytes itself; docs/approval.md)."""
    count, header = _header(data)
    if count is None:
        raise ValueError("only a msgpack map can be signed")
    if len(signature) != SIG_BYTES:
        raise ValueError(f"an Ed25519 signature is {SIG_BYTES} bytes, not {len(signature)}")
    return _pack_header(count + 1) + data[header:] + _TAIL + signature


def split(data: bytes) -> tuple[bytes, bytes] | None:
    """(the bytes that were signed, the signature), or None for bytes with no ``sig`` last."""
    if len(data) < _TAIL_LEN + 1 or data[-_TAIL_LEN:-SIG_BYTES] != _TAIL:
        return None
    count, header = _header(data)
    if count is None or count < 1:
        return None
    message = _pack_header(count - 1) + data[header:-_TAIL_LEN]
    return message, data[-SIG_BYTES:]


def _header(data: bytes) -> tuple[int | None, int]:
    """A msgpack map header's key count and length (None: not a map)."""
    if not data:
        return None, 0
    first = data[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F, 1
    if first == 0xDE and len(data) >= 3:
        return struct.unpack(">H", data[1:3])[0], 3
    if first == 0xDF and len(data) >= 5:
        return struct.unpack(">I", data[1:5])[0], 5
    return None, 0


def _pack_header(count: int) -> bytes:
    if count <= 15:
        return bytes([0x80 | count])
    if count <= 0xFFFF:
        return b"\xde" + struct.pack(">H", count)
    return b"\xdf" + struct.pack(">I", count)


class Keyring:
    """The public signing keys the swarm recorded: author name -> raw Ed25519 key.

    The same on every node (cluster.yml's keys at the start, then the keys ``members``
    entries record), so a signature verifies on every node or on none.
    """

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._raw: dict[str, bytes] = {}
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.update(keys)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def update(self, keys: Mapping[str, bytes]) -> None:
        for name, raw in keys.items():
            key = Ed25519PublicKey.from_public_bytes(raw)  # ValueError: not 32 bytes
            self._raw[name], self._keys[name] = bytes(raw), key

    def as_text(self) -> dict[str, str]:
        """Every key as base64 text, sorted by name (for a snapshot of the ledger's state)."""
        raw = dict(self._raw)  # a copy: a snapshot may read while a members entry adds
        return {name: encode_sign_key(raw[name]) for name in sorted(raw)}

    def verify(self, author: str, data: bytes) -> str | None:
        """Why ``data`` is not a valid signed entry of ``author``, or None when it is."""
        parts = split(data)
        if parts is None:
            return "it is not signed"
        key = self._keys.get(author)
        if key is None:
            return f"no signing key is recorded for {author!r}"
        message, signature = parts
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return f"its signature is not {author}'s"
        return None


class NodeKeys(NamedTuple):
    """What a swarm node signs and verifies with, from cluster.yml and its keys folder."""

    #: every member's and the admin's public key: the ledger's first keyring
    keys: dict[str, bytes]
    #: signs the entries this node authors
    signer: Signer
    #: signs the admin's entries for admin requests that bring none signed (local cluster)
    admin: Signer | None
    #: a member's public signing key (base64), read afresh from cluster.yml
    sign_key_of: Callable[[str], str]
    #: who may approve a held candidate (name -> public key) and the quorum (cluster.yml)
    approval: Approvers = Approvers({}, 1)


def node_keys(cluster: ClusterConfig, node_id: str) -> NodeKeys:
    """A node's signing keys; a ConfigError (naming the node and `tars keys`) when cluster.yml
    lacks a public key, or when the node's secret is not the key cluster.yml records."""
    keys = cluster.sign_keys()
    signer = Signer(node_id, cluster.sign_secret(node_id))
    if signer.public != keys[node_id]:
        raise ConfigError(
            f"{cluster.path}: the sign_key of {node_id} is not the public key of its signing "
            f"secret in {cluster.keys_dir / (node_id + '.key_secret')}",
            hint=f"run `tars keys --config {cluster.path}` to record the key (or restore the secret)",
        )
    admin = None
    if has_sign_secret(cluster.keys_dir, ADMIN):
        admin = Signer(ADMIN, cluster.sign_secret(ADMIN))

    def sign_key_of(member: str) -> str:
        from runtime.config import load_cluster

        return encode_sign_key(load_cluster(cluster.path).sign_key(member))

    approval = Approvers(cluster.approver_keys(), cluster.quorum)
    return NodeKeys(keys, signer, admin, sign_key_of, approval)
