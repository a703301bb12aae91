"""How much of the benchmark a rewrite's site weighs: the site's own cost, not its caller's.

The first analyzer used a function's *cumulative* share: a recursive solver or a
dispatcher is "100 % of the bench's profile", so every loop-level rewrite inside it was
predicted a 1.1× gain and measured 1.00×.  A rewrite inside a function can only save
the time spent in that function's own code, which the profile calls its self time
(``tottime``), plus the own time of the builtins its lines call: cProfile books
``sorted``'s time on ``sorted``, not on the line ``sorted(xs)[0]`` that a rewrite to
``min(xs)`` removes (seed 3 of the composition bench: ``min_max_sorted`` predicted
1.002x from the caller's bare self time, measured 1.112x).  The Python callees' time
stays where it was.

A rewrite that acts on a call instead (caching a function, inlining a callee, hoisting
a pure call) saves some of the *callee's* cost at every call, so it weighs the callee:
its cumulative share when the whole call disappears (a cache hit skips the callee and
everything it calls), its self share when only the call's overhead and body move
(inlining).  A mutator whose site *is* the callee's definition names it as the site's
``function`` (as ``memoize`` does); one that rewrites a call inside another function
keeps that function as ``function`` (``apply`` re-finds the site there) and names the
callee in a ``callee`` attribute of its site (read with ``getattr``: a field
``callee: str = ""`` on ``Site`` is all it takes).

Under ``measure = "instructions"`` the profile's clock counts profiler events (calls and
returns), so "self time" is then the number of calls a function makes itself: a loop
with no calls in it (``x in some_list``) weighs nothing.  The calibration
(:mod:`evolution.calibration`) corrects what this model gets wrong, kind by kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evolution.mutators.base import Site
from evolution.profile import Hotspot, Profile
from evolution.sites import FunctionSpan

#: kinds whose site names a callee whose whole call is saved: its cumulative share counts
CUMULATIVE_KINDS = frozenset({"memoize", "pure_calls", "cache_call"})
#: kinds whose site names a callee whose call overhead and body move: its self share counts
CALLEE_SELF_KINDS = frozenset({"inline", "inline_call", "inline_method", "inline_function"})


@dataclass(frozen=True)
class Heat:
    """The share of the benchmark a site's rewrite acts on, and where the figure came from."""

    share: float
    calls: int
    #: "self", "cumulative" or "unseen" (the benchmark never ran the function)
    basis: str
    function: str
    #: the part of ``share`` spent in builtins the function's lines call (self basis only)
    builtin: float = 0.0

    def words(self) -> str:
        """The evidence, in words: which share, of what, and how often it runs."""
        if self.basis == "unseen":
            return f"`{self.function}` never ran in the bench's profile"
        what = "self time" if self.basis == "self" else "cumulative time"
        calls = f"{self.calls:,} call{'' if self.calls == 1 else 's'}"
        inside = f" ({self.builtin:.0%} in builtins it calls)" if self.builtin >= 0.005 else ""
        return f"{self.share:.0%} {what}{inside} of the bench, {calls}"


def _callee(site: Site) -> str:
    named = getattr(site, "callee", "")
    return named if isinstance(named, str) and named else site.function


def site_heat(site: Site, profile: Profile, spans: Mapping[str, FunctionSpan]) -> Heat:
    """The share of ``profile`` that a rewrite at ``site`` acts on (see the module's doc)."""
    cumulative = site.kind in CUMULATIVE_KINDS
    function = _callee(site) if cumulative or site.kind in CALLEE_SELF_KINDS else site.function
    span = spans.get(function)
    lines = (span.first_line, span.def_line) if span is not None else ()
    row: Hotspot | None = profile.find(site.file, function, lines)
    if row is None:
        return Heat(0.0, 0, "unseen", function)
    if cumulative:
        return Heat(row.share, row.calls, "cumulative", function)
    if function != site.function:  # inlining moves the callee's body, not what it calls
        return Heat(row.self_share, row.calls, "self", function)
    share = min(1.0, row.self_share + row.builtin_share)
    return Heat(share, row.calls, "self", function, row.builtin_share)
