"""Who may write which ledger entry, and the check every node runs on each one.

Every entry names its author in ``node`` and carries the author's signature
(:mod:`consensus.signing`).  A member writes its own register, cycle and vote entries
(and any entry type added later that names a member); the entries that change the
head or who decides, ``rollback`` and ``members``, are the admin's alone
(:data:`ADMIN_ONLY`), so one member's key cannot roll the swarm back or change its
members.  :func:`signature_problem` is a pure function of the bytes, the keys and the
member list, so every node refuses the same entries.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.entries import ADMIN, Entry, Members, Rollback, decode, kind_of
from consensus.signing import Keyring, Signer, sign, split
from evolution.errors import ConsensusError, TarsError
from runtime.keys import decode_sign_key

__all__ = ["ADMIN", "ADMIN_ONLY", "author_of", "signature_problem", "signed_by"]

#: Entry types only the admin may author: they change the head or who decides.
ADMIN_ONLY: tuple[type, ...] = (Rollback, Members)


def author_of(entry: Entry) -> str | None:
    """Who wrote the entry: every entry type names its author in ``node`` (None for one
    that names nobody, which then counts for nobody)."""
    node = getattr(entry, "node", None)
    return node if isinstance(node, str) else None


def signature_problem(
    entry: Entry, data: bytes, keys: Keyring, members: Sequence[str]
) -> str | None:
    """Why ``data`` (the bytes ``entry`` was decoded from) must not count, or None.

    The author must be a member (the admin for :data:`ADMIN_ONLY` types, which no member
    may write), ``sig`` must be the author's signature over the rest of the bytes, and
    the keys a ``members`` entry records must be keys.
    """
    author = author_of(entry)
    if author is None:
        return f"a {kind_of(entry)} entry names no author"
    if isinstance(entry, ADMIN_ONLY):
        if author != ADMIN:
            return f"a {kind_of(entry)} entry is the admin's, not {author}'s"
    elif author not in members:
        return f"{author} is not a member"
    problem = keys.verify(author, data)
    if problem is None and isinstance(entry, Members):
        try:
            for name, text in entry.keys.items():
                decode_sign_key(text, f"the signing key of {name}")
        except TarsError as exc:
            return str(exc)
    return problem


def signed_by(data: bytes, signer: Signer | None) -> bytes:
    """``data`` signed by ``signer`` when it is unsigned and ``signer`` wrote it, else as is.

    The applier calls it on whatever the node proposes, so the node's actors build
    entries without a signer and still sign them with the node's key.
    """
    if signer is None or split(data) is not None:
        return data
    try:
        mine = author_of(decode(data)) == signer.name
    except ConsensusError:
        return data  # malformed: skipped on every node, signed or not
    return sign(data, signer) if mine else data
