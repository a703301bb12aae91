"""Parts of a lineage's state that snapshots taken before they existed lack.

An aggregate snapshot stores the aggregate's ``__dict__``; a field added to the lineage
later (waiting proposals, rollouts, the head's parent, approvals) is missing from a
snapshot taken before it, so the lineage reads each through one of these accessors,
which give the empty value for an old snapshot.  Kept out of :mod:`events.domain`, whose
size is its events (docs/architecture.md, "Sizes").
"""

from __future__ import annotations

from typing import Any

__all__ = ["approvals_of", "head_parent_of", "proposals_of", "rejected_of", "rollouts_of"]


def _field(aggregate: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] | None = aggregate.__dict__.get(name)
    if found is None:
        found = {}
        aggregate.__dict__[name] = found
    return found


def proposals_of(aggregate: Any) -> dict[str, dict[str, Any]]:
    """The aggregate's waiting proposals; snapshots taken before proposals existed lack the field."""
    return _field(aggregate, "proposals")


def rollouts_of(aggregate: Any) -> dict[str, dict[str, Any]]:
    """Each node's last rollout step: node -> version, blue, phase, step, result."""
    return _field(aggregate, "rollouts")


def approvals_of(aggregate: Any) -> dict[str, dict[str, str]]:
    """Each held candidate's signed decisions so far: candidate -> approver -> decision
    ("approve" | "reject"); kept after the candidate is decided, so a late or repeated
    approval of it is refused (docs/approval.md)."""
    return _field(aggregate, "approvals")


def rejected_of(aggregate: Any) -> dict[str, dict[str, Any]]:
    """Held candidates an approver rejected: candidate -> its held fields (a rejection is
    final; `tars approve --list` still shows it, marked rejected)."""
    return _field(aggregate, "rejected")


def head_parent_of(aggregate: Any) -> str | None:
    """The parent of the head when an adoption made it the head (None after a rollback, a
    registration, or in a snapshot taken before the field existed)."""
    parent: str | None = aggregate.__dict__.get("head_parent")
    return parent
