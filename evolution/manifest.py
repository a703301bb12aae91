"""The genome manifest (``genome.toml``): how to run a genome and what "better" means.

Parsing is pure (text in, model out) so it is unit-tested without files; the caller
names the source so every error says which file, which key, and what to write instead.
"""

from __future__ import annotations

import fnmatch
import shlex
import tomllib
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evolution.cascade import QUICK_FLOOR
from evolution.errors import ManifestError

MANIFEST_NAME = "genome.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenomeSection(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    description: str = ""
    sources: Annotated[list[str], Field(min_length=1)]
    #: files only the held-out command reads (fnmatch globs, like ``sources``): protected,
    #: left out of the proposer's sandbox and of anything shown to a model
    held_out: list[str] = []


class Commands(_Strict):
    test: list[str]
    bench: list[str]
    #: tests the proposer never runs: only the voting nodes run them, before voting yes,
    #: so a candidate tuned to pass the visible tests is still caught (reward hacking)
    held_out: list[str] | None = None

    @field_validator("test", "bench", "held_out", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return shlex.split(value)
        return value

    @field_validator("test", "bench", "held_out")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError('must name a command, for example "python -m unittest"')
        return value


class Fitness(_Strict):
    metric: Annotated[str, Field(min_length=1)]
    direction: Literal["minimize", "maximize"]
    #: smallest gain worth adopting (1.05 = 5 % better than the parent)
    threshold: Annotated[float, Field(ge=1.0, le=100.0)] = 1.05
    #: two-sided confidence level of the interval the governor checks
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    #: interleaved A/B rounds per candidate
    rounds: Annotated[int, Field(ge=2, le=100)] = 5
    #: how candidates are judged: "benchmark" (interleaved A/B of ``metric``) or
    #: "instructions" (the benchmark command's instruction count under valgrind, fewer is
    #: better): exact and repeatable, so two runs with one seed decide alike on any machine
    measure: Literal["benchmark", "instructions"] = "benchmark"
    #: the evaluation cascade's quick run (counted genomes): a candidate whose every
    #: timed pair is below this ratio of its parent is rejected before the exact count;
    #: 0 turns the quick run off (evolution/cascade.py, docs/sandbox.md)
    quick: Annotated[float, Field(ge=0.0, lt=1.0)] = QUICK_FLOOR


class Limits(_Strict):
    wall_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    cpu_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    memory_mb: Annotated[int, Field(ge=32, le=65536)] = 1024
    processes: Annotated[int, Field(ge=1, le=4096)] = 64
    file_mb: Annotated[int, Field(ge=1, le=65536)] = 64
    #: everything one run may write (its workdir, /tmp and /dev/shm together, a tmpfs)
    disk_mb: Annotated[int, Field(ge=16, le=65536)] = 512


class Tunable(_Strict):
    file: str
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    min: float
    max: float
    kind: Literal["int", "float"] = "int"

    @model_validator(mode="after")
    def _range(self) -> Tunable:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class Manifest(_Strict):
    genome: GenomeSection
    commands: Commands
    fitness: Fitness
    limits: Limits = Limits()
    tunable: list[Tunable] = []

    @model_validator(mode="after")
    def _held_out_pair(self) -> Manifest:
        if self.genome.held_out and self.commands.held_out is None:
            raise ValueError(
                "genome.held_out names files but commands.held_out is missing: "
                "add the command that runs them"
            )
        return self

    @property
    def name(self) -> str:
        return self.genome.name

    def is_source(self, path: str) -> bool:
        """Whether ``path`` is evolvable (matches a ``sources`` glob); everything else is protected.

        A held-out file is never a source, whatever the globs say: a candidate that could
        rewrite the held-out tests would make them worthless.
        """
        if self.is_held_out(path):
            return False
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.genome.sources)

    def is_held_out(self, path: str) -> bool:
        """Whether only the voters' held-out command may see ``path``."""
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.genome.held_out)

    def without_held_out(self, tree: Mapping[str, str]) -> dict[str, str]:
        """``tree`` as the proposer's sandbox and a model may see it: held-out files removed."""
        return {path: text for path, text in tree.items() if not self.is_held_out(path)}

    def better(self, candidate: float, parent: float) -> float:
        """The gain of candidate over parent as a ratio where > 1 is better, whatever the direction."""
        if self.fitness.direction == "minimize":
            return parent / candidate if candidate > 0 else float("inf")
        return candidate / parent if parent > 0 else float("inf")


_FIXES = {
    "missing": "add it",
    "extra_forbidden": "remove it or check its spelling",
    "literal_error": "use one of the allowed values",
    "string_pattern_mismatch": "use letters, digits, '_', '.' or '-'",
}


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> Manifest:
    """Parse and validate a manifest; raise one :class:`ManifestError` naming file, key and fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(
            f"{source}: not valid TOML ({exc})", hint="fix the syntax at the line shown"
        ) from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        fix = _FIXES.get(first["type"], "see docs/genome-format.md")
        raise ManifestError(f"{source}: key '{key}': {first['msg']}", hint=fix) from exc
