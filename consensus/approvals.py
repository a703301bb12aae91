"""Approval the swarm honours: a person's signed decision on a held candidate (issue 12).

The governor holds a risky candidate for a person (evolution/policy.py); a ``cycle``
entry records it as held on every node.  A person decides with an ``approval`` ledger
entry, signed with that person's Ed25519 key (:mod:`consensus.signing`), naming the
genome, the candidate, ``approve`` or ``reject``, the approver, a reason and the time.
cluster.yml lists the approvers and the quorum (:class:`Approvers`; runtime/approval_config.py).

The state machine applies approvals the same way on every node (:func:`apply_approval`):
a held candidate is adopted once ``quorum`` distinct approvers approved it, through the
domain events of a single node's ``tars approve`` (``Approved``, then ``VersionAdopted``
with ``approved_by`` naming every approver); one rejection is final.  An approval is
refused, not applied, with its reason logged, when :func:`refusal` names a problem: the
candidate is unknown, already decided (adopted or rejected), its approver already
decided it, or (to approve) it was held against a head the genome has since left.  The
author and signature checks come first (:func:`consensus.authors.signature_problem`):
only a listed approver's valid signature counts.  docs/approval.md says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from events.domain import Lineage
from events.lineage_state import approvals_of, rejected_of
from events.records import Adoption
from evolution.errors import ConsensusError
from evolution.patch import apply_patch
from evolution.tree import short, version_id

if TYPE_CHECKING:
    from consensus.signing import Signer

__all__ = [
    "DECISIONS",
    "Approval",
    "ApprovalRefused",
    "ApproverList",
    "Approvers",
    "apply_approval",
    "approver_list_problem",
    "approvers_entry",
    "approvers_from",
    "approval_entry",
    "held_list",
    "refusal",
]

#: What an approver may decide.
DECISIONS = ("approve", "reject")


class Approval(NamedTuple):
    """A person's decision on one held candidate; ``approver`` is its author and signer."""

    genome: str
    candidate: str
    decision: str
    approver: str
    reason: str
    at: float


class Approvers(NamedTuple):
    """Who may approve (name -> public signing key, raw) and how many distinct must."""

    keys: Mapping[str, bytes]
    quorum: int = 1


class ApproverList(NamedTuple):
    """The ``approvers`` entry: who approves (name -> public signing key, base64) and the
    quorum from this entry on.  The admin's alone (:mod:`consensus.authors`): once
    committed, every node judges approvals with it, whatever its own cluster.yml says."""

    keys: dict[str, str]
    quorum: int
    node: str
    at: float


def approvers_entry(
    keys: Mapping[str, str], quorum: int, at: float, *, signer: Signer | None = None
) -> bytes:
    """The admin's ``approvers`` entry (names sorted, so every proposer writes it alike)."""
    from consensus.entries import ADMIN, encode

    return encode(ApproverList(dict(sorted(keys.items())), quorum, ADMIN, at), signer)


def approver_list_problem(entry: ApproverList) -> str | None:
    """What is wrong with an ``approvers`` entry beyond its fields' types, or None."""
    if not entry.keys:
        return "it names no approver"
    if not 1 <= entry.quorum <= len(entry.keys):
        return f"quorum {entry.quorum} is not between 1 and the {len(entry.keys)} approvers"
    return None


def approvers_from(entry: ApproverList, where: str) -> Approvers:
    """The entry's approvers with raw keys (a key that is no key raises ConfigError)."""
    from runtime.keys import decode_sign_key

    keys = {name: decode_sign_key(text, where) for name, text in sorted(entry.keys.items())}
    return Approvers(keys, entry.quorum)


class ApprovalRefused(ConsensusError):
    """An approval the ledger's state does not allow: skipped alike on every node, logged."""


