"""A deploy's own rollout plan (issue 13): `tars evolve deploy --steps`, the admin ``deploy``
op and a script's ``deploy canary(steps=[...])`` on three real swarm nodes (ZeroMQ, Raft,
SQLite, each with the recording service of ``test_deployer``), and the plan's checks where
it crosses a boundary: the pure check, the ledger's decoder (a hostile peer's entry), the
admin op, the CLI and the script.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from swarmkit import candidate, in_process_swarm, wait
from test_deployer import DOC, TINY, Recording, Rig
from test_ledger import BASE, MEMBERS, adoption, edit
from test_rollout_ledger import KEYS, SIGNERS

from consensus import entries as E
from consensus import ledger as L
from consensus.signing import sign
from events.records import CandidateRecord
from events.store import GenomeStore
from evolution.errors import ConsensusError, RolloutError
from evolution.manifest import RolloutSettings
from evolution.rollout_plan import MAX_STEPS, make_plan, parse_steps, read_plan
from evolution.tree import version_id

ROOT = Path(__file__).resolve().parent.parent
PLAN = {"strategy": "canary", "steps": [1.0, 50.0, 100.0]}


# ---- the pure check ----------------------------------------------------------------------


def test_a_plan_is_checked_whole_and_says_the_fix() -> None:
    plan = make_plan("canary", [1, 50, 100], interval=0.5, mirror=False)
    assert plan.to_wire() == {**PLAN, "interval": 0.5, "mirror": False}
    assert read_plan(plan.to_wire()) == plan
    applied = plan.settings(RolloutSettings(failure_limit=2))
    assert (applied.steps, applied.interval, applied.mirror) == ([0.01, 0.5, 1.0], 0.5, 0.0)
    assert applied.failure_limit == 2  # the analysis's other rules stay the node's
    assert make_plan("blue_green").steps == (100.0,)
    windows = make_plan("canary", interval=9.0)  # no steps: the node's, with this window
    assert windows.to_wire() == {"strategy": "canary", "interval": 9.0}
    assert windows.settings(RolloutSettings()).steps == RolloutSettings().steps
    assert windows.describe() == "canary at the node's steps, 9 s windows"
    assert plan.describe() == "canary 1% → 50% → 100%, 0.5 s windows, no mirror"
    assert parse_steps("1, 10,50,100") == [1.0, 10.0, 50.0, 100.0]
    wrong = {
        "do not rise strictly": ("canary", [50, 10, 100]),
        "end at 50%": ("canary", [1, 50]),
        "not all in (0, 100]": ("canary", [0, 100]),
        "not all numbers": ("canary", [True, 100]),
        f"1 to {MAX_STEPS} steps": ("canary", list(range(1, 30)) + [100]),
        "takes no steps": ("blue_green", [1, 100]),
        "unknown rollout strategy": ("rolling", [100]),
    }
    for words, (strategy, steps) in wrong.items():
        with pytest.raises(
            RolloutError, match=words.replace("(", r"\(").replace("]", r"\]")
        ) as exc:
            make_plan(strategy, steps)
        assert exc.value.hint, words
    with pytest.raises(RolloutError, match="has no 'evil'"):
        read_plan({**PLAN, "evil": 1})
    with pytest.raises(RolloutError, match="not a list of numbers"):
        parse_steps("1,ten,100")


ANY = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=25) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"strategy": st.sampled_from(["canary", "blue_green", "x"]) | ANY},
        optional={
            "steps": st.lists(st.floats() | st.integers(), max_size=25) | ANY,
            "interval": ANY,
            "mirror": ANY,
        },
    )  # fmt: skip
)
def test_any_plan_is_refused_with_a_rollout_error_or_holds_every_rule(raw: dict[str, Any]) -> None:
    try:
        plan = read_plan(raw)
    except RolloutError as exc:
        assert exc.hint and len(exc.message) < 400
        return
    steps = plan.steps or (100.0,)  # none: the node's own (checked when they were read)
    assert 1 <= len(steps) <= MAX_STEPS and steps[-1] == 100.0 and steps[0] > 0
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False))
    assert all(math.isfinite(s) for s in steps)


# ---- the ledger: the plan in the replicated entry, a hostile peer's refused --------------


def _three() -> list[L.LedgerState]:
    return [L.LedgerState(GenomeStore.open("memory://"), MEMBERS, keys=KEYS) for _ in range(3)]


def _commit(states: list[L.LedgerState], *entries: bytes) -> list[list[L.Applied]]:
    first = states[0].applied_index + 1
    return [state.apply_batch(list(enumerate(entries, first))) for state in states]


def _step(phase: str, plan: Any, at: float, node: str = "node-2") -> bytes:
    """A rollout step of ``node``'s, signed by it, with any ``plan`` a forger may write."""
    body = msgpack.unpackb(
        E.rollout_entry("g", node, "v1", version_id(BASE), phase, 1, 0.01, "", phase, at),
        raw=False,
    )
    if plan != {}:
        body["plan"] = plan
    return sign(msgpack.packb(body, use_bin_type=True), SIGNERS[node])


