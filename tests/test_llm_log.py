"""The language model in the log: each cycle's calls, tokens, spend and failures (with their
reasons) are kept on its ``CycleCompleted`` event, shown by `tars log`, carried by the
swarm's ``cycle`` ledger entry, and read back by the bandit after a restart."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from llmkit import ScriptedServer, Turn, scripted_server, search_replace
from typer.testing import CliRunner

from actors.generator import spent_from_store
from cli.main import app
from consensus import entries as E
from consensus import ledger as L
from events.store import GenomeStore
from evolution.errors import ConsensusError
from evolution.llm_budget import Limits, Spend
from evolution.llm_usage import Call, Failure, Usage, from_log, per_model, to_log, total
from runtime.llm_cache import ReplyCache
from runtime.llm_client import LLMClient
from runtime.llm_config import parse_llm_config
from runtime.llm_session import LLMSession

TINY = Path(__file__).parent / "data" / "tiny"
runner = CliRunner()


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture
def genome(tmp_path: Path) -> Path:
    """tests/data/tiny under the exact measure, so every cycle plans (and asks) alike."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed: the exact measure falls back to timing")
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    manifest = folder / "genome.toml"
    manifest.write_text(
        manifest.read_text().replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    )
    return folder


def _config(server: ScriptedServer, folder: Path) -> Path:
    path = folder / "llm.yml"
    path.write_text(
        f"models:\n  - name: scripted\n    endpoint: {server.url}\n    model: scripted-1\n"
        "    timeout: 0.5\n    price_in: 0.5\n    price_out: 2.0\n"
        "max_requests: 10\nbudget_money: 5\nretries: 0\nbackoff: 0\nper_cycle: 2\n"
    )
    return path


