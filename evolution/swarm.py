"""How the swarm judges a proposal: counting votes, rebasing on a moved head, deciding.

Pure functions of the ledger's state, so every node that applies the same committed
entries in the same order reaches the same answer.  Nothing here may look at a clock,
a disk or a random source: a divergence between nodes would split the swarm's history.
:func:`decide` is the whole decision of the ledger's state machine; the ledger only
hands it a plain view of the waiting proposals and applies the decisions it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal, NamedTuple

from merge3 import Merge3

from evolution.patch import apply_patch, make_patch
from evolution.tree import Tree, short, version_id

Verdict = Literal["adopt", "reject", "wait"]


def majority(members: Sequence[str]) -> int:
    """Votes needed: more than half of the members the ledger knows (at least one)."""
    return len(set(members)) // 2 + 1


def tally(votes: Mapping[str, bool], members: Sequence[str]) -> Verdict:
    """Adopt on a majority of yes votes; reject once a yes-majority can no longer be reached.

    Votes of nodes that are not members (removed since they voted) do not count, so a
    shrinking swarm cannot be outvoted by its departed nodes.
    """
    known = set(members)
    need = majority(members)
    yes = sum(1 for node, vote in votes.items() if vote and node in known)
    no = sum(1 for node, vote in votes.items() if not vote and node in known)
    if yes >= need:
        return "adopt"
    if len(known) - no < need:
        return "reject"
    return "wait"


def rebase(base: Tree, head: Tree, candidate: Tree) -> Tree | None:
    """Three-way merge of a candidate made on ``base`` onto ``head``; ``None`` on a conflict.

    File by file: a side that left a file as it was in the base takes the other side's
    version; when both changed it, the lines are merged and any overlapping change is a
    conflict.  A file deleted on one side and changed on the other is a conflict too.
    """
    merged: dict[str, str] = {}
    for path in sorted(set(base) | set(head) | set(candidate)):
        b, h, c = base.get(path), head.get(path), candidate.get(path)
        if c == b:
            chosen = h
        elif h in (b, c):
            chosen = c
        elif b is None or h is None or c is None:
            return None
        else:
            text = _merge_text(b, h, c)
            if text is None:
                return None
            chosen = text
        if chosen is not None:
            merged[path] = chosen
    return merged


def _merge_text(base: str, head: str, candidate: str) -> str | None:
    merge = Merge3(
        base.splitlines(keepends=True),
        head.splitlines(keepends=True),
        candidate.splitlines(keepends=True),
    )
    out: list[str] = []
    for region in merge.merge_regions():
        kind = region[0]
        if kind == "unchanged":
            out.extend(merge.base[region[1] : region[2]])
        elif kind in ("a", "same"):
            out.extend(merge.a[region[1] : region[2]])
        elif kind == "b":
            out.extend(merge.b[region[1] : region[2]])
        else:
            return None
    return "".join(out)


# ---- deciding the waiting proposals of one genome ---------------------------------------


class Waiting(NamedTuple):
    """A proposal waiting for votes, as :func:`decide` sees it."""

    id: str
    parent: str
    version: str
    patch: str
    #: node -> yes; only votes for ``version`` (a rebase clears them)
    votes: Mapping[str, bool]
    proposer: str


class Adopt(NamedTuple):
    """The proposal becomes the head (its parent is the head and a majority said yes)."""

    id: str


class Reject(NamedTuple):
    """The proposal is dropped: voted down, conflicting with the head, or already in it."""

    id: str
    reason: str


class Rebased(NamedTuple):
    """The head moved under the proposal; it now is ``tree`` (``patch`` on the head) and
    needs new votes."""

    id: str
    version: str
    patch: str
    tree: Tree


Decision = Adopt | Reject | Rebased


def decide(
    waiting: Sequence[Waiting],
    head: str,
    head_tree: Tree,
    members: Sequence[str],
    tree_of: Callable[[str], Tree],
) -> list[Decision]:
    """Rebase, adopt or reject waiting proposals until none can move, in order.

    ``waiting`` is in submission order; after every decision the scan starts again from
    the first proposal, on the head that decision left.  A proposal whose parent is not
    the head is rebased by three-way merge (or rejected if that conflicts or changes
    nothing); one on the head is adopted on a majority of yes votes of ``members`` and
    rejected once that majority can no longer be reached.  ``tree_of`` gives the tree of
    a version that was head before this call (a rebase's base); it may raise, and then
    no decision of this call counts.  Two proposals never both become the head of the
    same parent: the first adopted moves the head, the second is rebased.

    The votes are signatures: the ledger records a vote only from an entry its author
    signed (``consensus.authors``), one per member (a member's vote replaces its own),
    so an adoption needs yes votes of a majority of *distinct* members, each a valid
    signature of a member that ran the tests.  The proposer's own signed ``cycle`` entry
    counts as its yes vote ("proven by its proposer": it ran the tests in its sandbox
    before proposing), as it did before signing; every other yes is a ``vote`` entry.
    """
    pending = {w.id: w for w in waiting}
    trees = _Trees(head, head_tree, tree_of)
    out: list[Decision] = []
    while (decision := _next(pending.values(), head, trees, members)) is not None:
        out.append(decision)
        proposal = pending[decision.id]
        if isinstance(decision, Rebased):
            pending[decision.id] = proposal._replace(
                parent=head, version=decision.version, patch=decision.patch, votes={}
            )
            continue
        del pending[decision.id]
        if isinstance(decision, Adopt):
            trees.adopted(proposal.version, head, proposal.patch)
            head = proposal.version
    return out


class _Trees:
    """The trees of versions :func:`decide` may rebase onto, built only when asked for.

    An adopted proposal's tree is only needed if a later proposal must be rebased onto
    it, which is rare; applying its patch eagerly doubled the cost of every adoption (the
    lineage applies the same patch when it records the adoption).
    """

    def __init__(self, head: str, head_tree: Tree, tree_of: Callable[[str], Tree]) -> None:
        self._known: dict[str, Tree] = {head: head_tree}
        self._adopted: dict[str, tuple[str, str]] = {}
        self._tree_of = tree_of

    def adopted(self, version: str, parent: str, patch: str) -> None:
        self._adopted[version] = (parent, patch)

    def __call__(self, version: str) -> Tree:
        tree = self._known.get(version)
        if tree is None:
            if version in self._adopted:
                parent, patch = self._adopted[version]
                tree = apply_patch(self(parent), patch)
            else:
                tree = self._tree_of(version)
            self._known[version] = tree
        return tree


def _next(
    waiting: Iterable[Waiting], head: str, trees: _Trees, members: Sequence[str]
) -> Decision | None:
    """The first decision the waiting proposals allow on ``head``, or None when none moves."""
    for proposal in waiting:
        if proposal.parent != head:
            return _rebase_onto(proposal, trees(proposal.parent), head, trees(head))
        verdict = tally(proposal.votes, members)
        if verdict == "adopt":
            return Adopt(proposal.id)
        if verdict == "reject":
            noes = sorted(node for node, yes in proposal.votes.items() if not yes)
            return Reject(proposal.id, f"voted down by {', '.join(noes)}")
    return None


def _rebase_onto(proposal: Waiting, base: Tree, head: str, head_tree: Tree) -> Decision:
    merged = rebase(base, dict(head_tree), apply_patch(base, proposal.patch))
    if merged is None:
        return Reject(proposal.id, f"conflicts with head {short(head)}")
    if merged == head_tree:
        return Reject(proposal.id, f"already in head {short(head)}")
    return Rebased(proposal.id, version_id(merged), make_patch(dict(head_tree), merged), merged)