def test_the_plan_travels_in_the_started_entry_and_bad_plans_are_refused_everywhere() -> None:
    states = _three()
    child = edit(BASE, "return 1", "return 10")
    win = adoption(BASE, child)
    pid = L.proposal_id("g", "node-1", 1, win.version)
    _commit(
        states,
        L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0, signer=SIGNERS["node-1"]),
        L.cycle_entry("g", "node-1", 1, 7, [], [], win, 1001.0, signer=SIGNERS["node-1"]),
        L.vote_entry("g", pid, win.version, "node-2", True, "ok", 1002.0, signer=SIGNERS["node-2"]),
    )  # fmt: skip
    good = _step("started", PLAN, 2000.0)
    assert E.decode(good).plan == PLAN  # type: ignore[union-attr]
    bad = {
        "steps [50.0, 10.0, 100.0] do not rise strictly": {**PLAN, "steps": [50.0, 10.0, 100.0]},
        "end at 50%": {**PLAN, "steps": [1.0, 50.0]},
        "1 to 20 steps": {**PLAN, "steps": [float(i) for i in range(1, 101)]},
        "a plan has no 'failure_limit'": {**PLAN, "failure_limit": 99},
        "field 'plan' should be a map": 7,
        "only on a started step": PLAN,
    }
    forged = [
        _step("weight" if words.startswith("only") else "started", plan, 2001.0 + i)
        for i, (words, plan) in enumerate(bad.items())
    ]
    for words, data in zip(bad, forged, strict=True):
        with pytest.raises(ConsensusError, match=words.replace("[", r"\[").replace("]", r"\]")):
            E.decode(data)
        assert E.fast_decode(data) is None  # the fast path defers to the one that names it
    runs = _commit(states, *forged, good, _step("weight", {}, 2100.0))
    for state, run in zip(states, runs, strict=True):
        assert [a.written for a in run] == [False] * len(forged) + [True, True]
        assert state.rejected_entries == len(forged) and state.refused_signatures == 0
        rows = [e for e in state.store.log(genome="g") if e.type == "RolloutStepped"]
        assert [(e.data["phase"], e.data.get("plan")) for e in rows] == [
            ("started", PLAN),
            ("weight", None),  # stored without the field: an entry without a plan, as before
        ]
        # the lineage keeps the plan on the rollout's later steps (a restart reads it there)
        lineage = state.store.load("g")
        assert L.rollouts_of(lineage)["node-2"]["plan"] == PLAN
    assert len({s.store.chain("g") for s in states}) == 1


@settings(max_examples=150, deadline=None)
@given(ANY)
def test_a_peers_plan_of_any_shape_is_a_consensus_error_or_a_good_plan(plan: Any) -> None:
    """Whatever a hostile peer puts in ``plan``, decoding it never raises anything else."""
    data = _step("started", plan, 1.0, "node-1")
    try:
        entry = E.decode(data)
    except ConsensusError:
        return
    assert isinstance(entry, E.Rollout)
    if entry.plan:
        read_plan(entry.plan)  # what decodes is a good plan


# ---- on three nodes ----------------------------------------------------------------------


@pytest.fixture(name="rig")
def rig_fixture(tmp_path: Path) -> Iterator[Rig]:
    """Three nodes with their recording services and Deployers (as in test_deployer)."""
    with in_process_swarm(tmp_path, TINY) as nodes:
        made = Rig(nodes)
        try:
            yield made
        finally:
            made.close()


def weights(rig: Rig, node: Any, author: str) -> tuple[dict[str, Any] | None, list[float]]:
    """The plan of ``author``'s last started rollout in ``node``'s log, and its weights."""
    events = [
        e for e in node.store.log(genome="tiny") if e.type == "RolloutStepped" and e.node == author
    ]
    starts = [i for i, e in enumerate(events) if e.data["phase"] == "started"]
    if not starts:
        return None, []
    after = events[starts[-1] :]
    return after[0].data.get("plan"), [
        e.data["weight"] for e in after if e.data["phase"] == "weight"
    ]


