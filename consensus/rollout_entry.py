"""The ``rollout`` ledger entry: one step of a node's own rollout, and the plan it runs.

Out of ``consensus/entries.py`` (like ``Approval`` in ``approvals.py``), which imports it
back into the one ledger schema; its bytes are unchanged (``tests/test_ledger_entries.py``).

``plan`` (issue 13) is a deploy's own rollout plan (:mod:`evolution.rollout_plan`): the
``started`` step of a rollout that a deploy asked to run with its own steps carries it, so
the log says which steps every node ran, and a node that restarts mid-rollout starts that
rollout again with the same plan (docs/rollouts.md, "A deploy's own plan").  It is left out
of the bytes when empty (an entry without one is byte for byte what it was), and
:func:`rollout_problem` checks it when the entry is decoded: a peer's entry with a plan
that is not well formed is refused there, alike on every node, and never reaches a
Deployer or the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from evolution.errors import RolloutError
from evolution.rollout_plan import read_plan

if TYPE_CHECKING:
    from consensus.signing import Signer


class Rollout(NamedTuple):
    """One step of ``node``'s own rollout of ``version`` over ``blue`` (evolution/rollout.py):
    ``phase`` is started, weight, analysis, paused, resumed, promoted, aborted or abandoned;
    ``result`` an analysis's Successful, Failed or Inconclusive ("" for none); ``plan`` the
    deploy's own plan, on a ``started`` step only (empty: the node's settings)."""

    genome: str
    node: str
    version: str
    blue: str
    phase: str
    step: int
    weight: float
    result: str
    reason: str
    at: float
    plan: dict[str, Any] = {}  # noqa: RUF012  (never mutated; left out of the bytes when empty)


def rollout_entry(
    genome: str,
    node: str,
    version: str,
    blue: str,
    phase: str,
    step: int,
    weight: float,
    result: str,
    reason: str,
    at: float,
    *,
    plan: Mapping[str, Any] | None = None,
    signer: Signer | None = None,
) -> bytes:
    """A step of this node's rollout; a node writes only its own (``node`` is the author)."""
    from consensus.entries import encode  # entries imports Rollout from this module

    entry = Rollout(
        genome,
        node,
        version,
        blue,
        phase,
        step,
        float(weight),
        result,
        reason,
        at,
        dict(plan or {}),
    )
    return encode(entry, signer)


def rollout_problem(entry: Rollout) -> str | None:
    """What is wrong with a decoded entry beyond its field types (its plan), or None."""
    if not entry.plan:
        return None
    if entry.phase != "started":
        return f"field 'plan' is only on a started step, not on {entry.phase[:40]!r}"
    try:
        read_plan(entry.plan)
    except RolloutError as exc:
        return f"field 'plan' is not a rollout plan: {exc.message}"
    return None