def approval_entry(
    genome: str,
    candidate: str,
    decision: str,
    approver: str,
    reason: str,
    at: float,
    *,
    signer: Signer | None = None,
) -> bytes:
    """An approval's bytes, signed by ``signer`` (the approver's key, on the person's side)."""
    from consensus.entries import encode  # entries imports Approval from this module

    if decision not in DECISIONS:
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    return encode(Approval(genome, candidate, decision, approver, reason, at), signer)


def refusal(lineage: Lineage, entry: Approval) -> str | None:
    """Why ``entry`` must not count in the lineage's state, or None (a pure function of both)."""
    name, candidate = lineage.name, entry.candidate
    if entry.decision not in DECISIONS:
        return f"{entry.decision!r} is no decision (approve or reject)"
    tally = approvals_of(lineage).get(candidate, {})
    rejecters = sorted(who for who, decision in tally.items() if decision == "reject")
    if rejecters:
        return f"candidate {candidate} of {name} was rejected by {', '.join(rejecters)}: a rejection is final"
    if candidate not in lineage.pending:
        if tally:
            return f"candidate {candidate} of {name} is already decided (adopted)"
        return f"no held candidate {candidate} of {name}"
    if entry.approver in tally:
        return f"{entry.approver} already decided on candidate {candidate} of {name}"
    parent = lineage.pending[candidate]["parent"]
    if entry.decision == "approve" and parent != lineage.head:
        return (
            f"candidate {candidate} of {name} was held against {short(parent)}, but the head is "
            f"{short(lineage.head)} now: it must be proven again on the new head"
        )
    return None


def apply_approval(lineage: Lineage, entry: Approval, quorum: int, at: datetime) -> bool:
    """Record the decision; adopt the candidate when it completes the quorum (True then).

    Raises :class:`ApprovalRefused` (before any event) when :func:`refusal` names a problem.
    """
    problem = refusal(lineage, entry)
    if problem is not None:
        raise ApprovalRefused(f"approval by {entry.approver} refused: {problem}")
    candidate = entry.candidate
    lineage.give_approval(candidate, entry.approver, entry.decision, entry.reason, timestamp=at)
    tally = approvals_of(lineage)[candidate]
    approvers = sorted(who for who, decision in tally.items() if decision == "approve")
    if entry.decision != "approve" or len(approvers) < quorum:
        return False
    held = lineage.approve(candidate, entry.approver, timestamp=at)
    evidence = dict(held.evidence)
    lineage.adopt(
        Adoption(
            version=version_id(apply_patch(lineage.head_tree, held.patch)),
            parent=lineage.head,
            patch=held.patch,
            mutator=held.mutator,
            kind=held.kind,
            fitness_before=None,
            fitness_after=None,
            ratio=evidence.get("ratio"),
            low=evidence.get("low"),
            high=evidence.get("high"),
            evidence=evidence | {"approved_by": approvers},
        ),
        entry.approver,
        timestamp=at,
    )
    return True


def held_list(lineage: Lineage) -> list[dict[str, Any]]:
    """Every held candidate of the lineage, waiting or rejected, as the ``held`` admin op
    answers (the dashboard, MCP and `tars approve --list` show these fields)."""
    tally = approvals_of(lineage)
    out: list[dict[str, Any]] = []
    waiting = [(c, fields, False) for c, fields in lineage.pending.items()]
    rejected = [(c, fields, True) for c, fields in rejected_of(lineage).items()]
    for candidate, fields, was_rejected in waiting + rejected:
        evidence = dict(fields.get("evidence") or {})
        decided = tally.get(candidate, {})
        out.append(
            {
                "genome": lineage.name,
                "candidate": candidate,
                "parent": fields["parent"],
                "stale": fields["parent"] != lineage.head,
                "mutator": fields.get("mutator", ""),
                "rules": list(evidence.get("held_by") or []),
                "reasons": list(fields.get("reasons") or []),
                "patch": fields.get("patch", ""),
                "evidence": evidence,
                "approvals": sorted(w for w, d in decided.items() if d == "approve"),
                "rejected_by": sorted(w for w, d in decided.items() if d == "reject"),
                "rejected": was_rejected,
            }
        )
    return out
