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

from evolution.errors import ManifestError
from evolution.service_args import type_problem

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


#: Figures the sandbox measures itself on every benchmark run, whatever the benchmark prints:
#: the run's peak memory in MiB (its memory cgroup's high-water mark; docs/sandbox.md).
BUILT_IN_FIGURES = frozenset({"peak_memory_mb"})

FigureName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
#: one argument the short count appends to the benchmark command: printable, no NUL or
#: line break, at most 200 characters (it reaches a process's argv in the jail)
ShortArg = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


class FitnessLimit(_Strict):
    """A second objective: a figure the candidate may not make much worse than its parent.

    ``metric`` is a built-in figure (:data:`BUILT_IN_FIGURES`) or a number the benchmark
    prints in the same JSON line as the main metric; ``max_change`` is the largest change
    for the worse allowed, as a fraction of the parent's figure (0.10: no more than 10 %
    more memory for a ``minimize`` figure, no more than 10 % less for a ``maximize`` one).
    """

    metric: FigureName
    direction: Literal["minimize", "maximize"] = "minimize"
    max_change: Annotated[float, Field(ge=0.0, le=100.0)]


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
    #: Off by default: the quick run is timed, so which stage rejects a clear loser (and the
    #: ratio recorded for it) varies between runs with one seed, and it did not pay on the
    #: offline mutators' candidates (bench_candidate_cost: 1.07x today's cost). Turn it on
    #: (``quick = 0.9``) where candidates often break or slow down, as a model's do.
    quick: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    #: the cascade's short count (counted genomes; evolution/cascade.py): the benchmark
    #: run on a short input, counted exactly, before the full count.  ``short_scale`` is
    #: handed to it as ``TARS_BENCH_SCALE`` (the share of its counted input to use),
    #: ``short_args`` are appended to its command; neither set: no short count
    short_scale: Annotated[float, Field(gt=0.0, lt=1.0, strict=True)] | None = None
    short_args: Annotated[list[ShortArg], Field(max_length=16)] = []
    #: the short gain a candidate needs to go on to the full count; None: half the
    #: threshold's gain, ``1 + (threshold - 1) / 2``
    short_margin: Annotated[float, Field(ge=1.0, le=100.0)] | None = None
    #: figures the benchmark prints that count the work it did (``lines_parsed``): a
    #: candidate whose counts differ from its parent's did other work, not the same work
    #: faster, and is refused (reward hacking: skipping half the input is not a speed-up)
    work: list[FigureName] = []
    #: the other objectives, each with a direction and a limit (``[[fitness.limits]]``)
    limits: list[FitnessLimit] = []

    @model_validator(mode="after")
    def _figures_named_once(self) -> Fitness:
        named = [self.metric, *self.work, *(limit.metric for limit in self.limits)]
        twice = sorted({name for name in named if named.count(name) > 1})
        if twice:
            raise ValueError(
                f"{', '.join(twice)} named twice among metric, work and limits: "
                "a figure is the main metric, a work count or a limit, once"
            )
        if set(self.work) & BUILT_IN_FIGURES:
            raise ValueError("peak_memory_mb is measured by the sandbox, not a work count")
        return self

    def printed_figures(self) -> tuple[str, ...]:
        """The figures read from the benchmark's JSON line besides the main metric."""
        names = [*self.work, *(limit.metric for limit in self.limits)]
        return tuple(name for name in names if name not in BUILT_IN_FIGURES)


class Limits(_Strict):
    wall_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    cpu_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0
    memory_mb: Annotated[int, Field(ge=32, le=65536)] = 1024
    processes: Annotated[int, Field(ge=1, le=4096)] = 64
    file_mb: Annotated[int, Field(ge=1, le=65536)] = 64
    #: everything one run may write (its workdir, /tmp and /dev/shm together, a tmpfs)
    disk_mb: Annotated[int, Field(ge=16, le=65536)] = 512


class HoldRules(_Strict):
    """``[policy]``: when the governor holds a winner for a person (evolution/policy.py).

    Every key is optional; one left out keeps the governor's default.  A held candidate is
    adopted only by a person's signed approval (docs/approval.md).
    """

    max_patch_lines: Annotated[int, Field(ge=1, le=100_000)] | None = None
    approval_on_new_imports: bool | None = None
    approval_on_protected: bool | None = None
    approval_on_model: bool | None = None
    #: a gain at or above this ratio waits for a person: too good to take unseen
    approval_above: Annotated[float, Field(gt=1.0, le=1e6)] | None = None


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


