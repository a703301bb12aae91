"""The language model on a swarm: cluster.yml's ``llm:`` section reaches every node's generator.

A real in-process swarm of three SwarmNodes (transport, Raft, stores, jail) whose leader
asks the scripted OpenAI-compatible server: the model's candidate is proven and held by
the default policy's ``approval_on_model`` on every node, the cycle's model usage reaches
every node's log through the ledger, and the key never lands in a file.  A bad ``llm:``
section is one error naming its line.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from llmkit import GOOD_TINY_REPLY, ScriptedServer, Turn, scripted_server
from swarmkit import wait

from cli.demo import write_cluster
from evolution.errors import ConfigError
from evolution.llm_usage import from_log
from node import SwarmNode
from runtime.cluster_llm import node_session
from runtime.config import load_cluster, parse_cluster

TINY = Path(__file__).parent / "data" / "tiny"
KEY = "sk-tars-swarm-key-5e4d3c2b1a"
ENV = "TARS_SWARM_LLM_KEY"


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def _llm_section(url: str, *, extra: str = "") -> str:
    return (
        "llm:\n  models:\n    - name: scripted\n"
        f"      endpoint: {url}\n      model: scripted-1\n      api_key_env: {ENV}\n"
        f"      timeout: 5\n  max_requests: 6\n  retries: 0\n{extra}"
    )


def _cluster(folder: Path, genome: Path, section: str) -> Path:
    path = write_cluster(folder, 3, genome, 1, 1, 3, 1)
    path.write_text(path.read_text() + section)
    return path


def test_a_models_candidate_is_proposed_on_a_swarm_and_held_for_a_human(
    llm_server: ScriptedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed: the exact measure falls back to timing")
    genome = tmp_path / "tiny"  # judged by instruction counts: the model's 2x is exact
    shutil.copytree(TINY, genome)
    manifest = genome / "genome.toml"
    manifest.write_text(
        manifest.read_text().replace("rounds = 3", 'rounds = 3\nmeasure = "instructions"')
    )
    monkeypatch.setenv(ENV, KEY)
    llm_server.script(*[Turn(GOOD_TINY_REPLY, tokens_in=700, tokens_out=90)] * 3)
    config = load_cluster(_cluster(tmp_path / "swarm", genome, _llm_section(llm_server.url)))
    config.ensure_keys()
    nodes = [SwarmNode(config, node_id) for node_id in config.ids]
    assert all(node.llm is not None for node in nodes)  # every node could lead
    try:
        for node in nodes:
            node.start()

        def held() -> list[dict[str, object]]:
            return [
                e.data
                for node in nodes
                for e in node.store.log()  # every genome: none until it is registered
                if e.type == "ApprovalRequested"
            ]

        wait(lambda: len(held()) == 3, 120, "the model's candidate held on every node")
        wait(
            lambda: all(node.store.head("tiny").cycles_completed == 1 for node in nodes),
            30,
            "cycle 1",
        )
        first = held()[0]
        assert first["mutator"] == "llm:scripted" and "COMMON_SET" in str(first["patch"])
        assert all(h == first for h in held())  # one decision, the same on every node
        evidence = first["evidence"]
        assert isinstance(evidence, dict) and evidence["held_by"] == ["approval_on_model"]
        reasons = first["reasons"]
        assert isinstance(reasons, list) and "(policy approval_on_model)" in reasons[0]
        assert all(
            node.store.head("tiny").version == nodes[0].store.head("tiny").version for node in nodes
        )  # fmt: skip  (held, not adopted: the head did not move)
        for node in nodes:  # the cycle's model usage came through the ledger to every node
            (cycle,) = [e for e in node.store.log(genome="tiny") if e.type == "CycleCompleted"]
            usage = from_log(cycle.data["llm"])
            assert usage.spend.requests == len(llm_server.received) >= 1
            assert usage.spend.tokens == 790 * usage.spend.requests and not usage.failures
    finally:
        for node in nodes:
            node.stop()
    assert llm_server.received[0].headers["Authorization"] == f"Bearer {KEY}"
    for path in (tmp_path / "swarm").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def _error(tmp_path: Path, section: str) -> str:
    path = _cluster(tmp_path, TINY, section)
    with pytest.raises(ConfigError) as caught:
        load_cluster(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("  modles: []\n", "llm.modles: unknown key 'modles'"),
        ("  cache: /tmp/shared.sqlite\n", "llm.cache: must be a file name"),
    ],
)
def test_a_bad_llm_section_names_its_line(tmp_path: Path, change: str, expected: str) -> None:
    section = _llm_section("http://127.0.0.1:9/v1", extra=change)
    message = _error(tmp_path, section)
    lines = (tmp_path / "cluster.yml").read_text().splitlines()
    key = expected.split(":")[0].split(".")[-1]
    line = next(n for n, text in enumerate(lines, 1) if text.strip().startswith(f"{key}:"))
    assert f"cluster.yml:{line}: {expected}" in message


def test_a_bad_endpoint_or_no_budget_names_the_line(tmp_path: Path) -> None:
    bad_url = _llm_section("ftp://127.0.0.1/v1")
    message = _error(tmp_path / "a", bad_url)
    line = _line_of(tmp_path / "a" / "cluster.yml", "endpoint: ftp")
    assert f"cluster.yml:{line}: llm.models[0].endpoint:" in message and "base URL" in message
    no_budget = _llm_section("http://127.0.0.1:9/v1").replace("  max_requests: 6\n", "")
    message = _error(tmp_path / "b", no_budget)
    line = _line_of(tmp_path / "b" / "cluster.yml", "llm:")
    assert f"cluster.yml:{line}: llm: no budget" in message and "docs/llm.md" in message


def _line_of(path: Path, start: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.strip().startswith(start))


def test_a_key_missing_from_the_environment_stops_the_node_naming_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    config = load_cluster(_cluster(tmp_path, TINY, _llm_section("http://127.0.0.1:9/v1")))
    line = _line_of(config.path, "api_key_env:")
    with pytest.raises(ConfigError, match=rf"cluster.yml:{line}: llm.models\[0\].api_key_env: "
                       rf"the environment variable {ENV} is not set"):  # fmt: skip
        node_session(config, "node-1", {})
    config.ensure_keys()
    with pytest.raises(ConfigError, match=f"{ENV} is not set"):
        SwarmNode(config, "node-1")
    session = node_session(config, "node-2", {ENV: KEY})
    assert session is not None
    try:  # each node's own cache, in its state folder
        assert session.config.cache == str(config.state_dir("node-2") / "llm-cache.sqlite")
        assert KEY not in repr(session.client) + repr(session.config)
    finally:
        session.close()


def test_without_an_llm_section_no_node_asks_a_model(tmp_path: Path) -> None:
    config = parse_cluster("nodes:\n  - id: node-1\n    port: 7001\n", tmp_path / "cluster.yml")
    assert node_session(config, "node-1", {}) is None
