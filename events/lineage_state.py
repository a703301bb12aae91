"""Parts of a lineage's state that snapshots taken before they existed lack.

An aggregate snapshot stores the aggregate's ``__dict__``; a field added to the lineage
later (waiting proposals, rollouts, the head's parent, approvals) is missing from a
snapshot taken before it, so the lineage reads each through one of these accessors,
which give the empty value for an old snapshot.  Kept out of :mod:`events.domain`, whose
size is its events (docs/architecture.md, "Sizes").
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "LeftOutWhenEmpty",
    "approvals_of",
    "head_parent_of",
    "proposals_of",
    "rejected_of",
    "rollout_step",
    "rollouts_of",
]


class LeftOutWhenEmpty:
    """A base for a lineage event with fields added after events were stored: the fields
    ``left_out_when_empty`` names are stored only when set, so an event that leaves them
    empty holds exactly the older fields, and keeps its bytes and its chain link.  Read
    them with ``event.__dict__.get(name)`` (an event stored without one has no attribute)."""

    left_out_when_empty: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]
        for name in self.left_out_when_empty:
            if not self.__dict__.get(name):
                self.__dict__.pop(name, None)


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


def rollout_step(last: dict[str, Any] | None, event: Any) -> dict[str, Any]:
    """A node's last rollout step as the lineage keeps it (``RolloutStepped.apply``).

    The deploy's own plan, carried by the ``started`` step only, is kept on the later steps
    of that rollout, so a node that restarts mid-rollout starts it again with the same plan
    (docs/rollouts.md, "A deploy's own plan")."""
    step = {name: getattr(event, name) for name in ("version", "blue", "phase", "step", "result")}
    plan = event.__dict__.get("plan")
    if not plan and last and event.phase != "started" and last.get("version") == event.version:
        plan = last.get("plan")
    if plan:
        step["plan"] = plan
    return step


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
