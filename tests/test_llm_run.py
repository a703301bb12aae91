"""`tars evolve run --llm`: a model's diff proven and adopted; a replay pays no tokens; no key anywhere."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llmkit import GOOD_TINY_REPLY, ScriptedServer, Turn, scripted_server
from typer.testing import CliRunner

from actors.generator import history_from_store
from cli.main import app
from events.store import GenomeStore

TINY = Path(__file__).parent / "data" / "tiny"
KEY = "sk-tars-run-key-9f8e7d6c5b4a"
runner = CliRunner()


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture
def genome(tmp_path: Path) -> Path:
    """tests/data/tiny judged by instruction counts: its profile, hence each prompt, is exact,
    so a second run asks the same questions (a timed profile's heat figures would vary)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed: the exact measure falls back to timing")
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    manifest = folder / "genome.toml"
    manifest.write_text(
        manifest.read_text().replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    )
    return folder


def run(genome: Path, store: Path, config: Path, *extra: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["evolve", "run", "--genome", str(genome), "--store", str(store), "--llm", str(config)]
        + ["--cycles", "1", "--candidates", "1", *extra],
    )
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def config(llm_server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the node's work folder (.tars) goes here
    monkeypatch.setenv("TARS_RUN_LLM_KEY", KEY)
    path = tmp_path / "llm.yml"
    path.write_text(
        f"models:\n  - name: scripted\n    endpoint: {llm_server.url}\n    model: scripted-1\n"
        "    api_key_env: TARS_RUN_LLM_KEY\n    timeout: 5\n"
        "max_requests: 4\nretries: 0\ncache: llm-cache.sqlite\nper_cycle: 2\n"
    )
    return path


def test_a_models_diff_is_proven_and_adopted_and_a_replay_pays_nothing(
    llm_server: ScriptedServer, config: Path, genome: Path, tmp_path: Path
) -> None:
    # Two functions are asked about (the top plan's and the next largest), both answered
    # with the same good diff.
    llm_server.script(*[Turn(GOOD_TINY_REPLY, tokens_in=900, tokens_out=150)] * 2)
    code, out = run(genome, tmp_path / "first.db", config)
    assert code == 0, out
    # A model-written change waits for a human by default (the policy's approval_on_model),
    # however good its evidence: proven, then held, not adopted.
    assert "0 versions adopted" in out
    assert "llm spend: 2 of 4 requests (0 failed), 2,100 tokens (1,800 in, 300 out)" in out
    held = held_of(tmp_path / "first.db")
    assert held["mutator"] == "llm:scripted" and "COMMON_SET" in held["patch"]
    assert held["reasons"][0].startswith("written by a model (llm:scripted)")
    described = held["evidence"]["description"]  # type: ignore[index]
    assert described.startswith("llm:scripted rewrite of ") and "1,050 tokens" in described
    assert len(llm_server.received) == 2
    # the human approves it, and it is adopted
    approved = runner.invoke(
        app,
        ["approve", "--genome", "tiny", "--candidate", str(held["candidate"])]
        + ["--store", str(tmp_path / "first.db")],
    )
    assert approved.exit_code == 0, approved.stdout + approved.stderr
    first = adopted(tmp_path / "first.db")
    assert first["mutator"] == "llm:scripted" and first["patch"] == held["patch"]
    store = GenomeStore.open(f"sqlite:///{tmp_path / 'first.db'}", create=False)
    try:  # what the next prompt will tell the model
        (attempt,) = history_from_store(store)("tiny")
    finally:
        store.close()
    assert (attempt.mutator, attempt.verdict, attempt.patch) == (
        "llm:scripted",
        "hold",
        first["patch"],
    )

    code, out = run(genome, tmp_path / "replay.db", config)
    assert code == 0, out
    assert len(llm_server.received) == 2  # the server saw no request: the cache answered
    assert "llm spend: 0 of 4 requests (0 failed), 0 tokens (0 in, 0 out)" in out
    assert "2 cache hits" in out
    assert held_of(tmp_path / "replay.db")["patch"] == first["patch"]

    assert llm_server.received[0].headers["Authorization"] == f"Bearer {KEY}"
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in out


def test_garbage_is_a_failed_candidate_and_the_run_goes_on(
    llm_server: ScriptedServer, config: Path, genome: Path, tmp_path: Path
) -> None:
    llm_server.script(*[Turn(raw="<html>oops</html>", content_type="text/html")] * 2)
    code, out = run(genome, tmp_path / "s.db", config)
    assert code == 0, out
    assert "llm failed: llm:scripted on tiny/core.py" in out and "not JSON (text/html)" in out
    assert "llm spend: 2 of 4 requests (2 failed)" in out


def held_of(store_path: Path) -> dict[str, Any]:
    store = GenomeStore.open(f"sqlite:///{store_path}", create=False)
    try:
        (entry,) = [e for e in store.log(genome="tiny") if e.type == "ApprovalRequested"]
        return entry.data
    finally:
        store.close()


def adopted(store_path: Path) -> dict[str, object]:
    store = GenomeStore.open(f"sqlite:///{store_path}", create=False)
    try:
        (entry,) = [e for e in store.log(genome="tiny") if e.type == "VersionAdopted"]
        return entry.data
    finally:
        store.close()


def test_generate_prints_the_models_candidate(
    llm_server: ScriptedServer, config: Path, tmp_path: Path
) -> None:
    llm_server.script(*[Turn(GOOD_TINY_REPLY)] * 2)
    result = runner.invoke(
        app,
        ["evolve", "generate", "--genome", str(TINY), "--store", str(tmp_path / "g.db")]
        + ["--limit", "1", "--llm", str(config)],
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "llm:scripted rewrite of" in result.stdout
    assert "+COMMON_SET = frozenset(COMMON)" in result.stdout
    assert "llm spend: 2 of 4 requests" in result.stdout


def test_a_bad_llm_file_is_one_line_naming_the_key(
    llm_server: ScriptedServer, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TARS_RUN_LLM_KEY")
    code, out = run(TINY, tmp_path / "s.db", config)
    assert code != 0
    lines = [line for line in out.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "models.0.api_key_env" in lines[0] and "TARS_RUN_LLM_KEY is not set" in lines[0]
    assert llm_server.received == []


def test_the_budget_stops_the_asking_and_the_run_says_so(
    llm_server: ScriptedServer, config: Path, genome: Path, tmp_path: Path
) -> None:
    config.write_text(config.read_text().replace("max_requests: 4", "max_requests: 1"))
    llm_server.script(*[Turn(raw="garbage")] * 4)
    code, out = run(genome, tmp_path / "s.db", config, "--cycles", "2")
    assert code == 0, out
    assert len(llm_server.received) == 1  # not asked again, in this cycle or the next
    assert (
        "llm spend: 1 of 1 requests (1 failed), 0 tokens (0 in, 0 out), 0.0000 money, "
        "0 cache hits; stopped asking: request budget spent: 1 of 1 requests (1 failed)"
    ) in out