def test_each_failure_is_in_the_log_with_its_reason_and_the_spend_adds_up(
    llm_server: ScriptedServer, genome: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    not_there = search_replace("tiny/core.py", "def no_such_function():\n", "pass\n")
    llm_server.script(  # two functions asked about per cycle
        Turn("too late", delay=1.5),  # cycle 1: the endpoint does not answer in 0.5 s,
        Turn(raw="<html>502 bad gateway</html>", content_type="text/html"),  # then garbage
        Turn(not_there, tokens_in=300, tokens_out=40),  # cycle 2: a diff that does not apply,
        Turn(not_there, tokens_in=400, tokens_out=40),  # retried once with the error,
        Turn(status=429, raw='{"error": "rate limited"}'),  # then a 429 (no retries left)
    )
    store = tmp_path / "s.db"
    result = runner.invoke(
        app,
        ["evolve", "run", "--genome", str(genome), "--store", str(store)]
        + ["--llm", str(_config(llm_server, tmp_path)), "--cycles", "2", "--candidates", "1"],
    )
    out = result.stdout + result.stderr
    assert result.exit_code == 0, out
    assert len(llm_server.received) == 5

    handle = GenomeStore.open(f"sqlite:///{store}", create=False)
    try:
        cycles = [e.data for e in handle.log(genome="tiny") if e.type == "CycleCompleted"]
        usages = [from_log(data.get("llm")) for data in cycles]
        past = spent_from_store(handle)("tiny")
    finally:
        handle.close()
    assert [c["cycle"] for c in cycles] == [1, 2]
    failures = [f for u in usages for f in u.failures]
    assert [[f.kind for f in u.failures] for u in usages] == [
        ["timeout", "garbage"],
        ["not applied", "http"],
    ]
    reasons = [f.reason for f in failures]
    assert "timed out (0.5 s), after 1 attempt(s)" in reasons[0]
    assert "the reply is not JSON (text/html)" in reasons[1]
    assert "SEARCH text matches 0 times" in reasons[2] and "retried once after" in reasons[2]
    assert "HTTP 429, after 1 attempt(s)" in reasons[3]
    for failure in failures:
        assert failure.target.startswith("tiny/core.py:")
        assert failure.reason.startswith(f"llm:scripted on {failure.target}: ")

    # spend: the cycles add up to the run's, which is what the server was asked and answered
    assert [u.spend.requests for u in usages] == [2, 3]
    assert [u.spend.failed for u in usages] == [2, 1]
    run = total(usages)
    assert (run.requests, run.failed, run.tokens_in, run.tokens_out) == (5, 3, 700, 80)
    assert run.money == pytest.approx(0.7 * 0.5 + 0.08 * 2.0)
    assert usages[-1].run == run  # the run's spend after its last cycle
    assert usages[-1].limits == Limits(None, 5.0, 10)
    assert all(len(c.prompt) == 64 and c.model == "scripted" for u in usages for c in u.calls)
    assert [c.tokens_in for c in usages[1].calls] == [300, 400, 0]
    assert (
        "llm spend: 5 of 10 requests (3 failed), 780 tokens (700 in, 80 out), 0.5100 of 5.0000 money"
        in out
    )

    # `tars log ls` says it on the cycle's line; `tars log llm` lists every reason and the total
    listed = runner.invoke(app, ["log", "ls", "--store", str(store)])
    assert listed.exit_code == 0, listed.stdout
    lines = [line for line in listed.stdout.splitlines() if "CycleCompleted" in line]
    assert "llm 2 requests (2 failed), 0 tokens" in lines[0]
    assert "failed: timeout, garbage" in lines[0] and "failed: not applied, http" in lines[1]
    shown = runner.invoke(app, ["log", "llm", "--store", str(store)])
    assert shown.exit_code == 0, shown.stdout
    text = " ".join(shown.stdout.split())
    for kind, reason in zip(("timeout", "garbage", "not applied", "http"), reasons, strict=True):
        assert f"failed [{kind}] {' '.join(reason.split())}" in text
    assert (
        "total over 2 cycles: 5 requests (3 failed), 780 tokens (700 in, 80 out), 0.5100 money"
        in text
    )

    # a restarted node's bandit reads them back: three failed tries, the tokens and money spent
    assert per_model(past)["scripted"].failures == 4
    fresh = _session(llm_server, tmp_path)
    remembered = fresh.memory([], past)["scripted"]
    assert (remembered.tries, remembered.tokens) == (4, 780)
    assert remembered.money == pytest.approx(run.money)
    fresh.close()


def _session(server: ScriptedServer, folder: Path) -> LLMSession:
    config = parse_llm_config(_config(server, folder).read_text(), "llm.yml")
    return LLMSession(config, LLMClient({}), ReplyCache(folder / "fresh.sqlite"))


def test_a_run_counts_its_own_records_once(llm_server: ScriptedServer, tmp_path: Path) -> None:
    """The log holds the run's own cycles too: memory counts those from memory, not twice."""
    llm = _session(llm_server, tmp_path)
    try:
        mine = Usage((_call(100),), (_failure(),), run_id=llm.id)
        other = Usage((_call(50),), (_failure(),), run_id="an-earlier-run")
        llm.calls.append(_call(100))
        llm.failed.append(_failure())
        memory = llm.memory([], [mine, other])["scripted"]
        assert (memory.tries, memory.tokens) == (2, 150 + 60)
    finally:
        llm.close()


def _call(tokens_in: int) -> Call:
    return Call("scripted", "ab" * 32, tokens_in, 30, 0.01, 0.2, False, 1, "ok")


def _failure(kind: str = "not applied") -> Failure:
    return Failure("scripted", "tiny/core.py:f", kind, "llm:scripted on tiny/core.py:f: refused")


def test_the_stored_map_round_trips_and_a_hostile_one_is_dropped_not_trusted() -> None:
    usage = Usage(
        (_call(100), Call("scripted", "cd" * 32, 0, 0, 0.0, 0.0, True, 0, "cache hit")),
        (_failure(), _failure("budget")),
        Spend(3, 300, 90, 0.03, 1, 0),
        Limits(1000, None, 5),
        "token budget spent",
        "run-1",
    )
    assert from_log(msgpack.unpackb(msgpack.packb(to_log(usage)))) == usage
    assert to_log(Usage()) == {}  # no model asked: the event keeps no field
    assert per_model([usage])["scripted"].failures == 1  # a spent budget is no mark on the model
    hostile = {
        "calls": [{"model": 7, "tokens_in": -5, "tokens_out": "9", "money": float("nan"),
                   "cached": "yes", "outcome": "x" * 10_000}, "not a map"] * 100,
        "failures": [{"kind": "rm -rf", "reason": ["list"]}],
        "run": [1, 2],
        "budget": {"tokens": "lots", "money": True},
    }  # fmt: skip
    read = from_log(hostile)
    assert len(read.calls) == 32 and read.calls[0] == Call(
        "", "", 0, 0, 0.0, 0.0, False, 0, "x" * 500
    )
    assert read.failures == (Failure("", "", "prompt", ""),)
    assert (read.run, read.limits) == (Spend(), Limits())
    for junk in (None, [], "text", 3):
        assert from_log(junk) == Usage()


def test_the_cycle_entry_carries_the_usage_and_leaves_the_old_bytes_alone() -> None:
    plain = E.cycle_entry("g", "node-1", 3, 7, [], [], None, 1001.5)
    assert E.cycle_entry("g", "node-1", 3, 7, [], [], None, 1001.5, llm={}) == plain
    assert b"llm" not in plain
    stored = to_log(Usage((_call(100),), (_failure(),), run_id="r"))
    data = E.cycle_entry("g", "node-1", 3, 7, [], [], None, 1001.5, llm=stored)
    for entry in (E.decode(data), E.parse(E.read_map(data))):
        assert isinstance(entry, E.Cycle) and entry.llm == stored
    assert E.decode(plain).llm == {}
    bad = msgpack.unpackb(data)
    bad["llm"] = ["not", "a", "map"]
    with pytest.raises(ConsensusError, match="llm"):
        E.decode(msgpack.packb(bad))


def test_a_peers_hostile_usage_is_rebuilt_not_trusted_and_the_cycle_still_counts() -> None:
    """A signed cycle entry whose ``llm`` holds junk (a key that is no text, a huge
    reason) is recorded with the map rebuilt, on every node alike: never skipped."""
    base = {"genome.toml": '[genome]\nname = "g"\n', "core.py": "def a():\n    return 1\n"}
    register = L.register_entry("g", base["genome.toml"], base, 1.0, "node-1", 1000.0)
    good = to_log(Usage((_call(100),), (_failure(),), run_id="r"))
    hostile = {**good, "junk": {1: "not a text key"}, "failures": [{"reason": "x" * 100_000}]}
    entry = E.cycle_entry("g", "node-1", 1, 7, [], [], None, 1001.0, llm=hostile)
    stored = []
    for _ in range(2):  # two nodes apply the same entry
        state = L.LedgerState(GenomeStore.open("memory://"), ["node-1"])
        try:
            state.apply_batch([(1, register), (2, entry)])
            assert state.rejected_entries == 0
            (cycle,) = [e for e in state.store.log() if e.type == "CycleCompleted"]
            stored.append(cycle.data["llm"])
        finally:
            state.store.close()
    assert stored[0] == stored[1]
    assert "junk" not in stored[0] and stored[0]["calls"] == good["calls"]
    assert stored[0]["failures"] == [
        {"model": "", "target": "", "kind": "prompt", "reason": "x" * 500}
    ]


def test_a_swarms_budget_counts_what_every_run_in_the_log_spent(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    """On a swarm the budget is the whole log's: another node's (or an earlier run's) spend
    counts, this run's own records are not counted twice, and a spent budget asks nothing."""
    from test_llm_generator import tiny

    from actors.generator import Generator, LogSpend
    from actors.messages import Generate

    manifest, tree, version, plans = tiny()
    store = GenomeStore.open(f"sqlite:///{tmp_path / 's.db'}")
    llm = LLMSession(
        parse_llm_config(
            f"models:\n  - name: scripted\n    endpoint: {llm_server.url}\n    model: m\n"
            "budget_tokens: 1000\nretries: 0\n",
            "cluster.yml",
        ),
        LLMClient({}),
        ReplyCache(tmp_path / "c.sqlite"),
    )
    try:
        store.register(manifest.name, tree["genome.toml"], tree, 1.0, "node-1")
        spent = LogSpend(store)
        for cycle, run, tokens_in in ((1, "another-node", 600), (2, llm.id, 300), (3, "x", 500)):
            usage = Usage((_call(tokens_in),), run_id=run)  # each call: tokens_in + 30 out
            store.record_cycle(manifest.name, "node-1", cycle=cycle, llm=to_log(usage))
            if cycle == 2:
                assert spent(llm.id).tokens == 630  # read on from where it stopped
        assert spent(llm.id) == Spend(2, 1100, 60, 0.02, 0, 0)  # not its own 330
        assert spent("nobody").tokens == 1490
        ref = Generator.start(llm, None, None, spent)
        try:
            made = ref.ask(Generate(version, tree, plans))
        finally:
            ref.stop()
        assert llm_server.received == []  # 1,160 of 1,000 tokens spent elsewhere: not asked
        (failure,) = from_log(made.llm).failures
        assert failure.kind == "budget" and "token budget spent" in failure.reason
        assert "1,160 of 1,000 tokens" in failure.reason
    finally:
        llm.close()
        store.close()