class RolloutSettings(_Strict):
    """How a node rolls a new version out (``[rollout]``; docs/rollouts.md says why each default).

    Read from the manifest of the version *blue* serves (or cluster.yml's ``rollout:``), never
    from the version being rolled out: a candidate cannot loosen its own analysis.
    """

    #: green's share of live requests at each step; each is held until its analysis passes
    steps: Annotated[list[Annotated[float, Field(gt=0.0, le=1.0)]], Field(min_length=1)] = [
        0.01,
        0.10,
        0.50,
        1.0,
    ]
    #: seconds of one analysis window
    interval: Annotated[float, Field(gt=0.0, le=3600.0)] = 2.0
    #: failed windows a rollout tolerates; one more aborts it (Argo's failureLimit)
    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    #: successful windows in a row that pass a step (Argo's consecutiveSuccessLimit)
    consecutive_success: Annotated[int, Field(ge=1, le=100)] = 1
    #: inconclusive windows in a row (merged into one) before the rollout pauses for a human
    inconclusive_limit: Annotated[int, Field(ge=1, le=1000)] = 30
    #: share of live requests also sent to the other colour, answers compared
    mirror: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    #: green's error rate may exceed blue's by at most this much (0.01 = one point)
    max_error_increase: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    #: green's p99 latency may be at most this many times blue's
    max_p99_ratio: Annotated[float, Field(ge=1.0, le=100.0)] = 1.5
    #: p99 latencies below this (seconds) are noise: the ratio uses at least this for blue
    p99_floor: Annotated[float, Field(ge=0.0, le=10.0)] = 0.005
    #: green requests a window needs for a decision on errors and latency
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    #: mirrored requests that may answer differently (0: one different answer fails)
    mismatches: Annotated[int, Field(ge=0)] = 0
    #: seconds green may take to answer its readiness probe before it is abandoned
    ready_timeout: Annotated[float, Field(gt=0.0, le=600.0)] = 30.0
    #: a window in which no caller came at all (an idle service) passes its step on the
    #: evidence the swarm already has (tests, exact counts); false: wait for traffic
    idle_passes: bool = True
    #: what a new head does: ``auto`` rolls it out when it is adopted (or found on a
    #: restart); ``manual`` leaves blue serving until a deploy asks (`tars evolve deploy`,
    #: a script's ``deploy``: Argo's paused rollout). A rollback is never held
    start: Literal["auto", "manual"] = "auto"

    @field_validator("steps")
    @classmethod
    def _rising(cls, value: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError("steps must rise, for example [0.01, 0.1, 0.5, 1.0]")
        return value


#: argument types a service function may declare; a trailing "?" makes one optional
ARG_TYPES = ("str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "dict", "any")
_CALL = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"


class ServiceFunction(_Strict):
    """One entry point callers may use: where it lives, its arguments, a call that works.

    ``example`` is also the readiness probe of a new worker (docs/service.md), so it must
    give every required argument and name no other.
    """

    call: Annotated[str, Field(pattern=_CALL)]
    args: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = {}
    example: dict[str, object] = {}

    @field_validator("args")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if kind.removesuffix("?") not in ARG_TYPES:
                raise ValueError(
                    f"argument {name!r} has type {kind!r}: write one of {', '.join(ARG_TYPES)} "
                    '(with "?" after it when optional)'
                )
        return value

    @model_validator(mode="after")
    def _example(self) -> ServiceFunction:
        extra = sorted(set(self.example) - set(self.args))
        if extra:
            raise ValueError(f"example names {', '.join(extra)}, not in args: add it to args")
        missing = sorted(
            n for n, k in self.args.items() if not k.endswith("?") and n not in self.example
        )
        if missing:
            raise ValueError(f"example lacks required {', '.join(missing)}: give a value")
        for name, value in self.example.items():
            problem = type_problem(self.args[name].removesuffix("?"), value)
            if problem is not None and value is not None:
                raise ValueError(f"example {name!r}: {problem}")
        return self

    @property
    def module(self) -> str:
        return self.call.split(":", 1)[0]

    @property
    def function(self) -> str:
        return self.call.split(":", 1)[1]


class Service(_Strict):
    """``[service]``: the genome's live entry points and how its workers run them."""

    #: true: hot reload in place (OTP style); false: blue/green workers
    reloadable: bool = False
    #: worker processes per colour
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    #: optional "module:function" returning the initial state (stateful genomes)
    state: Annotated[str, Field(pattern=f"^$|{_CALL}")] = ""
    #: optional "module:function(old_version, state) -> state" hook
    code_change: Annotated[str, Field(pattern=f"^$|{_CALL}")] = ""
    functions: Annotated[dict[str, ServiceFunction], Field(min_length=1)]

    @field_validator("functions")
    @classmethod
    def _names(cls, value: dict[str, ServiceFunction]) -> dict[str, ServiceFunction]:
        for name in value:
            if not name or not all(c.isalnum() or c in "_-" for c in name):
                raise ValueError(f"function name {name!r}: use letters, digits, '_' or '-'")
        return value


class Manifest(_Strict):
    genome: GenomeSection
    commands: Commands
    fitness: Fitness
    limits: Limits = Limits()
    #: the genome's own rollout settings; None: cluster.yml's ``rollout:`` or the defaults
    rollout: RolloutSettings | None = None
    tunable: list[Tunable] = []
    service: Service | None = None
    #: when a winner waits for a person (the governor's hold rules); None: the defaults
    policy: HoldRules | None = None

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
