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

import re
from collections.abc import Mapping, Sequence

from evolution.errors import PatchError
from evolution.generate import Candidate, candidate_id
from evolution.patch import apply_patch, make_patch
from evolution.sites import changed_functions
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
        if any(stale_copy(base, a, winner) or stale_copy(base, winner, a) for a in used):
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


def stale_copy(parent: Mapping[str, str], rewrote: Candidate, copier: Candidate) -> bool:
    """Whether ``copier`` replaced calls to a function that ``rewrote`` changed.

    An inlining winner copies the callee's body, as it was in the parent, into its
    callers; merged with a winner that rewrote that callee, the lines do not conflict,
    but the hot path runs the old copy and the rewrite's saving is lost (seqdiff:
    ``real_quick_ratio`` inlined at 1.010×, its ``min`` rewritten at 1.038×, merged
    1.010×).  Such a pair is a conflict of meaning, left out like a conflict of lines.
    """
    names = {
        function.rsplit(".", 1)[-1] for _, function, _ in changed_functions(parent, rewrote.patch)
    }
    if not names:
        return False
    removed = [
        line[1:]
        for line in copier.patch.splitlines()
        if line.startswith("-") and not line.startswith("---")
    ]
    added = [
        line[1:]
        for line in copier.patch.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    for name in names:
        call = re.compile(rf"\b{re.escape(name)}\s*\(")
        if any(call.search(line) for line in removed) and not any(
            call.search(line) for line in added
        ):
            return True
    return False
