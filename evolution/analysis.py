"""Static analysis of a genome version: every place a mutator applies, ranked by expected gain.

A rewrite's static weight says how much faster the rewritten code is; the profile says
how much of the run that code accounts for.  Amdahl's law combines the two, so a big
win in a cold function ranks below a small win in the hot loop.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from evolution.manifest import Manifest
from evolution.mutators import ALL_MUTATORS
from evolution.mutators.base import Mutator, Site
from evolution.profile import Profile

#: without a profile only half the static gain is believed (the code may be cold)
_DAMPING = 0.5
#: share of run time from which a function counts as clearly hot
_HOT = 0.05


@dataclass(frozen=True)
class Opportunity:
    """A ranked place to evolve: what, where, why, and how much it should pay."""

    file: str
    function: str
    line: int
    kind: str
    evidence: str
    expected_gain: float
    confidence: float


def amdahl(heat: float, weight: float) -> float:
    """Whole-program speed-up when a ``heat`` share of the run gets ``weight`` times faster."""
    if weight <= 0:
        return 1.0
    return 1.0 / (1.0 - heat + heat / weight)


def _loop_spans(tree: ast.Module) -> list[tuple[int, int]]:
    loops = (ast.For, ast.AsyncFor, ast.While, ast.comprehension)
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, loops):
            owner = node.target if isinstance(node, ast.comprehension) else node
            end = getattr(owner, "end_lineno", None) or owner.lineno
            if isinstance(node, ast.comprehension):
                end = max(end, getattr(node.iter, "end_lineno", None) or end)
            spans.append((owner.lineno, end))
    return spans


def _depth(spans: list[tuple[int, int]], line: int) -> int:
    return sum(1 for start, end in spans if start <= line <= end)


def _score(site: Site, profile: Profile | None) -> tuple[float, float, str]:
    if profile is None:
        gain = 1.0 + (site.weight - 1.0) * _DAMPING
        return gain, 0.3, ""
    heat = profile.heat(site.file, site.function)
    gain = amdahl(heat, site.weight)
    confidence = min(0.95, 0.6 + heat) if heat >= _HOT else 0.2 + 0.4 * heat / _HOT
    return gain, confidence, f"; {heat:.0%} of the bench's profile"


def analyze(
    tree: Mapping[str, str],
    manifest: Manifest,
    profile: Profile | None = None,
    mutators: Sequence[Mutator] = ALL_MUTATORS,
) -> list[Opportunity]:
    """Scan every evolvable Python file with every mutator; best expected gain first."""
    found: list[Opportunity] = []
    for path in sorted(tree):
        if not path.endswith(".py") or not manifest.is_source(path):
            continue
        source = tree[path]
        try:
            spans = _loop_spans(ast.parse(source))
        except (SyntaxError, ValueError):
            continue  # a file that does not parse cannot be evolved; its tests will say so
        for mutator in mutators:
            for site in mutator.scan(path, source):
                depth = _depth(spans, site.line)
                gain, confidence, hot = _score(site, profile)
                found.append(
                    Opportunity(
                        file=site.file,
                        function=site.function,
                        line=site.line,
                        kind=site.kind,
                        evidence=f"{site.detail} (loop depth {depth}{hot})",
                        expected_gain=round(gain, 4),
                        confidence=round(confidence, 3),
                    )
                )
    found.sort(key=lambda o: (-o.expected_gain, o.file, o.line, o.kind))
    return found
