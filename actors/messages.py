"""Every message the node's actors exchange, as typed NamedTuples.

One module, like pykka's own ``messages.py``: a reader sees the whole protocol at once,
and a message is data (no behaviour), so it can later cross the wire as msgpack.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from evolution.generate import Candidate
from evolution.manifest import Manifest
from evolution.planner import Outcomes, Plan
from evolution.policy import Policy
from evolution.rollout_plan import RolloutPlan
from evolution.tree import Tree
from runtime.incubation import IncubationReport


class Analyze(NamedTuple):
    """Analyzer: profile the head and rank opportunities."""

    version: str
    tree: Tree
    manifest: Manifest


class PlanCycle(NamedTuple):
    """Planner: choose mutators for the best opportunities."""

    version: str
    tree: Tree
    manifest: Manifest
    opportunities: Sequence[Any]
    outcomes: Outcomes
    seed: int
    cycle: int
    limit: int
    #: one of ``evolution.planner.PLANNERS``: "learning" and "plain" rank with the bandit
    #: (weight priors only when learning), "random" draws uniformly
    mode: str = "learning"


class Generate(NamedTuple):
    """Generator: turn plans into candidate patches."""

    version: str
    tree: Tree
    plans: Sequence[Plan]


class Generated(NamedTuple):
    candidates: list[Candidate]
    failures: list[str]
    #: what asking the models cost this cycle and where it failed, as the cycle's event
    #: keeps it (``evolution.llm_usage.to_log``); None when no model is configured
    llm: dict[str, Any] | None = None


class Incubate(NamedTuple):
    """Incubator: prove one candidate in the sandbox (a local message only: it carries code).

    ``offer`` names the committed offer that holds the candidate (``consensus.entries.Offer``),
    when there is one: only then may a peer's incubator be asked to prove it, by reference
    (:class:`IncubateOffered`).
    """

    manifest: Manifest
    parent_tree: Tree
    candidate: Candidate
    rounds: int
    offer: str | None = None


class IncubateOffered(NamedTuple):
    """A peer's incubator: prove ``candidate`` of the committed offer ``offer`` of ``genome``.

    A reference, not code: the serving node builds the :class:`Incubate` itself from its
    own ledger state (the offer's patch), its own store's tree of the offer's parent and
    its own manifest of the genome, or refuses (``actors/spread.py``).
    """

    genome: str
    offer: str
    candidate: str
    rounds: int


class Judge(NamedTuple):
    """Governor: decide on the proven candidates."""

    manifest: Manifest
    tree: Tree
    candidates: Sequence[Candidate]
    reports: Sequence[IncubationReport]
    policy: Policy
    seed: int


class Crash(NamedTuple):
    """Fault injection: the receiving actor raises, as a bug would (tests use it)."""

    reason: str = "crash requested"


class Validate(NamedTuple):
    """Validator: re-run the genome's tests on a peer's proposal before this node votes."""

    genome: str
    proposal: str
    version: str
    manifest: Manifest
    parent_tree: Tree
    patch: str


class CheckHeldOut(NamedTuple):
    """Validator: run the held-out tests on ``parent_tree`` + ``patch`` (a single node's own
    check before it adopts; in a swarm the voters run them, :class:`Validate`)."""

    manifest: Manifest
    parent_tree: Tree
    patch: str


class HeldOutResult(NamedTuple):
    """Whether the held-out tests passed (None: the manifest declares none), and why not."""

    passed: bool | None
    detail: str


class VoteOn(NamedTuple):
    """Voter: a peer's proposal waits for this node's vote (validate it, then vote)."""

    genome: str
    proposal: str
    version: str


class Verdict(NamedTuple):
    """A node's vote on one proposal's version, with the reason recorded in the ledger."""

    genome: str
    proposal: str
    version: str
    yes: bool
    reason: str


class HeadMoved(NamedTuple):
    """Deployer: the ledger moved ``genome``'s head (``why``: adopted, rollback or restart)."""

    genome: str
    why: str


class RolloutTick(NamedTuple):
    """Deployer: look at the clock; judge the windows that ended; retry what was not proposed."""


class RolloutOrder(NamedTuple):
    """Deployer: a person's ``status``, ``promote``, ``abort``, ``pause`` or ``resume``."""

    genome: str
    order: str


class DeployVersion(NamedTuple):
    """Deployer: roll ``version`` (a full id the log holds) out by hand (`tars evolve deploy`),
    with the deploy's own plan (None: the node's settings; docs/rollouts.md)."""

    genome: str
    version: str
    plan: RolloutPlan | None = None


#: The messages (and the types inside them) that may cross the wire to another node's
#: actors, as msgpack (runtime/remote.py builds only these on the receiving side): a
#: reference to a committed offer's candidate, and the bounded report that answers it.
#: :class:`Incubate` carries a manifest and a tree, so it is not one of them.
REMOTE_TYPES: tuple[type, ...] = (IncubateOffered, IncubationReport)
