"""Composition of winners: a cycle's passing candidates merged into one, proven like any other.

A cycle that proves several independent wins (a set lookup in one function, a hoisted
call in another) used to adopt one and throw the rest away, so the next cycles had to
find them again.  Merged three-way onto the parent, as the swarm's rebase merges a
proposal onto a moved head (:func:`evolution.swarm.rebase`), the winners that do not
conflict become one candidate; it is incubated, judged and adopted only if it beats the
best single winner (the coordinator decides), and every single winner's record stays in
the log with its reasons.  Pure: trees and patches in, a candidate out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from evolution.errors import PatchError
from evolution.generate import Candidate, candidate_id
from evolution.patch import apply_patch, make_patch
from evolution.swarm import rebase

#: the mutator (and kind) name of a composed candidate
COMPOSED = "compose"
#: the smallest exact gain below the threshold worth merging: code layout alone moves an
#: instruction count by up to ~0.4 % (one dead assignment in tomllib's ``skip_chars``
#: cost 0.35 %), so a smaller "gain" is not evidence of anything
MERGE_FLOOR = 1.005


def compose(
    parent: Mapping[str, str], version: str, winners: Sequence[Candidate]
) -> Candidate | None:
    """The winners (best first) merged onto ``parent``; None unless at least two merge cleanly.

    A winner that conflicts with the ones merged before it, or adds nothing to them, is
    left out; the order decides which of two conflicting winners is kept.
    """
    if len(winners) < 2:
        return None
    base = dict(parent)
    try:
        merged = apply_patch(base, winners[0].patch)
    except PatchError:
        return None
    used = [winners[0]]
    for winner in winners[1:]:
        try:
            theirs = apply_patch(base, winner.patch)
        except PatchError:
            continue
        tree = rebase(base, merged, theirs)
        if tree is None or tree == merged:
            continue
        merged, used = tree, [*used, winner]
    if len(used) < 2:
        return None
    patch = make_patch(base, merged)
    first = used[0]
    names = ", ".join(f"{c.mutator} {c.id[:8]}" for c in used)
    return Candidate(
        id=candidate_id(version, patch),
        parent=version,
        patch=patch,
        mutator=COMPOSED,
        kind=COMPOSED,
        file=first.file,
        function=first.function,
        line=first.line,
        description=f"composition of {len(used)} winners: {names}",
    )