def test_a_deploy_with_its_own_steps_runs_them_on_every_node(rig: Rig) -> None:
    version = rig.adopt()
    rig.at_first_step(version)  # the adoption's own rollout: cluster.yml's four steps
    wait(
        lambda: all(weights(rig, n, n.id) == (None, [0.01]) for n in rig.nodes),
        what="every node's own rollout at its first step in the log, with no plan",
    )
    for node in rig.nodes:
        refused = node.admin.handle(
            "admin", {"op": "deploy", "genome": "tiny", "version": version,
                      "plan": {**PLAN, "steps": [50, 10]}},
        )  # fmt: skip
        assert not refused["ok"] and "do not rise strictly" in refused["error"]
        reply = node.admin.handle(
            "admin", {"op": "deploy", "genome": "tiny", "version": version, "plan": PLAN}
        )
        assert reply["ok"] and reply["plan"] == PLAN
    wait(
        lambda: all([c[0] for c in s.calls].count("start_green") == 2 and s.weight == 0.01
                    for s in rig.services.values()),
        what="the planned rollout at its first step everywhere",
    )  # fmt: skip
    for _ in range(3):
        rig.tick()
    for node_id, service in rig.services.items():
        assert service.blue == version and service.green is None, node_id
        assert [c[1] for c in service.calls if c[0] == "set_weight"] == [0.01, 0.01, 0.5, 1.0]
    wait(
        lambda: all(weights(rig, n, a)[1] == [0.01, 0.5, 1.0] for n in rig.nodes for a in rig.services),
        what="every node's steps in every node's log",
    )  # fmt: skip
    for node in rig.nodes:
        for author in rig.services:
            plan, seen = weights(rig, node, author)
            assert plan == PLAN and seen == [0.01, 0.5, 1.0]
        phases = [s[1] for s in rig.steps(node, node.id)]
        assert phases[-2:] == ["analysis", "promoted"] and "aborted" in phases  # superseded
        assert node.status()["counters"]["refused_signatures"] == 0
    board = rig.deployers[rig.nodes[0].id].current()["tiny"]
    assert (board["phase"], board["steps"]) == ("promoted", 3)


def test_a_restart_mid_planned_rollout_starts_it_again_with_the_logged_plan(rig: Rig) -> None:
    node = rig.nodes[0]
    version = rig.adopt()
    rig.at_first_step(version)
    plan = {"strategy": "canary", "steps": [5.0, 100.0]}
    reply = node.admin.handle(
        "admin", {"op": "deploy", "genome": "tiny", "version": version, "plan": plan}
    )
    assert reply["ok"]
    wait(lambda: rig.services[node.id].weight == 0.05, what="the planned first step")
    wait(lambda: weights(rig, node, node.id)[1] == [0.05], what="its step in the log")
    rig.deployers[node.id].stop()  # the node dies at the plan's first step
    rig.deployers[node.id].join(10)
    fresh = Recording(rig.base)
    rig.services[node.id] = fresh
    rig.attach(node, fresh)
    wait(lambda: fresh.weight == 0.05, what="the planned rollout started again")
    wait(
        lambda: (
            [s[1] for s in rig.steps(node, node.id)].count("started") == 3
            and weights(rig, node, node.id)[1] == [0.05]
        ),
        what="the new first step recorded",
    )
    assert weights(rig, node, node.id)[0] == plan  # its new started step carries the plan
    assert "the node stopped during the rollout" in rig.steps(node, node.id)[-3][3]
    rig.tick(node.id)
    assert fresh.weight == 1.0  # the plan's second step, not cluster.yml's 10 %


