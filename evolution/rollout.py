"""A node's rollout of one version as a pure state machine (Argo Rollouts / Flagger semantics).

:func:`advance` takes the rollout's state and one input (start, green ready or not, an
analysis window, or a human's promote/abort/pause/resume) and returns the new state and
the actions to perform: start green, set the weight, set the mirror share, promote,
abort, propose a rollback, record an event.  Nothing here touches the service or the
ledger: the Deployer (``actors/deployer.py``) performs the actions, in order, so every
decision is a function of the inputs and is tested without a process or a clock.

The walk (docs/rollouts.md):

- ``Start`` → ``starting``: green is started; ``Ready`` → ``stepping`` at step 1 (the first
  weight), with the mirror share set; ``NotReady`` → ``abandoned`` (blue keeps serving).
- In ``stepping`` each ``Tick`` brings a window, judged by
  :func:`evolution.rollout_analysis.analyse`: ``consecutive_success`` Successful windows
  in a row pass a step (the next weight, or promotion after the last); a Failed window
  beyond ``failure_limit`` aborts (all traffic to blue) and proposes a rollback of the head
  to its parent; Inconclusive windows are merged until ``inconclusive_limit`` in a row,
  then the rollout pauses for a human (Argo's Inconclusive).
- A human may ``Pause`` (windows are still judged and a failure still aborts; no step is
  passed), ``Resume``, ``Promote`` (at once) or ``Abort`` (all traffic to blue, no
  rollback proposal: a person's abort is not evidence against the version).
- ``immediate`` rollouts (returning to the version a committed rollback chose) promote as
  soon as green is ready: the swarm already decided.
- ``reload`` rollouts (a service whose manifest says ``reloadable = true``) swap the code in
  place instead (OTP's hot upgrade: the service drains old calls and migrates state), and
  are recorded as started then promoted; there is no second colour to compare.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, NamedTuple

from evolution.manifest import RolloutSettings
from evolution.rollout_analysis import (
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    Analysis,
    Figures,
    Observed,
    analyse,
    merge,
    observed,
)

Phase = Literal["idle", "starting", "stepping", "promoted", "aborted", "abandoned"]
#: phases in which a rollout runs (green exists or is starting)
ACTIVE: frozenset[str] = frozenset({"starting", "stepping"})
#: what a recorded step says happened (the ``phase`` of a ``rollout`` ledger entry)
STEPS = ("started", "weight", "analysis", "paused", "resumed", "promoted", "aborted", "abandoned")
#: recorded steps after which no rollout of that version runs any more
ENDED = frozenset({"promoted", "aborted", "abandoned"})


# ---- inputs ------------------------------------------------------------------------------


class Start(NamedTuple):
    """Roll ``version`` out over ``blue``; on Failed, propose rolling the head back to
    ``parent`` (None: propose nothing, e.g. a version deployed by hand that is not the head)."""

    version: str
    blue: str
    parent: str | None
    settings: RolloutSettings
    immediate: bool = False
    reason: str = ""
    reload: bool = False


class Ready(NamedTuple):
    """Green answered its readiness probe."""


class NotReady(NamedTuple):
    """Green did not become ready (the service stopped it; blue serves everything)."""

    reason: str


class Tick(NamedTuple):
    """An analysis window ended: its figures."""

    window: Figures


class Promote(NamedTuple):
    """A human promotes green now."""

    by: str = "by hand"


class Abort(NamedTuple):
    """All traffic back to blue now (a human, a head moved by rollback, a newer version)."""

    reason: str


class Pause(NamedTuple):
    """A human holds the rollout at its step."""


class Resume(NamedTuple):
    """A human lets a paused rollout go on."""


Input = Start | Ready | NotReady | Tick | Promote | Abort | Pause | Resume


# ---- actions -----------------------------------------------------------------------------


class StartGreen(NamedTuple):
    version: str
    ready_timeout: float


class ReloadInPlace(NamedTuple):
    """Hot reload: new calls run ``version``; calls in flight finish on the old code."""

    version: str


class SetWeight(NamedTuple):
    weight: float


class SetMirror(NamedTuple):
    share: float


class PromoteGreen(NamedTuple):
    pass


class AbortGreen(NamedTuple):
    pass


class ProposeRollback(NamedTuple):
    """Propose to the ledger that the head goes back to ``to`` (the rolled-out version's parent)."""

    version: str
    to: str
    reason: str


class Record(NamedTuple):
    """One step of the rollout, for the log (a ``rollout`` ledger entry of this node)."""

    version: str
    blue: str
    phase: str
    step: int
    weight: float
    result: str
    reason: str


Action = (
    StartGreen
    | ReloadInPlace
    | SetWeight
    | SetMirror
    | PromoteGreen
    | AbortGreen
    | ProposeRollback
    | Record
)


# ---- state -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """Where one genome's rollout on this node stands (``idle`` before the first)."""

    genome: str
    settings: RolloutSettings = RolloutSettings()
    version: str = ""
    blue: str = ""
    parent: str | None = None
    immediate: bool = False
    #: a hot reload in place, not blue/green (``Start.reload``)
    reload: bool = False
    phase: Phase = "idle"
    #: 1-based index into ``settings.steps`` (0 before the first weight is set)
    step: int = 0
    weight: float = 0.0
    paused: bool = False
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    #: Inconclusive windows merged, judged again with the next one
    pending: Observed | None = None
    last: Analysis | None = None
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE


class Outcome(NamedTuple):
    """The new state, the actions to perform in order, and why an input was refused."""

    state: RolloutState
    actions: tuple[Action, ...]
    refused: str | None = None


def advance(state: RolloutState, given: Input) -> Outcome:
    """The rollout's answer to one input (see the module docstring for the walk)."""
    match given:
        case Start():
            return _start(state, given)
        case Ready():
            return _ready(state)
        case NotReady(reason):
            if state.phase != "starting":
                return _refuse(state, "no green is starting")
            what = "the reload failed" if state.reload else "green never became ready"
            return _end(state, "abandoned", "", f"{what}: {reason}", ())
        case Tick(window):
            if state.phase != "stepping":
                return Outcome(state, ())  # a late window: nothing runs to judge
            return _judge(state, window)
        case Promote(by):
            if state.phase != "stepping":
                return _refuse(state, _not_running(state, "promoted"))
            text = f"promoted {by} at step {state.step} ({state.weight:.0%})"
            return _end(state, "promoted", "", text, (SetMirror(0.0), PromoteGreen()))
        case Abort(reason):
            if not state.active:
                return _refuse(state, _not_running(state, "aborted"))
            return _end(state, "aborted", "", reason, (AbortGreen(), SetMirror(0.0)))
        case Pause():
            if state.phase != "stepping" or state.paused:
                return _refuse(state, _not_running(state, "paused"))
            new = dataclasses.replace(state, paused=True, reason="paused by hand")
            return Outcome(new, (_record(new, "paused", ""),))
        case Resume():
            if state.phase != "stepping" or not state.paused:
                return _refuse(state, f"the rollout of {state.genome} is not paused")
            new = dataclasses.replace(state, paused=False, inconclusive=0, reason="resumed")
            return Outcome(new, (_record(new, "resumed", ""),))
    raise TypeError(f"not a rollout input: {given!r}")


def _start(state: RolloutState, given: Start) -> Outcome:
    if state.active:
        return _refuse(
            state, f"a rollout of {state.version[:12]} runs: abort it before starting another"
        )
    new = RolloutState(
        state.genome,
        settings=given.settings,
        version=given.version,
        blue=given.blue,
        parent=given.parent,
        immediate=given.immediate,
        phase="starting",
        reason=given.reason or "started",
    )
    if given.reload:  # the service answers Ready (reloaded) or NotReady (it could not)
        new = dataclasses.replace(new, reload=True)
        return Outcome(new, (_record(new, "started", ""), ReloadInPlace(given.version)))
    return Outcome(
        new,
        (_record(new, "started", ""), StartGreen(given.version, given.settings.ready_timeout)),
    )


def _ready(state: RolloutState) -> Outcome:
    if state.phase != "starting":
        return _refuse(state, "no green is starting")
    if state.reload:
        return _end(state, "promoted", "", "reloaded in place (a reloadable service)", ())
    if state.immediate:
        return _end(state, "promoted", "", "green ready; promoted at once", (PromoteGreen(),))
    weight = state.settings.steps[0]
    new = dataclasses.replace(state, phase="stepping", step=1, weight=weight, reason="green ready")
    actions = (SetMirror(state.settings.mirror), SetWeight(weight), _record(new, "weight", ""))
    return Outcome(new, actions)


def _judge(state: RolloutState, window: Figures) -> Outcome:
    """One window: merged with the Inconclusive ones before it, judged, acted on."""
    whole = merge(state.pending, window) if state.pending is not None else observed(window)
    verdict = analyse(whole, state.settings)
    settings = state.settings
    if verdict.result == FAILED:
        failures = state.failures + 1
        judged = dataclasses.replace(
            state, failures=failures, successes=0, inconclusive=0, pending=None, last=verdict
        )
        if failures > settings.failure_limit:
            rollback: tuple[Action, ...] = ()
            if state.parent is not None:
                rollback = (ProposeRollback(state.version, state.parent, verdict.reason),)
            return _end(
                judged, "aborted", FAILED, verdict.reason, (AbortGreen(), SetMirror(0.0)), rollback
            )
        text = f"{verdict.reason} (failure {failures}; {settings.failure_limit} tolerated)"
        judged = dataclasses.replace(judged, reason=text)
        return Outcome(judged, (_record(judged, "analysis", FAILED),))
    if verdict.result == INCONCLUSIVE:
        count = state.inconclusive + 1
        judged = dataclasses.replace(
            state, inconclusive=count, pending=whole, last=verdict, reason=verdict.reason
        )
        if state.paused:
            return Outcome(judged, ())  # no event per idle window while a human decides
        if count >= settings.inconclusive_limit:
            text = (
                f"{count} windows in a row inconclusive ({verdict.reason}): waiting for "
                "`tars rollout resume`, `promote` or `abort`"
            )
            judged = dataclasses.replace(judged, paused=True, reason=text)
            return Outcome(judged, (_record(judged, "paused", INCONCLUSIVE),))
        if count > 1:
            return Outcome(judged, ())  # merged into the run recorded at its first window
        return Outcome(judged, (_record(judged, "analysis", INCONCLUSIVE),))
    successes = state.successes + 1
    judged = dataclasses.replace(
        state,
        successes=successes,
        inconclusive=0,
        pending=None,
        last=verdict,
        reason=verdict.reason,
    )
    recorded: tuple[Action, ...] = (_record(judged, "analysis", SUCCESSFUL),)
    if state.paused or successes < settings.consecutive_success:
        return Outcome(judged, recorded)
    if state.step < len(settings.steps):
        weight = settings.steps[state.step]
        moved = dataclasses.replace(judged, step=state.step + 1, weight=weight, successes=0)
        return Outcome(moved, (*recorded, SetWeight(weight), _record(moved, "weight", "")))
    text = f"every step passed; promoted ({verdict.reason})"
    out = _end(judged, "promoted", SUCCESSFUL, text, (SetMirror(0.0), PromoteGreen()))
    return Outcome(out.state, (*recorded, *out.actions))


def _end(
    state: RolloutState,
    phase: Literal["promoted", "aborted", "abandoned"],
    result: str,
    reason: str,
    service: tuple[Action, ...],
    after: tuple[Action, ...] = (),
) -> Outcome:
    """A terminal step: the service's actions first, then the event, then (on Failed) the
    rollback proposal, which the ledger accepts only after the Failed event is committed."""
    weight = 1.0 if phase == "promoted" else 0.0
    new = dataclasses.replace(state, phase=phase, weight=weight, paused=False, reason=reason)
    return Outcome(new, (*service, _record(new, phase, result), *after))


def _record(state: RolloutState, phase: str, result: str) -> Record:
    return Record(state.version, state.blue, phase, state.step, state.weight, result, state.reason)


def _refuse(state: RolloutState, why: str) -> Outcome:
    return Outcome(state, (), why)


def _not_running(state: RolloutState, verb: str) -> str:
    if state.phase == "starting":
        return f"green of {state.genome} is still starting: it cannot be {verb} yet"
    if state.phase == "stepping" and state.paused and verb == "paused":
        return f"the rollout of {state.genome} is already paused"
    last = f" (the last one was {state.phase})" if state.phase != "idle" else ""
    return f"no rollout of {state.genome} runs on this node{last}"


def describe(state: RolloutState) -> dict[str, object]:
    """The state as `tars rollout status` shows it (plain values, for the admin channel)."""
    return {
        "genome": state.genome,
        "phase": state.phase,
        "version": state.version,
        "blue": state.blue,
        "step": state.step,
        "steps": len(state.settings.steps),
        "weight": state.weight,
        "paused": state.paused,
        "failures": state.failures,
        "last": state.last.result if state.last is not None else None,
        "reason": state.reason,
    }
