"""Static analysis of a genome version: every place a mutator applies, ranked by expected gain.

A rewrite's static weight says how much faster the rewritten code is; the profile says
how much of the run that code accounts for (:mod:`evolution.heat`: the site's own cost,
not its caller's).  Amdahl's law combines the two, so a big win in a cold function ranks
below a small win in the hot loop; a :class:`~evolution.calibration.Calibration` then
corrects the figure by what each kind of rewrite measured before.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from evolution.calibration import Calibration
from evolution.heat import site_heat
from evolution.manifest import Manifest
from evolution.mutators import ALL_MUTATORS
from evolution.mutators.base import Mutator, Site
from evolution.priors import prior_gain
from evolution.profile import Profile
from evolution.sites import FunctionSpan, function_fingerprint, functions

#: without a profile only half the static gain is believed (the code may be cold)
_DAMPING = 0.5
#: share of run time from which a function counts as clearly hot
_HOT = 0.05


@dataclass(frozen=True)
class Opportunity:
    """A ranked place to evolve: what, where, why, and how much it should pay.

    ``expected_gain`` is what the planner ranks by: the static prediction
    (``predicted_gain``), calibrated when a calibration was given.  The fields after
    ``confidence`` were added later and have defaults, so older callers still build one.
    """

    file: str
    function: str
    line: int
    kind: str
    evidence: str
    expected_gain: float
    confidence: float
    #: the mutator's own words for the site (``Site.detail``), which ``apply`` matches on
    detail: str = ""
    #: the mutator's static weight: how many times faster the rewritten code is
    weight: float = 1.0
    #: the share of the benchmark the site weighs, and the calls of the function it is of
    share: float = 0.0
    calls: int = 0
    #: the static model's gain before calibration (0.0: not known, use ``expected_gain``)
    predicted_gain: float = 0.0
    #: the fingerprint of the function's code (:func:`evolution.sites.function_fingerprint`)
    fingerprint: str = ""
    #: the rewrite's own expected gain (:mod:`evolution.priors`: what it removes per
    #: execution, times how often the site runs), which an untried kind is ranked by;
    #: 0.0 when the kind has no prior here
    prior_gain: float = 0.0


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


def _score(
    site: Site, profile: Profile | None, spans: Mapping[str, FunctionSpan]
) -> tuple[float, float, float, int, str]:
    """(gain, confidence, share, calls, words) of a site under the static model."""
    if profile is None:
        gain = 1.0 + (site.weight - 1.0) * _DAMPING
        return gain, 0.3, 0.0, 0, "no profile"
    heat = site_heat(site, profile, spans)
    gain = amdahl(heat.share, site.weight)
    return gain, _confidence(heat.share), heat.share, heat.calls, heat.words()


def _confidence(share: float) -> float:
    """How sure a prediction is, by the share of the run its site weighs: a hot site's
    gain is not lost in the noise of the rest."""
    return min(0.95, 0.6 + share) if share >= _HOT else 0.2 + 0.4 * share / _HOT


def calibrated(
    opportunities: Sequence[Opportunity], calibration: Calibration | None
) -> list[Opportunity]:
    """``opportunities`` with their expected gain corrected by ``calibration``, best first.

    The analyzer's answer for a version never changes, so it is cached uncalibrated and
    this applies what the log has learnt since, cycle by cycle.  A kind never measured
    is expected to give its prior (``prior_gain``) when it has one; once measured, the
    calibration of the static prediction decides, the prior no longer counts.
    """
    if calibration is None:
        return list(opportunities)
    out = []
    for opp in opportunities:
        predicted = opp.predicted_gain or opp.expected_gain
        if opp.prior_gain > 0 and not calibration.tries(opp.kind):
            gain = opp.prior_gain
        else:
            gain = calibration.gain(opp.kind, predicted)
        out.append(replace(opp, expected_gain=round(gain, 4), predicted_gain=predicted))
    out.sort(key=_rank)
    return out


def _rank(o: Opportunity) -> tuple[float, str, int, str]:
    return (-o.expected_gain, o.file, o.line, o.kind)


def analyze(
    tree: Mapping[str, str],
    manifest: Manifest,
    profile: Profile | None = None,
    mutators: Sequence[Mutator] = ALL_MUTATORS,
    calibration: Calibration | None = None,
) -> list[Opportunity]:
    """Scan every evolvable Python file with every mutator; best expected gain first."""
    found: list[Opportunity] = []
    for path in sorted(tree):
        if not path.endswith(".py") or not manifest.is_source(path):
            continue
        source = tree[path]
        try:
            module = ast.parse(source)
        except (SyntaxError, ValueError):
            continue  # a file that does not parse cannot be evolved; its tests will say so
        spans = _loop_spans(module)
        defs = functions(source)
        for mutator in mutators:
            for site in mutator.scan(path, source):
                gain, confidence, share, calls, words = _score(site, profile, defs)
                prior = prior_gain(site, module, profile, defs)
                if prior is not None:
                    words += f"; {prior.words}"
                    confidence = max(confidence, _confidence(prior.share))
                found.append(
                    Opportunity(
                        file=site.file,
                        function=site.function,
                        line=site.line,
                        kind=site.kind,
                        evidence=f"{site.detail} (loop depth {_depth(spans, site.line)}; {words})",
                        expected_gain=round(prior.gain if prior is not None else gain, 4),
                        confidence=round(confidence, 3),
                        detail=site.detail,
                        weight=site.weight,
                        share=round(share, 4),
                        calls=calls,
                        predicted_gain=round(gain, 4),
                        fingerprint=function_fingerprint(tree, site.file, site.function),
                        prior_gain=round(prior.gain, 4) if prior is not None else 0.0,
                    )
                )
    found.sort(key=_rank)
    return calibrated(found, calibration)