def test_a_manual_start_leaves_blue_serving_until_a_deploy_asks(tmp_path: Path) -> None:
    """`start = "manual"`: an adoption moves the head but no node rolls it out, nor after a
    restart; the deploy's own plan is the first rollout; a rollback is never held."""
    manual = RolloutSettings(interval=5.0, start="manual")
    with in_process_swarm(tmp_path, TINY) as nodes:
        rig = Rig(nodes, defaults=manual)
        try:
            version = rig.adopt()
            rig.tick()
            node = rig.nodes[0]
            rig.deployers[node.id].stop()  # a restart finds the head unserved: still held
            rig.deployers[node.id].join(10)
            rig.attach(node, rig.services[node.id])
            rig.tick()
            assert all(s.calls == [] and s.blue == rig.base for s in rig.services.values())
            assert all(weights(rig, n, n.id) == (None, []) for n in rig.nodes)
            for n in rig.nodes:
                reply = n.admin.handle(
                    "admin", {"op": "deploy", "genome": "tiny", "version": version, "plan": PLAN}
                )
                assert reply["ok"], reply
            wait(
                lambda: all(s.weight == 0.01 for s in rig.services.values()),
                what="the deploy's first step everywhere",
            )
            for _ in range(3):
                rig.tick()
            wait(
                lambda: all(weights(rig, n, n.id) == (PLAN, [0.01, 0.5, 1.0]) for n in rig.nodes),
                what="only the deploy's steps in the log",
            )
            assert all(s.blue == version for s in rig.services.values())
            # a rollback back to the base is rolled out at once, manual or not
            leader = next(n for n in rig.nodes if n.engine.leader() == n.id)
            reply = leader.admin.handle(
                "admin", {"op": "rollback", "genome": "tiny", "to": rig.base}
            )
            assert reply["ok"], reply
            wait(
                lambda: all(s.blue == rig.base for s in rig.services.values()),
                what="the rollback served everywhere",
            )
        finally:
            rig.close()


def test_a_peers_entry_with_bad_steps_is_refused_and_no_node_runs_it(rig: Rig) -> None:
    """A member (its own valid key) commits a started step with garbage steps: every node
    skips it alike, and no node's Deployer or store ever sees the plan."""
    hostile = rig.nodes[1]
    version = rig.adopt()
    before = [n.status()["counters"]["skipped_entries"] for n in rig.nodes]
    garbage = E.rollout_entry(
        "tiny", hostile.id, version, rig.base, "started", 0, 0.0, "", "evil", 5.0,
        plan={"strategy": "canary", "steps": [100.0, 0.0, float("nan")]},
    )  # fmt: skip
    hostile.applier.propose(garbage)
    wait(
        lambda: all(
            n.status()["counters"]["skipped_entries"] == b + 1 for n, b in zip(rig.nodes, before, strict=True)
        ),
        what="the entry skipped on every node",
    )  # fmt: skip
    for node in rig.nodes:
        assert all(s[3] != "evil" for s in rig.steps(node))
        assert node.engine.leader() is not None  # nothing crashed
    wait(lambda: len({n.store.chain("tiny") for n in rig.nodes}) == 1, what="one chain")


def test_tars_evolve_deploy_steps_reaches_the_same_path(rig: Rig) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    config = str(rig.nodes[0].cluster.path)
    runner = CliRunner()
    version = rig.adopt()
    rig.at_first_step(version)
    base = ["evolve", "deploy", "-g", "tiny", "--version", version[:12], "-c", config]
    bad = runner.invoke(app, [*base, "--steps", "50,10,100"])
    assert bad.exit_code != 0 and "do not rise strictly" in bad.output
    assert all(s.calls[-1] == ("set_weight", 0.01) for s in rig.services.values())  # untouched
    done = runner.invoke(app, [*base, "--steps", "1,50,100", "--interval", "5"])
    assert done.exit_code == 0, done.output
    assert done.output.count("(canary 1% → 50% → 100%, 5 s windows)") == 3
    want = {**PLAN, "interval": 5.0}
    wait(
        lambda: all(weights(rig, n, a)[0] == want for n in rig.nodes for a in rig.services),
        what="every node's planned start in every log",
    )
    plain = runner.invoke(app, [*base, "--node", rig.nodes[0].id])  # no plan: the settings'
    assert plain.exit_code == 0, plain.output
    node = rig.nodes[0]
    wait(lambda: weights(rig, node, node.id) == (None, [0.01]), what="the plain deploy's start")
    rig.tick(node.id)
    assert rig.services[node.id].weight == 0.1  # cluster.yml's second step again


# ---- a script on the swarm ---------------------------------------------------------------


def _cycle_with_winner(rig: Rig) -> str:
    """A cycle whose one candidate won, proposed by the leader and voted for by a peer."""
    child, win = candidate(rig.tree, DOC, '"""Count the common words."""')
    record = CandidateRecord(
        candidate="c1", parent=rig.base, patch=win.patch, mutator="test", kind="test",
        verdict="adopt", reasons=["faster"], ratio=2.0, low=1.8, high=2.2, tests_passed=True,
    )  # fmt: skip
    rig.leader.propose(L.cycle_entry("tiny", rig.leader.id, 1, 3, [record], [], win, 2.0))
    (pid,) = rig.leader.store.head("tiny").proposals
    voter = next(n for n in rig.nodes if n is not rig.leader)
    voter.propose(L.vote_entry("tiny", pid, win.version, voter.id, True, "ok", 3.0))
    return win.version


