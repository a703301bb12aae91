"""The Generator actor with a model behind the scripted server: candidates, or failures with reasons.

Every failure mode (a diff that does not apply, a timeout, a 429, garbage, an edit of a
test or held-out file, a spent budget) ends as a reason in ``Generated.failures`` and the
actor keeps answering: a failed candidate, never a failed node.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from llmkit import (
    GOOD_TINY_REPLY,
    ScriptedServer,
    Turn,
    scripted_server,
    search_replace,
)

from actors.generator import Generator
from actors.messages import Generate, Generated
from evolution.analysis import analyze
from evolution.llm_prompt import Attempt
from evolution.manifest import Manifest
from evolution.planner import Outcomes, Plan, plan
from evolution.tree import Tree, version_id
from runtime.genome_files import load_genome
from runtime.llm_cache import ReplyCache
from runtime.llm_client import LLMClient
from runtime.llm_config import parse_llm_config
from runtime.llm_session import LLMSession

TINY = Path(__file__).parent / "data" / "tiny"
KEY = "sk-tars-test-0123456789abcdef"


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def session(server: ScriptedServer, cache: Path, extra: str = "") -> LLMSession:
    config = parse_llm_config(
        f"models:\n  - name: scripted\n    endpoint: {server.url}\n    model: scripted-1\n"
        f"    timeout: 0.5\nretries: 1\nbackoff: 0\nmax_requests: 20\n{extra}",
        "llm.yml",
    )
    client = LLMClient({"scripted": KEY}, retries=config.retries, backoff=0, sleep=lambda s: None)
    return LLMSession(config, client, ReplyCache(cache))


def tiny(folder: Path = TINY) -> tuple[Manifest, Tree, str, list[Plan]]:
    manifest, tree = load_genome(folder)
    plans = plan(analyze(tree, manifest), Outcomes(), risks={}, rng=random.Random(1), limit=4)
    return manifest, tree, version_id(tree), plans


def generate(
    llm: LLMSession, folder: Path = TINY, history: list[Attempt] | None = None
) -> Generated:
    _, tree, version, plans = tiny(folder)
    ref = Generator.start(llm, lambda genome: history or [])
    try:
        return ref.ask(Generate(version, tree, plans))
    finally:
        ref.stop()


def test_a_good_reply_is_the_first_candidate_and_the_offline_ones_follow(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    llm_server.script(Turn(GOOD_TINY_REPLY, tokens_in=500, tokens_out=80))
    llm = session(llm_server, tmp_path / "c.sqlite")
    made = generate(llm)
    first = made.candidates[0]
    assert (first.mutator, first.kind, first.file) == ("llm:scripted", "llm", "tiny/core.py")
    assert "+COMMON_SET = frozenset(COMMON)" in first.patch
    assert [c.mutator for c in made.candidates[1:]] == [
        c.mutator for c in generate_offline().candidates
    ]
    assert made.failures == generate_offline().failures
    assert (
        len(llm_server.received) == 1
        and "def count_common(words):" in llm_server.received[0].prompt
    )
    assert (llm.spend.requests, llm.spend.tokens_in, llm.spend.tokens_out) == (1, 500, 80)
    (record,) = llm.cache.records()
    assert (record.model, record.tokens_in, record.cached, record.outcome) == (
        "scripted",
        500,
        False,
        "ok",
    )
    assert len(record.prompt_hash) == 64 and record.latency >= 0


def generate_offline() -> Generated:
    _, tree, version, plans = tiny()
    ref = Generator.start()
    try:
        return ref.ask(Generate(version, tree, plans))
    finally:
        ref.stop()


def test_a_bad_diff_is_retried_once_with_the_error_then_a_failure(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    missing = search_replace("tiny/core.py", "def nothing_like_this():\n", "pass\n")
    llm_server.script(Turn(missing), Turn(missing))
    made = generate(session(llm_server, tmp_path / "c.sqlite"))
    assert all(c.mutator != "llm:scripted" for c in made.candidates)
    (reason,) = [f for f in made.failures if f.startswith("llm:")]
    assert reason.startswith("llm:scripted on tiny/core.py:")
    assert "matches 0 times" in reason and "retried once" in reason
    first, second = llm_server.received
    sent = second.body["messages"]
    assert sent[: len(first.body["messages"])] == first.body["messages"]
    assert sent[-2] == {"role": "assistant", "content": missing}
    assert "could not be used" in sent[-1]["content"] and "matches 0 times" in sent[-1]["content"]


def test_a_bad_diff_then_a_good_one_is_a_candidate(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    llm_server.script(Turn("I would use a set."), Turn(GOOD_TINY_REPLY))
    made = generate(session(llm_server, tmp_path / "c.sqlite"))
    assert made.candidates[0].mutator == "llm:scripted"


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        (
            [Turn("late", delay=3.0), Turn("late", delay=3.0)],
            "timed out (0.5 s), after 2 attempt(s)",
        ),
        ([Turn(raw="<html>Bad Gateway</html>", content_type="text/html")], "not JSON (text/html)"),
        ([Turn(raw="garbage")], "not JSON"),
        (
            [Turn(status=500, raw="down"), Turn(status=503, raw="down")],
            "HTTP 503, after 2 attempt(s)",
        ),
        (
            [Turn(search_replace("tests/test_core.py", "import unittest\n", "")) for _ in "12"],
            "tests/test_core.py is not a source file",
        ),
    ],
)
def test_each_failure_is_a_reason_and_the_actor_goes_on(
    llm_server: ScriptedServer, tmp_path: Path, turns: list[Turn], reason: str
) -> None:
    llm = session(llm_server, tmp_path / "c.sqlite")
    llm_server.script(*turns)
    made = generate(llm)
    assert any(reason in f for f in made.failures), made.failures
    assert made.candidates and all(c.mutator != "llm:scripted" for c in made.candidates)
    llm_server.script(Turn(GOOD_TINY_REPLY))
    lost = Attempt("v0", "llm:scripted", "llm", "reject", ("an earlier try",), None, "")
    # a new prompt (the history changed): a cached bad reply is not what answers it
    assert generate(llm, history=[lost]).candidates[0].mutator == "llm:scripted"


def test_a_429_is_retried_and_answered(llm_server: ScriptedServer, tmp_path: Path) -> None:
    llm_server.script(
        Turn(status=429, raw="{}", headers={"Retry-After": "0"}), Turn(GOOD_TINY_REPLY)
    )
    assert (
        generate(session(llm_server, tmp_path / "c.sqlite")).candidates[0].mutator == "llm:scripted"
    )
    assert len(llm_server.received) == 2


def test_held_out_files_are_never_shown_nor_edited(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    manifest = folder / "genome.toml"
    manifest.write_text(
        manifest.read_text()
        .replace(
            'sources = ["tiny/*.py"]', 'sources = ["tiny/*.py"]\nheld_out = ["tiny/hidden_*.py"]'
        )
        .replace(
            'bench = ["python", "bench.py"]',
            'bench = ["python", "bench.py"]\nheld_out = ["python", "-c", "pass"]',
        )
    )
    hidden = "def hidden_check():\n    return 'HELD_OUT_MARKER'\n"
    (folder / "tiny" / "hidden_check.py").write_text(hidden)
    edit = search_replace("tiny/hidden_check.py", hidden, "def hidden_check():\n    return 1\n")
    llm_server.script(Turn(edit), Turn(edit))
    made = generate(session(llm_server, tmp_path / "c.sqlite", "per_cycle: 4\n"), folder)
    assert any("tiny/hidden_check.py is not a source file" in f for f in made.failures)
    assert all("HELD_OUT_MARKER" not in r.shown for r in llm_server.received)
    assert len(llm_server.received) >= 2


def test_the_budget_stops_the_asking_with_the_figures(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    llm = session(llm_server, tmp_path / "c.sqlite", "per_cycle: 3\nbudget_tokens: 1000\n")
    llm_server.script(Turn("no blocks here", tokens_in=700, tokens_out=400))
    made = generate(llm)
    budget = [f for f in made.failures if "budget spent" in f]
    assert len(budget) == 1 and len(llm_server.received) == 1
    assert "token budget spent: 1 of 20 requests (0 failed), 1,100 of 1,000 tokens" in budget[0]
    assert llm.stopped is not None and "1,100 of 1,000 tokens" in llm.summary()
    assert not any("budget" in f for f in generate(llm).failures)  # said once, not asked again
    assert len(llm_server.received) == 1


def test_a_second_run_with_the_same_prompts_is_served_from_the_cache(
    llm_server: ScriptedServer, tmp_path: Path
) -> None:
    bad = search_replace("tiny/core.py", "def nothing_like_this():\n", "pass\n")
    llm_server.script(Turn(bad), Turn(GOOD_TINY_REPLY))
    first = generate(session(llm_server, tmp_path / "c.sqlite"))
    assert len(llm_server.received) == 2
    again = session(llm_server, tmp_path / "c.sqlite")
    second = generate(again)
    assert len(llm_server.received) == 2  # the server saw nothing new
    assert second.candidates[0] == first.candidates[0]
    assert (again.spend.requests, again.spend.tokens, again.spend.cache_hits) == (0, 0, 2)
    assert [r.cached for r in again.cache.records()] == [False, False, True, True]


def test_a_changed_history_is_a_new_prompt(llm_server: ScriptedServer, tmp_path: Path) -> None:
    llm_server.script(Turn(GOOD_TINY_REPLY), Turn(GOOD_TINY_REPLY))
    llm = session(llm_server, tmp_path / "c.sqlite")
    generate(llm)
    lost = Attempt("v0", "llm:scripted", "llm", "reject", ("gain 1.01 below 1.10",), 1.01, "")
    generate(llm, history=[lost])
    assert len(llm_server.received) == 2
    assert "gain 1.01 below 1.10" in llm_server.received[1].prompt


def test_the_key_is_in_the_header_and_nowhere_else(
    llm_server: ScriptedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "llm.yml"
    config.write_text(
        f"models:\n  - endpoint: {llm_server.url}\n    model: scripted-1\n"
        "    api_key_env: TARS_TEST_LLM_KEY\n    timeout: 0.5\nretries: 0\nmax_requests: 9\n"
        "cache: state/cache.sqlite\n"
    )
    caplog.set_level(logging.DEBUG)
    llm = LLMSession.open(config, {"TARS_TEST_LLM_KEY": KEY})
    llm_server.script(Turn(status=401, raw="{}"), Turn("nothing"), Turn("nothing"))
    llm_server.script(Turn(GOOD_TINY_REPLY))
    made = [generate(llm), generate(llm)]
    llm.close()
    assert llm_server.received[0].headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in caplog.text and "llm request model=scripted-1" in caplog.text
    assert KEY.encode() not in (tmp_path / "state" / "cache.sqlite").read_bytes()
    assert KEY not in repr(made) + repr(llm.failures) + llm.summary() + repr(llm.config)


def test_several_models_share_the_work_through_the_bandit(tmp_path: Path) -> None:
    with scripted_server() as one, scripted_server() as two:
        config = parse_llm_config(
            f"models:\n  - name: one\n    endpoint: {one.url}\n    model: m1\n"
            f"  - name: two\n    endpoint: {two.url}\n    model: m2\n"
            "retries: 0\nmax_requests: 50\n",
            "llm.yml",
        )
        llm = LLMSession(config, LLMClient({}), ReplyCache(tmp_path / "c.sqlite"))
        one.script(*[Turn("no blocks", tokens_in=5000, tokens_out=5000)] * 20)
        two.script(*[Turn("no blocks", tokens_in=50, tokens_out=50)] * 20)
        for n in range(8):
            seen = Attempt("v0", "set_membership", "k", "reject", (f"try {n}",), None, "")
            generate(llm, history=[seen])
        memory = llm.memory([])
        won = Attempt("v1", "llm:one", "llm", "adopt", ("1.40× faster",), 1.4, "")
        with_log = llm.memory([won])
    asked_one, asked_two = len(one.received), len(two.received)
    assert asked_one + asked_two == 16  # 8 cycles, each asked twice (the retry)
    assert asked_one >= 2 and asked_two > asked_one  # both tried; the cheap one asked more
    assert memory["one"].tokens == asked_one * 10_000 and memory["two"].tokens == asked_two * 100
    assert memory["one"].tries + memory["two"].tries == 8
    # the log's judged candidates add to this run's failed tries; an adoption is a win
    assert (with_log["one"].tries, with_log["one"].wins) == (memory["one"].tries + 1, 1)
