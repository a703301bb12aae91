"""A deploy's own rollout plan: the steps (and window, mirror) one request asks for.

`tars evolve deploy --steps 1,10,50,100` and a script's ``deploy canary(steps=[1, 10, 50,
100])`` both ask each node for a rollout with their own steps instead of the ones in blue's
manifest or cluster.yml (docs/rollouts.md, "A deploy's own plan").  The plan is checked
here, by one pure function, wherever it crosses a boundary: the CLI and the script before
they send it, the node's admin op before its Deployer takes it, and the ledger's decoder
when a ``rollout`` entry carries it (a peer's entry with garbage steps is refused there,
never met by the state machine).  So a node never runs, and no log ever holds, a plan
that is not well formed.

On the wire and in the log a plan is a small map: ``strategy``, ``steps`` as percentages
of live traffic (floats), and ``interval`` and ``mirror`` only when the request set them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evolution.errors import RolloutError
from evolution.manifest import RolloutSettings

#: the strategies the TARS language names (evolution/lang/check_expr.py ``deploy``)
STRATEGIES = ("canary", "blue_green")
#: most steps a plan may have: more is a mistake, and a peer's entry stays small
MAX_STEPS = 20
#: the keys a plan's map may have (any other is refused: a plan steers the service)
KEYS = frozenset({"strategy", "steps", "interval", "mirror"})
STEPS_FIX = (
    "give shares of traffic in percent, each larger than the one before, the last 100: 1,10,50,100"
)


@dataclass(frozen=True)
class RolloutPlan:
    """A checked plan (build it with :func:`make_plan` or :func:`read_plan`)."""

    strategy: str
    #: green's share of live traffic at each step, in percent; rising; the last is 100
    #: (empty: the node's steps, for a canary that sets only its window or mirror)
    steps: tuple[float, ...]
    #: seconds of one analysis window (None: the node's settings say)
    interval: float | None = None
    #: compare mirrored answers (None: the node's settings say; False: no mirror)
    mirror: bool | None = None

    def settings(self, base: RolloutSettings) -> RolloutSettings:
        """``base`` (blue's or cluster.yml's settings) with this plan's steps, window and mirror;
        every other rule of the analysis (limits, ratios) stays ``base``'s."""
        update: dict[str, Any] = {}
        if self.steps:
            update["steps"] = [step / 100.0 for step in self.steps]
        if self.interval is not None:
            update["interval"] = self.interval
        if self.mirror is False:
            update["mirror"] = 0.0
        elif self.mirror is True and base.mirror == 0.0:
            update["mirror"] = RolloutSettings().mirror
        return base.model_copy(update=update)

    def to_wire(self) -> dict[str, Any]:
        """The plan as the admin request, the ledger entry and the log carry it."""
        wire: dict[str, Any] = {"strategy": self.strategy}
        if self.steps:
            wire["steps"] = [float(s) for s in self.steps]
        if self.interval is not None:
            wire["interval"] = float(self.interval)
        if self.mirror is not None:
            wire["mirror"] = self.mirror
        return wire

    def describe(self) -> str:
        """``canary 1% → 50% → 100%`` (for reasons and messages)."""
        shown = " → ".join(f"{step:g}%" for step in self.steps) or "at the node's steps"
        extra = f", {self.interval:g} s windows" if self.interval is not None else ""
        extra += {True: ", mirrored", False: ", no mirror", None: ""}[self.mirror]
        return f"{self.strategy} {shown}{extra}"


def _short(value: Any) -> str:
    """A value for an error message, cut short (a hostile peer's value may be huge)."""
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _listed(steps: Any) -> bool:
    return isinstance(steps, Sequence) and not isinstance(steps, str | bytes)


def _steps(strategy: str, steps: Any) -> tuple[float, ...]:
    if strategy == "blue_green":
        if steps is not None and not (_listed(steps) and list(steps) == [100]):
            raise RolloutError(
                f"blue_green moves all traffic at once; it takes no steps, not {_short(steps)}",
                hint="leave the steps out, or use canary with steps",
            )
        return (100.0,)
    if steps is None:
        return ()  # the node's steps (the plan sets the window or the mirror only)
    if not _listed(steps):
        raise RolloutError(
            f"steps should be a list of percentages, not {_short(steps)}", hint=STEPS_FIX
        )
    if not 1 <= len(steps) <= MAX_STEPS:
        raise RolloutError(
            f"a plan has 1 to {MAX_STEPS} steps, not {len(steps)}",
            hint="fewer, larger steps: 1,10,50,100",
        )
    shown = _short(list(steps))
    if not all(_number(s) for s in steps):
        raise RolloutError(f"steps {shown} are not all numbers", hint=STEPS_FIX)
    if not all(0 < s <= 100 for s in steps):  # NaN and infinities fail this too
        raise RolloutError(f"steps {shown} are not all in (0, 100]", hint=STEPS_FIX)
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise RolloutError(f"steps {shown} do not rise strictly", hint=STEPS_FIX)
    if steps[-1] != 100:
        raise RolloutError(
            f"steps {shown} end at {steps[-1]:g}%, not 100%: green would never take all traffic",
            hint=STEPS_FIX,
        )
    return tuple(float(s) for s in steps)


def make_plan(
    strategy: str,
    steps: Sequence[float] | None = None,
    interval: float | None = None,
    mirror: bool | None = None,
) -> RolloutPlan:
    """A checked plan, or a :class:`RolloutError` that says what is wrong and the fix."""
    if strategy not in STRATEGIES:
        raise RolloutError(
            f"unknown rollout strategy {_short(strategy)}", hint=f"one of {', '.join(STRATEGIES)}"
        )
    checked = _steps(strategy, steps)
    if interval is not None and not (_number(interval) and 0 < interval <= 3600):
        raise RolloutError(
            f"interval {_short(interval)} is not a number of seconds in (0, 3600]",
            hint="one analysis window, for example 2.0",
        )
    if mirror is not None and not isinstance(mirror, bool):
        raise RolloutError(
            f"mirror {_short(mirror)} is not true or false", hint="mirror=true or false"
        )
    return RolloutPlan(strategy, checked, None if interval is None else float(interval), mirror)


def read_plan(raw: Any) -> RolloutPlan:
    """A plan from its map (a request's, an entry's, the log's), checked whole."""
    if not isinstance(raw, Mapping):
        raise RolloutError(f"a plan is a map, not {type(raw).__name__}", hint=STEPS_FIX)
    unknown = sorted(_short(k) for k in raw if k not in KEYS)[:5]
    if unknown:
        raise RolloutError(
            f"a plan has no {', '.join(unknown)[:300]}", hint=f"its keys: {', '.join(sorted(KEYS))}"
        )
    strategy = raw.get("strategy")
    if not isinstance(strategy, str):
        raise RolloutError("a plan names its strategy", hint=f"one of {', '.join(STRATEGIES)}")
    return make_plan(strategy, raw.get("steps"), raw.get("interval"), raw.get("mirror"))


def parse_steps(text: str) -> list[float]:
    """``"1,10,50,100"`` (the CLI's ``--steps``) as numbers; checked by :func:`make_plan`."""
    try:
        return [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise RolloutError(
            f"--steps {_short(text)} is not a list of numbers", hint=STEPS_FIX
        ) from None