SCRIPT = """genome tiny from "{tiny}/genome.toml"
evolve tiny {{
  cycles = 1
  on verdict(v: Verdict) {{
    let steps = {steps}
    if v.accepted {{ deploy canary(steps=steps) }}
  }}
}}
"""


def _run_script(rig: Rig, tmp_path: Path, steps: str) -> tuple[int, str, str, str]:
    """`tars run --config` follows the swarm (a real process); a winning cycle is committed
    once it reads the log; its code, output and the adopted version."""
    path = tmp_path / f"deploy{len(steps)}.tars"
    path.write_text(SCRIPT.format(tiny=TINY, steps=steps), encoding="utf-8")
    asked = threading.Event()  # set once a read is done: the cycle comes after where it starts
    for node in rig.nodes:
        read = node.admin.ops["log"]
        node.admin.ops["log"] = lambda body, read=read: (read(body), asked.set())[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", str(path), "--config",
         str(rig.nodes[0].cluster.path), "--wait", "120"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert asked.wait(60), "the script never read the swarm's log"
        version = _cycle_with_winner(rig)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    return process.returncode, out, err, version


def test_a_script_on_the_swarm_deploys_with_its_own_steps(rig: Rig, tmp_path: Path) -> None:
    code, out, err, version = _run_script(rig, tmp_path, "[1, 50, 100]")
    assert code == 0, out + err
    assert out.count(f"rolling tiny {version[:12]} out by canary 1% → 50% → 100%") == 3, out
    wait(
        lambda: all(weights(rig, n, a)[0] == PLAN for n in rig.nodes for a in rig.services),
        what="every node's planned start in every log",
    )
    for _ in range(3):
        rig.tick()
    for node in rig.nodes:  # read back from the log: the script's steps, on every node
        for author in rig.services:
            wait(lambda n=node, a=author: weights(rig, n, a)[1] == [0.01, 0.5, 1.0], what=author)
    assert all(s.blue == version for s in rig.services.values())


def test_a_scripts_plan_that_does_not_hold_is_an_error_at_its_deploy(
    rig: Rig, tmp_path: Path
) -> None:
    code, out, err, version = _run_script(rig, tmp_path, "[50, 10]")
    assert code == 1, out + err
    assert ":6:21: error: deploy canary: steps [50, 10] do not rise strictly" in err, err
    assert "fix: give shares of traffic in percent" in err, err
    assert "rolling tiny" not in out
    rig.at_first_step(version)  # nothing was asked of any node: the adoption's own rollout runs
    wait(
        lambda: all(weights(rig, n, n.id) == (None, [0.01]) for n in rig.nodes),
        what="every node's own rollout at its first step, with no plan",
    )
    assert all([c[0] for c in s.calls].count("start_green") == 1 for s in rig.services.values())


def test_blue_green_moves_all_traffic_at_once_then_judges_one_window() -> None:
    """The Deployer's handlers called directly (as test_deployer's ``deployer_on`` does):
    ``blue_green`` is one step of 100 %, its plan in the started entry, then promotion."""
    from test_deployer import MANIFEST, deployer_on

    from actors.messages import DeployVersion, RolloutTick

    deployer, service, proposed, version = deployer_on(MANIFEST, MANIFEST)
    deployer.on_deploy(DeployVersion("g", version, make_plan("blue_green")))
    assert service.calls == [("start_green", version), ("set_mirror", 0.1), ("set_weight", 1.0)]
    started = E.decode(proposed[0])
    assert isinstance(started, E.Rollout) and started.phase == "started"
    assert started.plan == {"strategy": "blue_green", "steps": [100.0]}
    assert "(blue_green 100%)" in started.reason
    deployer.clock = lambda: 10.0  # one window later
    deployer.on_tick(RolloutTick())
    assert service.calls[-1] == ("promote",) and service.blue == version
    steps = [E.decode(d) for d in proposed]
    assert [(s.phase, s.weight, bool(s.plan)) for s in steps] == [  # type: ignore[union-attr]
        ("started", 0.0, True),
        ("weight", 1.0, False),
        ("analysis", 1.0, False),
        ("promoted", 1.0, False),
    ]
