"""The parameter search over a manifest's tunable constants, one genome's memory of it.

Tunables are not found by analysis: the manifest names them, and each cycle that has
slots left after the rewrites proposes values the search has not tried on this version
(`evolution.params.propose`), then learns the measured gain of each.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from evolution.errors import TarsError
from evolution.generate import Candidate, from_rewrite
from evolution.manifest import Manifest
from evolution.params import propose, read_constant, set_constant


class Tuner:
    """Values tried per (version, tunable), and the candidates waiting for their measurement."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.tried: dict[tuple[str, str], dict[float, float | None]] = {}
        # candidate id -> (the search's memory for its parent, value tried): fed the measured gain.
        self.values: dict[str, tuple[dict[float, float | None], float]] = {}

    def candidates(
        self, tree: dict[str, str], version: str, seed: int, cycle: int, count: int
    ) -> list[Candidate]:
        """Parameter-search candidates for the manifest's tunable constants."""
        out: list[Candidate] = []
        rng = random.Random(f"tune:{seed}:{cycle}:{version}")
        for tunable in self.manifest.tunable:
            if len(out) >= count:
                break
            source = tree.get(tunable.file)
            current = read_constant(source, tunable.name) if source is not None else None
            if current is None:
                continue
            tried = self.tried.setdefault((version, tunable.name), {})
            for value in propose(
                current, tunable.min, tunable.max, tunable.kind, tried, rng, count=count - len(out)
            ):
                tried[value] = None
                try:
                    candidate = from_rewrite(
                        tree,
                        version,
                        tunable.file,
                        _setter(tunable.name, value, tunable.kind),
                        mutator="tune",
                        kind="tunable",
                        description=f"tune {tunable.name} {current:g} → {value:g} in {tunable.file}",
                    )
                except TarsError:
                    continue
                self.values[candidate.id] = (tried, value)
                out.append(candidate)
        return out

    def measured(self, candidate: str, ratio: float | None) -> None:
        """The gain a tuning candidate measured (a candidate of another kind is ignored)."""
        if candidate in self.values:
            tried, value = self.values.pop(candidate)
            tried[value] = ratio


def _setter(name: str, value: float, kind: str) -> Callable[[str], str]:
    def rewrite(source: str) -> str:
        return set_constant(source, name, value, kind)

    return rewrite
