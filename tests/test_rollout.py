"""The rollout's pure state machine and its analysis (evolution/rollout.py, rollout_analysis.py).

Deterministic: windows are written by the test, no clock, no process.  The properties
(hypothesis) drive a stand-in for the service's routing from the actions alone, so they
say what the service would do, whatever the order of inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolution.errors import ManifestError
from evolution.manifest import RolloutSettings, parse_manifest
from evolution.rollout import (
    Abort,
    AbortGreen,
    Input,
    NotReady,
    Pause,
    Promote,
    PromoteGreen,
    ProposeRollback,
    Ready,
    Record,
    ReloadInPlace,
    Resume,
    RolloutState,
    SetMirror,
    SetWeight,
    Start,
    StartGreen,
    Tick,
    advance,
    describe,
)
from evolution.rollout_analysis import (
    Colour,
    Observed,
    analyse,
    call_text,
    merge,
)

DEFAULTS = RolloutSettings()


def window(
    green: int = 100,
    green_errors: int = 0,
    green_p99: float = 0.010,
    blue: int = 1000,
    blue_errors: int = 0,
    blue_p99: float = 0.010,
    mirrored: int = 10,
    mismatches: int = 0,
    examples: tuple[tuple[str, str, str], ...] = (),
) -> Observed:
    return Observed(
        Colour(blue, blue_errors, blue_p99 / 2, blue_p99),
        Colour(green, green_errors, green_p99 / 2, green_p99),
        mirrored,
        mismatches,
        examples,
        5.0,
    )


GOOD = window()
BAD = window(green_errors=30)
THIN = window(green=3)


def run(inputs: list[Input], state: RolloutState | None = None) -> tuple[RolloutState, list[Any]]:
    state = state or RolloutState("g")
    actions: list[Any] = []
    for item in inputs:
        out = advance(state, item)
        state = out.state
        actions.extend(out.actions)
    return state, actions


def start(parent: str | None = "v0", **changes: Any) -> Start:
    return Start("v1", "v0", parent, DEFAULTS.model_copy(update=changes))


def records(actions: list[Any]) -> list[tuple[str, str]]:
    return [(a.phase, a.result) for a in actions if isinstance(a, Record)]


# ---- analysis ----------------------------------------------------------------------------


def test_a_healthy_window_is_successful_and_says_why() -> None:
    verdict = analyse(GOOD, DEFAULTS)
    assert verdict.result == "Successful"
    assert "10 mirrored answers equal" in verdict.reason


def test_one_different_answer_fails_even_a_small_window_and_quotes_the_call() -> None:
    example = ("report", '{"lines": ["a", "b"], "top": 3}', "3 != 4")
    verdict = analyse(window(green=2, mirrored=40, mismatches=3, examples=(example,)), DEFAULTS)
    assert verdict.result == "Failed"
    assert verdict.reason == (
        'green answered differently on 3 of 40 mirrored requests: report(lines=["a", "b"], top=3) (3 != 4)'
    )


def test_mismatches_up_to_the_allowance_pass() -> None:
    loose = DEFAULTS.model_copy(update={"mismatches": 2})
    assert analyse(window(mismatches=2), loose).result == "Successful"
    assert analyse(window(mismatches=3), loose).result == "Failed"


def test_too_few_green_requests_is_inconclusive_in_words() -> None:
    verdict = analyse(window(green=12), DEFAULTS)
    assert verdict == ("Inconclusive", "green served 12 requests, fewer than the 20 needed")
    assert analyse(window(green=1), DEFAULTS).reason.startswith("green served 1 request,")


def test_an_idle_window_passes_unless_told_to_wait_for_traffic() -> None:
    idle = window(green=0, blue=0, mirrored=0)
    passed = analyse(idle, DEFAULTS)
    assert passed.result == "Successful" and "idle service" in passed.reason
    waiting = analyse(idle, RolloutSettings(idle_passes=False))
    assert waiting.result == "Inconclusive"
    # any caller at all makes it a real window: too thin to judge, never a pass
    assert analyse(window(green=0, blue=5, mirrored=0), DEFAULTS).result == "Inconclusive"


def test_error_rate_increase_over_the_limit_fails() -> None:
    assert analyse(window(green_errors=1), DEFAULTS).result == "Successful"  # 1 % = the limit
    verdict = analyse(window(green_errors=2), DEFAULTS)
    assert verdict.result == "Failed"
    assert "green failed 2 of 100 requests (2.0%)" in verdict.reason
    # blue failing as much is no regression of green's
    assert analyse(window(green_errors=20, blue_errors=200), DEFAULTS).result == "Successful"


def test_p99_over_the_ratio_fails_with_both_figures() -> None:
    verdict = analyse(window(green_p99=0.120, blue_p99=0.050), DEFAULTS)
    assert verdict == ("Failed", "green p99 0.120 s is 2.4x blue's 0.050 s (limit 1.5x)")
    assert analyse(window(green_p99=0.074, blue_p99=0.050), DEFAULTS).result == "Successful"


def test_sub_millisecond_latency_noise_never_fails() -> None:
    # 0.6 ms against 0.2 ms is 3x, but both are below the 5 ms floor
    assert analyse(window(green_p99=0.0006, blue_p99=0.0002), DEFAULTS).result == "Successful"
    assert analyse(window(green_p99=0.008, blue_p99=0.0002), DEFAULTS).result == "Failed"


def test_a_blue_without_traffic_is_compared_as_errorless_and_at_the_floor() -> None:
    assert analyse(window(blue=0, blue_p99=0.0, green_p99=0.007), DEFAULTS).result == "Successful"
    assert analyse(window(blue=0, blue_p99=0.0, green_p99=0.008), DEFAULTS).result == "Failed"
    assert analyse(window(blue=0, blue_p99=0.0, green_errors=5), DEFAULTS).result == "Failed"


def test_merged_windows_add_counts_and_weigh_percentiles() -> None:
    one, two = window(green=10, green_p99=0.010), window(green=30, green_p99=0.030)
    both = merge(one, two)
    assert both.green.requests == 40 and both.seconds == 10.0
    assert both.green.p99 == pytest.approx(0.025)
    assert analyse(both, DEFAULTS).result == "Failed"  # 0.025 s against blue's 0.010 s
    empty = window(green=0, blue=0, green_p99=0.0, blue_p99=0.0)
    assert merge(empty, empty).green == Colour(0, 0, 0.0, 0.0)


def test_call_text_copes_with_arguments_that_are_not_a_map() -> None:
    assert call_text("f", "[1, 2]") == "f([1, 2])"
    assert call_text("f", "not json") == "f(not json)"
    assert call_text("f", '{"x": "' + "y" * 100 + '"}').endswith("...)")


# ---- settings ----------------------------------------------------------------------------


MANIFEST = """
[genome]
name = "g"
sources = ["*.py"]
[commands]
test = "python -m unittest"
bench = "python bench.py"
[fitness]
metric = "seconds"
direction = "minimize"
"""


def test_settings_come_from_the_manifest_with_argo_like_defaults() -> None:
    assert parse_manifest(MANIFEST).rollout is None
    assert DEFAULTS.steps == [0.01, 0.10, 0.50, 1.0] and DEFAULTS.failure_limit == 0
    text = MANIFEST + "[rollout]\nsteps = [0.2, 1.0]\ninterval = 2\nfailure_limit = 1\n"
    chosen = parse_manifest(text).rollout
    assert chosen is not None and chosen.steps == [0.2, 1.0] and chosen.failure_limit == 1


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("steps = [0.5, 0.1]", "rollout.steps"),
        ("steps = [0.0, 1.0]", "rollout.steps.0"),
        ("max_p99_ratio = 0.5", "rollout.max_p99_ratio"),
        ("mirror = 2", "rollout.mirror"),
        ("failurelimit = 1", "rollout.failurelimit"),
    ],
)
def test_bad_rollout_settings_name_the_key(extra: str, key: str) -> None:
    with pytest.raises(ManifestError, match=f"key '{key}'"):
        parse_manifest(MANIFEST + "[rollout]\n" + extra + "\n")


def test_cluster_yml_has_a_rollout_section(tmp_path: Any) -> None:
    from evolution.errors import ConfigError
    from runtime.config import parse_cluster

    text = "nodes:\n  - {id: n1, port: 7001}\nrollout:\n  interval: 1.5\n  steps: [0.5, 1.0]\n"
    config = parse_cluster(text, tmp_path / "cluster.yml")
    assert config.model.rollout is not None and config.model.rollout.interval == 1.5
    with pytest.raises(ConfigError, match="rollout"):
        parse_cluster(text + "  min_request: 3\n", tmp_path / "cluster.yml")


# ---- the walk ----------------------------------------------------------------------------


def test_start_ready_steps_and_promote_with_an_event_for_each() -> None:
    state, actions = run([start(), Ready(), Tick(GOOD), Tick(GOOD), Tick(GOOD), Tick(GOOD)])
    assert state.phase == "promoted" and state.weight == 1.0
    assert [a for a in actions if not isinstance(a, Record)] == [
        StartGreen("v1", 30.0),
        SetMirror(0.1),
        SetWeight(0.01),
        SetWeight(0.10),
        SetWeight(0.50),
        SetWeight(1.0),
        SetMirror(0.0),
        PromoteGreen(),
    ]
    assert records(actions) == [
        ("started", ""),
        ("weight", ""),
        ("analysis", "Successful"),
        ("weight", ""),
        ("analysis", "Successful"),
        ("weight", ""),
        ("analysis", "Successful"),
        ("weight", ""),
        ("analysis", "Successful"),
        ("promoted", "Successful"),
    ]
    steps = [(a.step, a.weight) for a in actions if isinstance(a, Record) and a.phase == "weight"]
    assert steps == [(1, 0.01), (2, 0.10), (3, 0.50), (4, 1.0)]


def test_a_failed_window_aborts_records_failed_then_proposes_the_rollback() -> None:
    state, actions = run([start(), Ready(), Tick(GOOD), Tick(BAD)])
    assert state.phase == "aborted" and state.weight == 0.0 and state.last is not None
    tail = actions[-4:]
    assert tail[:2] == [AbortGreen(), SetMirror(0.0)]
    assert isinstance(tail[2], Record) and (tail[2].phase, tail[2].result) == ("aborted", "Failed")
    assert tail[3] == ProposeRollback("v1", "v0", state.last.reason)
    assert "green failed 30 of 100" in tail[3].reason


def test_a_version_deployed_by_hand_aborts_without_a_rollback_proposal() -> None:
    _, actions = run([start(parent=None), Ready(), Tick(BAD)])
    assert AbortGreen() in actions
    assert not any(isinstance(a, ProposeRollback) for a in actions)


def test_failure_limit_tolerates_that_many_failed_windows_over_the_rollout() -> None:
    state, actions = run([start(failure_limit=1), Ready(), Tick(BAD), Tick(GOOD)])
    assert state.phase == "stepping" and state.failures == 1 and state.step == 2
    assert ("analysis", "Failed") in records(actions)
    state, actions = run([Tick(BAD)], state)  # the second failure, even after a success
    assert state.phase == "aborted" and isinstance(actions[-1], ProposeRollback)


def test_consecutive_success_needs_that_many_in_a_row() -> None:
    state, _ = run([start(consecutive_success=2), Ready(), Tick(GOOD)])
    assert state.step == 1
    state, _ = run([Tick(window(green_errors=5))], state)
    assert state.phase == "aborted"  # (a failure breaks the run of successes, and aborts)
    state, _ = run([start(consecutive_success=2), Ready(), Tick(GOOD), Tick(THIN)])
    assert (
        state.step == 1 and state.successes == 1
    )  # an inconclusive window neither counts nor breaks
    state, _ = run([Tick(GOOD)], state)
    assert state.step == 2 and state.successes == 0


def test_inconclusive_windows_merge_until_there_is_enough_traffic() -> None:
    state, actions = run([start(), Ready(), Tick(window(green=8)), Tick(window(green=8))])
    assert state.step == 1 and state.inconclusive == 2 and state.pending is not None
    # the first of a run is recorded; the next are merged into it, not one event each
    assert records(actions)[-2:] == [("weight", ""), ("analysis", "Inconclusive")]
    state, actions = run([Tick(window(green=8))], state)  # 24 requests in all: judged
    assert state.step == 2 and state.pending is None
    assert records(actions)[:1] == [("analysis", "Successful")]


def test_a_failure_hidden_in_small_windows_is_found_once_they_are_merged() -> None:
    bad_small = window(green=10, green_errors=3)
    state, actions = run([start(), Ready(), Tick(bad_small), Tick(bad_small)])
    assert state.phase == "aborted" and isinstance(actions[-1], ProposeRollback)


def test_too_many_inconclusive_windows_pause_for_a_human_then_idle_quietly() -> None:
    state, actions = run([start(inconclusive_limit=3), Ready(), *[Tick(window(green=0))] * 3])
    assert state.paused and state.step == 1
    assert records(actions)[-1] == ("paused", "Inconclusive")
    assert "3 windows in a row inconclusive" in state.reason
    quiet, more = run([Tick(window(green=0))] * 5, state)
    assert more == [] and quiet.paused
    resumed, actions = run([Resume(), Tick(GOOD)], quiet)
    assert records(actions) == [("resumed", ""), ("analysis", "Successful"), ("weight", "")]
    assert not resumed.paused and resumed.step == 2


def test_paused_by_hand_holds_the_step_but_still_aborts_on_failure() -> None:
    state, actions = run([start(), Ready(), Pause(), Tick(GOOD), Tick(GOOD)])
    assert state.paused and state.step == 1
    assert records(actions)[2:] == [
        ("paused", ""),
        ("analysis", "Successful"),
        ("analysis", "Successful"),
    ]
    state, actions = run([Tick(BAD)], state)
    assert state.phase == "aborted" and isinstance(actions[-1], ProposeRollback)


def test_a_human_promotes_or_aborts_at_any_step() -> None:
    state, actions = run([start(), Ready(), Promote()])
    assert state.phase == "promoted" and actions[-3:-1] == [SetMirror(0.0), PromoteGreen()]
    assert state.reason == "promoted by hand at step 1 (1%)"
    state, actions = run([start(), Ready(), Tick(GOOD), Abort("aborted by hand")])
    assert state.phase == "aborted" and state.weight == 0.0
    assert actions[-3:-1] == [AbortGreen(), SetMirror(0.0)]
    assert records(actions)[-1] == ("aborted", "")  # a human's abort is no Failed analysis
    assert not any(isinstance(a, ProposeRollback) for a in actions)


def test_a_green_that_never_becomes_ready_is_abandoned() -> None:
    state, actions = run([start(), NotReady("no answer within 30 s")])
    assert state.phase == "abandoned" and state.weight == 0.0
    assert records(actions)[-1] == ("abandoned", "")
    assert state.reason == "green never became ready: no answer within 30 s"
    assert not any(isinstance(a, SetWeight | PromoteGreen) for a in actions)


def test_an_immediate_rollout_promotes_as_soon_as_green_is_ready() -> None:
    given = Start("v0", "v1", None, DEFAULTS, immediate=True, reason="rolled back")
    state, actions = run([given, Ready()])
    assert state.phase == "promoted"
    assert [a for a in actions if not isinstance(a, Record)] == [
        StartGreen("v0", 30.0),
        PromoteGreen(),
    ]


@pytest.mark.parametrize(
    ("inputs", "refusal"),
    [
        ([Promote()], "no rollout of g runs on this node"),
        ([Abort("x")], "no rollout of g runs on this node"),
        ([Pause()], "no rollout of g runs"),
        ([Resume()], "is not paused"),
        ([Ready()], "no green is starting"),
        ([NotReady("x")], "no green is starting"),
        ([start(), Promote()], "still starting"),
        ([start(), Pause()], "still starting"),
        ([start(), start()], "abort it before starting another"),
        ([start(), Ready(), Pause(), Pause()], "already paused"),
        ([start(), Ready(), Resume()], "is not paused"),
        ([start(), Ready(), Promote(), Promote()], "the last one was promoted"),
        ([start(), Ready(), Promote(), Abort("x")], "the last one was promoted"),
    ],
)
def test_inputs_that_make_no_sense_now_are_refused_and_change_nothing(
    inputs: list[Input], refusal: str
) -> None:
    state, _ = run(inputs[:-1])
    out = advance(state, inputs[-1])
    assert out.refused is not None and refusal in out.refused
    assert out.state == state and out.actions == ()


def test_a_late_window_after_the_end_changes_nothing() -> None:
    state, _ = run([start(), Ready(), Tick(BAD)])
    assert advance(state, Tick(BAD)) == (state, (), None)
    assert advance(RolloutState("g"), Tick(GOOD)).actions == ()


def test_a_new_rollout_may_start_after_one_ended() -> None:
    state, _ = run([start(), Ready(), Tick(BAD)])
    state, actions = run([Start("v2", "v0", "v1", DEFAULTS)], state)
    assert state.phase == "starting" and state.failures == 0 and state.version == "v2"
    assert describe(state)["phase"] == "starting"


# ---- properties --------------------------------------------------------------------------

WINDOWS = st.sampled_from([GOOD, BAD, THIN, window(mismatches=1), window(green_p99=1.0)])
INPUTS: st.SearchStrategy[Input] = st.one_of(
    st.builds(Tick, WINDOWS),
    st.just(Ready()),
    st.just(NotReady("timeout")),
    st.just(Promote()),
    st.just(Abort("by hand")),
    st.just(Pause()),
    st.just(Resume()),
)
SETTINGS = st.builds(
    RolloutSettings,
    failure_limit=st.integers(0, 2),
    consecutive_success=st.integers(1, 3),
    inconclusive_limit=st.integers(1, 4),
)


class Routing:
    """What the service would route, driven only by the actions."""

    def __init__(self) -> None:
        self.green: str | None = None
        self.weight = 0.0

    def do(self, action: Any) -> None:
        match action:
            case StartGreen(version, _):
                self.green, self.weight = version, 0.0
            case SetWeight(weight):
                assert self.green is not None, "a weight set with no green"
                self.weight = weight
            case PromoteGreen() | AbortGreen():
                self.green, self.weight = None, 0.0


@settings(max_examples=300, deadline=None)
@given(SETTINGS, st.lists(INPUTS, max_size=25))
def test_no_input_sequence_leaves_traffic_on_green_after_an_abort(
    chosen: RolloutSettings, inputs: list[Input]
) -> None:
    state = advance(RolloutState("g"), Start("v1", "v0", "v0", chosen)).state
    routing = Routing()
    routing.do(StartGreen("v1", 1.0))
    aborted = False
    for item in inputs:
        out = advance(state, item)
        for action in out.actions:
            routing.do(action)
        if isinstance(item, NotReady) and out.refused is None:
            routing.do(AbortGreen())  # the service stopped the green that never got ready
        state = out.state
        aborted = aborted or state.phase in ("aborted", "abandoned")
        assert state.weight == routing.weight or state.phase == "promoted"
        if aborted:
            assert routing.weight == 0.0 and routing.green is None
            assert state.weight == 0.0 and state.phase in ("aborted", "abandoned")


@settings(max_examples=300, deadline=None)
@given(SETTINGS, st.lists(INPUTS, max_size=25))
def test_a_failed_analysis_always_ends_in_abort_and_a_rollback_proposal(
    chosen: RolloutSettings, inputs: list[Input]
) -> None:
    """With failure_limit 0 every Failed window of a running rollout aborts and proposes the
    rollback, in that order; with more, the limit's next failure does; nothing else proposes one."""
    state, _ = run([Start("v1", "v0", "v0", chosen), Ready()])
    for item in inputs:
        before = state
        out = advance(state, item)
        state = out.state
        proposals = [a for a in out.actions if isinstance(a, ProposeRollback)]
        failed = (
            isinstance(item, Tick)
            and before.phase == "stepping"
            and out.state.last is not None
            and out.state.last.result == "Failed"
            and out.state.failures == before.failures + 1
        )
        if failed and out.state.failures > chosen.failure_limit:
            kinds = [type(a) for a in out.actions]
            assert kinds.index(AbortGreen) < kinds.index(Record) < kinds.index(ProposeRollback)
            assert proposals == [ProposeRollback("v1", "v0", out.state.last.reason)]  # type: ignore[union-attr]
            assert state.phase == "aborted"
        else:
            assert proposals == []


@settings(max_examples=200, deadline=None)
@given(st.lists(INPUTS, max_size=30))
def test_every_state_change_is_recorded_and_weights_only_rise(inputs: list[Input]) -> None:
    state, _ = run([start(), Ready()])
    weights = [state.weight]
    for item in inputs:
        out = advance(state, item)
        changed = (out.state.phase, out.state.step, out.state.paused) != (
            state.phase,
            state.step,
            state.paused,
        )
        if changed:
            assert any(isinstance(a, Record) for a in out.actions)
        state = out.state
        if state.phase == "stepping":
            assert state.weight >= weights[-1]
            weights.append(state.weight)


def test_a_reloadable_service_is_reloaded_in_place_and_recorded() -> None:
    given = Start("v1", "v0", "v0", DEFAULTS, reason="adopted", reload=True)
    state, actions = run([given])
    assert state.phase == "starting" and actions[1:] == [ReloadInPlace("v1")]
    done, more = run([Ready()], state)
    assert done.phase == "promoted" and records(more) == [("promoted", "")]
    assert not any(isinstance(a, PromoteGreen | SetWeight) for a in more)
    failed, _ = run([NotReady("code_change raised")], state)
    assert failed.phase == "abandoned" and failed.reason == "the reload failed: code_change raised"
