"""`tune` parameters as a genome's genes: the values to try, and the script rewritten with them.

Pure.  :func:`trials` proposes the values to prove: one parameter moved at a time to a
neighbour of its current value inside its declared domain (an int ±1, a float ±10 %, the
other choices of a list, a bool flipped), ordered by a hash of the seed and capped, so a run costs
a known number of campaigns.  :func:`rewrite` gives the script's text with new defaults,
touching only the default's characters on the ``tune`` lines, so the version's diff reads
as exactly the lines that changed.

A trial is proven as the governor proves a candidate (:mod:`evolution.stats`): its
objective is measured over several repeats, each with its own seed for the campaign's
stochastic choices (:func:`repeat_seeds`), the current values over the very same seeds,
and :func:`prove` takes the interval of the paired gain (the geometric mean of the
per-seed ratios, a Student-t interval widened to a bootstrap's when an ``rng`` is handed
in).  A trial replaces the current values only when that whole interval lies at or above
the threshold: one lucky run cannot adopt, nor can three runs whose spread is as wide as
the gain.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolution.errors import ConfigError
from evolution.lang import ast as A
from evolution.lang.introspect import TuneInfo
from evolution.stats import Comparison, compare

if TYPE_CHECKING:
    # the type of what `compare` takes, only: the caller hands a seeded Random in, and
    # evolution/lang makes no randomness of its own (tests/test_lang.py, the language is pure)
    from evolution.stats import random

Value = int | float | str | bool

_LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|-?[0-9][0-9.eE+-]*|true|false')


def _parse(text: str, kind: str) -> Value:
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        return text == "true"
    return text


def written(value: Value) -> str:
    """A value as a script writes it (``"terse"``, ``1.1``, ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def neighbours(info: TuneInfo, current: Value) -> list[Value]:
    """The values next to ``current`` within the parameter's domain."""
    if info.choices:
        return [c for c in (_parse(c, info.type) for c in info.choices) if c != current]
    assert info.low is not None and info.high is not None
    low, high = _parse(info.low, info.type), _parse(info.high, info.type)
    assert isinstance(low, int | float) and isinstance(high, int | float)
    assert isinstance(current, int | float)
    if info.type == "int":
        near: list[int | float] = [int(current) - 1, int(current) + 1]
    else:
        near = [round(current * 0.9, 4), round(current * 1.1, 4)]
    return [v for v in near if low <= v <= high and v != current]


def trials(
    tunes: tuple[TuneInfo, ...],
    current: dict[str, Value],
    seed: int,
    limit: int,
) -> list[dict[str, Value]]:
    """Up to ``limit`` value sets to prove, each one parameter away from ``current``."""
    found = [
        {**current, info.name: value}
        for info in tunes
        for value in neighbours(info, current[info.name])
    ]
    # ordered by a hash of the seed and the values: shuffled, reproducible, no global state
    found.sort(key=lambda v: hashlib.sha256(f"{seed}:{sorted(v.items())}".encode()).digest())
    return found[:limit]


def rewrite(program: A.Program, values: dict[str, Value]) -> str:
    """The script's text with each named tune parameter's default set to ``values[name]``."""
    lines = program.text.split("\n")
    for decl in program.decls:
        if not isinstance(decl, A.TuneDecl) or decl.name not in values:
            continue
        pos = decl.default.pos
        line = lines[pos.line - 1]
        start = pos.column - 1
        found = _LITERAL.match(line, start)
        assert found is not None, f"the default of {decl.name} is a literal (the checker says)"
        lines[pos.line - 1] = line[:start] + written(values[decl.name]) + line[found.end() :]
    return "\n".join(lines)


def repeat_seeds(seed: int, repeats: int) -> tuple[int, ...]:
    """The seeds of a run's repeats: the campaign's own seed, then the next ones.

    The current values and every trial are measured on these same seeds, so the ``i``-th
    figures of two value sets differ by the values only (and by the sandbox's noise).
    """
    if repeats < 2:
        raise ConfigError(
            f"tuning: repeats = {repeats}: an interval needs at least 2 repeats",
            hint="set `tuning { repeats = 3 }` (or more) in the evolve block",
        )
    return tuple(seed + i for i in range(repeats))


@dataclass(frozen=True)
class Proof:
    """One trial against the current values: both sides' figures over the same seeds, the
    paired gain's interval, and the threshold that interval had to clear."""

    values: dict[str, Value]
    seeds: tuple[int, ...]
    base: tuple[float, ...]
    figures: tuple[float, ...]
    comparison: Comparison
    threshold: float

    @property
    def proven(self) -> bool:
        """Whether the whole interval lies at or above the threshold (the adoption rule), and
        above no change whatever the threshold (a script's threshold under 1 adopts no loss)."""
        return self.comparison.low >= self.threshold and self.comparison.low > 1.0

    @property
    def reason(self) -> str:
        """The verdict in words: the gain, its interval, the threshold, each repeat's figures."""
        c = self.comparison
        interval = f"{c.confidence:.0%} interval {c.low:.3f}–{c.high:.3f}×"
        verdict = (
            f"proven: gain {c.ratio:.3f}× ({interval}) lies above the threshold {self.threshold:g}×"
            if self.proven
            else f"not proven: gain {c.ratio:.3f}× ({interval}) does not lie above the "
            f"threshold {self.threshold:g}×"
        )
        shown = ", ".join(f"{x:.4f}" for x in self.figures)
        base = ", ".join(f"{x:.4f}" for x in self.base)
        seeds = ", ".join(str(s) for s in self.seeds)
        return f"{verdict}; gain per cycle {shown} against {base} (seeds {seeds})"

    def log_figures(self) -> dict[str, dict[str, object]]:
        """The figures the log keeps with the trial: each repeat's, both sides, and the seeds
        (``parent``/``candidate`` the geometric means, as ``tars log show`` reads them)."""
        return {
            "gain_per_cycle": {
                "parent": geometric_mean(self.base),
                "candidate": geometric_mean(self.figures),
                "main": True,
                "parent_repeats": list(self.base),
                "candidate_repeats": list(self.figures),
                "seeds": list(self.seeds),
            }
        }


def geometric_mean(xs: Sequence[float]) -> float:
    """The central figure of a side's repeats: the mean the paired ratio is taken on."""
    return math.exp(math.fsum(math.log(x) for x in xs) / len(xs))


def prove(
    values: dict[str, Value],
    seeds: Sequence[int],
    base: Sequence[float],
    figures: Sequence[float],
    *,
    threshold: float,
    confidence: float,
    rng: random.Random | None = None,
) -> Proof:
    """A trial's figures against the current values' on the same ``seeds`` (paired by seed),
    maximised, with its ``confidence`` interval (:func:`evolution.stats.compare`)."""
    for side, series in (("the current values", base), (str(values), figures)):
        for seed, x in zip(seeds, series, strict=True):
            if not (math.isfinite(x) and x > 0):
                raise ConfigError(
                    f"tune: the objective of {side} with seed {seed} is {x!r}",
                    hint="the tune objective is a positive finite figure (a gain per cycle)",
                )
    comparison = compare(base, figures, direction="maximize", confidence=confidence, rng=rng)
    return Proof(dict(values), tuple(seeds), tuple(base), tuple(figures), comparison, threshold)


def best(proofs: Sequence[Proof]) -> Proof | None:
    """The proven trial with the highest low bound (the gain it is surest of), first on ties."""
    proven = [p for p in proofs if p.proven]
    return max(proven, key=lambda p: p.comparison.low) if proven else None
