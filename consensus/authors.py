"""Who may write which ledger entry, and the check every node runs on each one.

Every entry names its author in ``node`` and carries the author's signature
(:mod:`consensus.signing`).  A member writes its own register, cycle and vote entries
(and any entry type added later that names a member, such as ``rollout``: its own
rollout's steps); the entries that change the head or who decides, ``rollback``,
``members`` and ``approvers`` (who approves a held candidate), are the admin's
(:data:`ADMIN_ONLY`), so one member's key cannot change the swarm's members or its
approvers, or move its head at will.  :func:`signature_problem` is a pure function
of the bytes, the keys and the member list, so every node refuses the same entries.

One exception, for progressive delivery (issue 11; docs/rollouts.md, "Rollback by a
member"): a member may sign a rollback in its own name when its own committed rollout
just marked the head Failed and ``to`` is the head's parent
(:func:`member_rollback_problem`, checked by the state machine against the lineage).  A
lying member can at most undo one adoption, once, in its own name, signed and
attributable; it can never move the head anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from consensus.approvals import Approval, ApproverList
from consensus.entries import ADMIN, Entry, Members, Rollback, decode, kind_of
from consensus.signing import Keyring, Signer, sign, split
from evolution.errors import ConsensusError, TarsError
from runtime.keys import decode_sign_key

__all__ = [
    "ADMIN",
    "ADMIN_ONLY",
    "Refused",
    "author_of",
    "member_rollback_problem",
    "signature_problem",
    "signed_by",
]

#: Entry types only the admin may author: they change the head or who decides.
ADMIN_ONLY: tuple[type, ...] = (Rollback, Members, ApproverList)


def author_of(entry: Entry) -> str | None:
    """Who wrote the entry: every entry type names its author in ``node`` (None for one
    that names nobody, which then counts for nobody)."""
    node = entry.approver if isinstance(entry, Approval) else getattr(entry, "node", None)
    return node if isinstance(node, str) else None


def signature_problem(
    entry: Entry,
    data: bytes,
    keys: Keyring,
    members: Sequence[str],
    approvers: Keyring | None = None,
) -> str | None:
    """Why ``data`` (the bytes ``entry`` was decoded from) must not count, or None.

    The author must be a member (the admin for :data:`ADMIN_ONLY` types, which no member
    may write), ``sig`` must be the author's signature over the rest of the bytes, and
    the keys a ``members`` entry records must be keys.  An ``approval`` is a person's:
    its author must be one of ``approvers`` (cluster.yml's ``approval``), whose key alone
    verifies it; a member's key never counts as an approval.
    """
    author = author_of(entry)
    if author is None:
        return f"a {kind_of(entry)} entry names no author"
    if isinstance(entry, Approval):
        if approvers is None or author not in approvers:
            return f"{author} is not an approver (cluster.yml approval.approvers, with a key)"
        return approvers.verify(author, data)
    if isinstance(entry, ADMIN_ONLY):
        mine = isinstance(entry, Rollback) and author in members  # member_rollback_problem
        if author != ADMIN and not mine:
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
    if problem is None and isinstance(entry, ApproverList):
        return _approvers_problem(entry, members)
    return problem


def _approvers_problem(entry: ApproverList, members: Sequence[str]) -> str | None:
    """An ``approvers`` entry names people with keys: never a node (a stolen machine must
    not forge a person's decision), and every key must be a key."""
    nodes = sorted(set(entry.keys) & set(members))
    if nodes:
        return f"a node can never be an approver ({', '.join(nodes)})"
    try:
        for name, text in entry.keys.items():
            decode_sign_key(text, f"the signing key of approver {name}")
    except TarsError as exc:
        return str(exc)
    return None


class Refused(ConsensusError):
    """An entry whose author may not write it in the state the ledger is in (refused and
    counted like a bad signature, the same way on every node)."""


def member_rollback_problem(
    entry: Rollback, head: str, head_parent: str | None, last_step: Mapping[str, Any] | None
) -> str | None:
    """Why a member's own rollback must not count, or None.

    It counts only when the author's last committed rollout step of this genome marked the
    head Failed (``last_step``: the lineage's record of it) and ``to`` is the parent the
    head was adopted on (``head_parent``), so it undoes exactly that adoption.
    """
    who = entry.node
    if last_step is None or last_step.get("version") != head:
        return f"{who} has no committed rollout of the head {head[:12]} to roll back"
    if last_step.get("result") != "Failed":
        return f"{who}'s last rollout step of {head[:12]} was not a Failed analysis"
    if head_parent is None or entry.to != head_parent:
        return f"{who} may roll {head[:12]} back only to its parent, not to {entry.to[:12]}"
    return None


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
