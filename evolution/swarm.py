"""How the swarm judges a proposal: counting votes and rebasing on a moved head.

Pure functions of the ledger's state, so every node that applies the same committed
entries in the same order reaches the same answer.  Nothing here may look at a clock,
a disk or a random source: a divergence between nodes would split the swarm's history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from merge3 import Merge3

from evolution.tree import Tree

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
