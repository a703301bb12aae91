"""`tars mcp`: the official SDK's own client against the server, on a real store and sandbox.

The stdio test starts `tars mcp` as a real process; the others connect the SDK's client to
the server in memory (the SDK's own test transport) or over streamable HTTP served by
uvicorn on 127.0.0.1.  Every store is a real SQLite store written by real cycles.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session

from cli.mcp_http import http_app
from cli.mcp_ops import Target
from cli.mcp_server import build_server
from events.store import GenomeStore
from evolution.patch import make_patch
from runtime.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TINY = Path(__file__).parent / "data" / "tiny"
TOOLS = {"status", "genomes", "analyze", "plan", "run_cycles", "validate", "log", "lineage"}
TOOLS |= {"diff", "rollback", "rollout"}


@pytest.fixture(scope="module")
def evolved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the tiny genome registered and one version adopted by hand (fast)."""
    from node import Node, NodeConfig

    root = tmp_path_factory.mktemp("mcp")
    store = root / "store.db"
    with Node(NodeConfig("local", f"sqlite:///{store}", root / "work")) as node:
        name, _ = node.register(TINY)
        head = node.store.head(name)
        child = dict(head.tree)
        child["tiny/core.py"] = child["tiny/core.py"] + "\n# a comment the diff shows\n"
        from events.records import Adoption
        from evolution.tree import version_id

        node.store.adopt(
            name,
            Adoption(
                version=version_id(child), parent=head.version, patch=make_patch(head.tree, child),
                mutator="test", kind="test", fitness_before=1.0, fitness_after=0.9, ratio=1.1,
                low=1.05, high=1.15, evidence={},
            ),
            "local",
        )  # fmt: skip
    return store


def versions(store: Path) -> list[str]:
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        return [
            e.version
            for e in handle.log(genome="tiny")
            if e.type in ("Registered", "VersionAdopted")
        ]  # type: ignore[misc]


def in_memory(target: Target, body: Callable[[ClientSession], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with create_connected_server_and_client_session(build_server(target), **kw) as s:
            await body(s)

    anyio.run(main)


def text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def test_stdio_lists_the_tools_and_runs_a_cycle_with_progress(tmp_path: Path) -> None:
    """A real `tars mcp --store` process: tools listed, one cycle run, one progress per cycle."""
    store = tmp_path / "store.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cli.main", "mcp", "--store", str(store), "--workdir", str(tmp_path / "w")],
        cwd=str(ROOT),
    )
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def main() -> dict[str, Any]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            listed = {tool.name for tool in (await session.list_tools()).tools}
            assert listed >= TOOLS, TOOLS - listed
            result = await session.call_tool(
                "run_cycles",
                {"genome": str(TINY), "cycles": 1, "candidates": 2},
                progress_callback=on_progress,
            )
            assert not result.isError, text(result)
            return dict(result.structuredContent or {})

    summary = anyio.run(main)
    assert summary["genome"] == "tiny" and [c["cycle"] for c in summary["cycles"]] == [1]
    assert [(done, total) for done, total, _ in progress] == [(1, 1)]
    assert progress[0][2] is not None and progress[0][2].startswith("cycle 1:")
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        assert handle.head("tiny").cycles_completed == 1  # recorded in the store, not only said


def test_diff_resource_and_tool_agree(evolved: Path) -> None:
    old, new = versions(evolved)

    async def body(session: ClientSession) -> None:
        read = await session.read_resource(f"tars://genome/tiny/diff/{old[:10]}/{new[:10]}")  # type: ignore[arg-type]
        shown = read.contents[0]
        assert isinstance(shown, types.TextResourceContents)
        tool = await session.call_tool("diff", {"genome": "tiny", "a": old[:10], "b": new})
        assert not tool.isError, text(tool)
        assert text(tool) == shown.text
        assert "+# a comment the diff shows" in shown.text and "tiny/core.py" in shown.text
        templates = {
            t.uriTemplate for t in (await session.list_resource_templates()).resourceTemplates
        }
        assert "tars://genome/{name}/version/{version}" in templates
        info = await session.read_resource(f"tars://genome/tiny/version/{new}")  # type: ignore[arg-type]
        version = json.loads(info.contents[0].text)  # type: ignore[union-attr]
        assert version["parent"] == old and version["head"] is True
        assert "tiny/core.py" in {f["path"] for f in version["files"]}
        manifest = await session.read_resource("tars://genome/tiny/manifest")  # type: ignore[arg-type]
        assert 'name = "tiny"' in manifest.contents[0].text  # type: ignore[union-attr]

    in_memory(Target(store=str(evolved)), body)


def test_bad_arguments_get_a_clear_error_naming_the_argument(evolved: Path, tmp_path: Path) -> None:
    """Unknown genome, bad version, cycles < 1, a malformed patch: one message each, no traceback."""
    calls = [
        ("lineage", {"genome": "nope"}, ["'genome'", "'nope'", "tiny"]),
        ("diff", {"genome": "tiny", "a": "deadbeef", "b": "zz!"}, ["'a'", "deadbeef", "lineage"]),
        ("diff", {"genome": "tiny", "a": versions(evolved)[0], "b": "zz!"}, ["'b'", "hexadecimal"]),
        ("run_cycles", {"genome": "tiny", "cycles": 0}, ["'cycles'", "1 or more"]),
        ("validate", {"genome": "tiny", "patch": "this is not a diff"}, ["'patch'"]),
        (
            "validate",
            {
                "genome": "tiny",
                "patch": "--- a/tiny/core.py\n+++ b/tiny/core.py\n@@ -1,1 +1,1 @@\n-no such line\n+x\n",
            },
            ["'patch'", "tiny/core.py", "does not apply"],
        ),
        (
            "validate",
            {
                "genome": "tiny",
                "patch": "--- /dev/null\n+++ b/../../evil.py\n@@ -0,0 +1,1 @@\n+x\n",
            },
            ["'patch'", "unsafe path", "inside the genome"],
        ),
        ("analyze", {"genome": "/etc"}, ["'genome'", "genome folder"]),
        ("log", {"since": "yesterday"}, ["'since'", "ISO-8601"]),
        ("log", {"limit": 0}, ["'limit'"]),
        ("rollout", {"genome": "tiny"}, ["single store", "--config"]),
        ("run_cycles", {"genome": "tiny", "cycles": "many"}, ["'cycles'", "integer", "'many'"]),
        ("diff", {"genome": "tiny"}, ["'a'", "'b'", "required"]),
    ]

    async def body(session: ClientSession) -> None:
        for name, arguments, needles in calls:
            result = await session.call_tool(name, arguments)
            said = text(result)
            assert result.isError, (name, said)
            assert "Traceback" not in said and 'File "' not in said, said
            assert " — " in said, said  # the message, then the hint (the fix)
            for needle in needles:
                assert needle in said, (name, needle, said)

    in_memory(Target(store=str(evolved), workdir=tmp_path), body)
    assert not (tmp_path.parent / "evil.py").exists()


def test_a_bad_resource_address_is_an_error_not_a_file(evolved: Path) -> None:
    from mcp.shared.exceptions import McpError

    old, _ = versions(evolved)
    bad = [
        "tars://genome/nope/manifest",
        f"tars://genome/tiny/diff/{old}/..",
        "tars://genome/tiny/version/00000000",
        "tars://genome/..%2F..%2Fetc/manifest",
    ]

    async def body(session: ClientSession) -> None:
        for uri in bad:
            with pytest.raises(McpError) as caught:
                await session.read_resource(uri)  # type: ignore[arg-type]
            assert "Traceback" not in str(caught.value), str(caught.value)

    in_memory(Target(store=str(evolved)), body)


def test_log_query_filters_and_lineage(evolved: Path) -> None:
    old, new = versions(evolved)

    async def body(session: ClientSession) -> None:
        every = (await session.call_tool("log", {"genome": "tiny"})).structuredContent or {}
        assert [e["type"] for e in every["events"]][:1] == ["Registered"]
        adopted = await session.call_tool("log", {"type": "VersionAdopted", "detail": True})
        rows = (adopted.structuredContent or {})["events"]
        assert [r["version"] for r in rows] == [new] and rows[0]["data"]["mutator"] == "test"
        later = await session.call_tool("log", {"since": "2999-01-01"})
        assert (later.structuredContent or {})["events"] == []
        nobody = await session.call_tool("log", {"node": "node-9"})
        assert (nobody.structuredContent or {})["events"] == []
        tree = (await session.call_tool("lineage", {"genome": "tiny"})).structuredContent or {}
        assert [(v["version"], v["parent"]) for v in tree["versions"]] == [(old, None), (new, old)]
        assert tree["head"] == new

    in_memory(Target(store=str(evolved)), body)


def test_rollback_of_a_single_store_appends_an_event(evolved: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    shutil.copy(evolved, store)
    old, _ = versions(store)

    async def body(session: ClientSession) -> None:
        result = await session.call_tool("rollback", {"genome": "tiny", "to": old[:8]})
        assert not result.isError, text(result)
        assert (result.structuredContent or {})["head"] == old

    in_memory(Target(store=str(store)), body)
    with GenomeStore.open(f"sqlite:///{store}", create=False) as handle:
        assert handle.head("tiny").version == old
        assert [e.type for e in handle.log(genome="tiny")][-1] == "RolledBack"


# ---- streamable HTTP behind the bearer token ---------------------------------------------


@pytest.fixture
def http_server(evolved: Path) -> Iterator[str]:
    """The server over streamable HTTP on 127.0.0.1; one token, ``s3cret``, belongs to alice."""
    import uvicorn

    tokens = {"s3cret": "alice"}
    port = free_port()
    app = http_app(build_server(Target(store=str(evolved)), port=port), tokens.get)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "Basic s3cret"},
        {"authorization": "Bearer"},
        {"authorization": "s3cret"},
    ],
    ids=["no-token", "wrong-token", "not-bearer", "empty", "no-scheme"],
)
def test_http_refuses_a_request_without_a_valid_token(
    http_server: str, headers: dict[str, str]
) -> None:
    for method, url in [
        ("POST", http_server),
        ("GET", http_server),
        ("GET", http_server + "/../x"),
    ]:
        reply = httpx.request(method, url, headers=ACCEPT | headers, json=INIT, timeout=10)
        assert reply.status_code == 401, (method, url, reply.status_code, reply.text)
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "tiny" not in reply.text


def test_http_with_the_right_token_works(http_server: str) -> None:
    async def main() -> None:
        headers = {"Authorization": "Bearer s3cret"}
        async with (
            httpx.AsyncClient(headers=headers, timeout=30) as http,
            streamable_http_client(http_server, http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert {t.name for t in (await session.list_tools()).tools} >= TOOLS
            result = await session.call_tool("status", {})
            assert not result.isError, text(result)
            assert (result.structuredContent or {})["genomes"][0]["genome"] == "tiny"

    anyio.run(main)
    # the same request with a wrong token after a good one is still refused
    reply = httpx.post(http_server, headers=ACCEPT | {"authorization": "Bearer s3cre"}, json=INIT)
    assert reply.status_code == 401


def test_analyze_plan_and_validate_in_the_sandbox(evolved: Path, tmp_path: Path) -> None:
    """The one-node steps on the store's head: nothing is written into the served store."""
    with GenomeStore.open(f"sqlite:///{evolved}", create=False) as handle:
        tree, events = handle.head("tiny").tree, len(list(handle.log()))
    faster = dict(tree, **{"tiny/core.py": tree["tiny/core.py"].replace("COMMON:", "COMMON_SET:")})
    faster["tiny/core.py"] += "\nCOMMON_SET = frozenset(COMMON)\n"
    broken = dict(
        tree, **{"tiny/core.py": tree["tiny/core.py"].replace("total += 1", "total += 2")}
    )

    async def body(session: ClientSession) -> None:
        found = (await session.call_tool("analyze", {"genome": "tiny"})).structuredContent or {}
        assert any(o["function"] == "count_common" for o in found["opportunities"]), found
        plans = (await session.call_tool("plan", {"genome": "tiny", "limit": 3})).structuredContent
        assert plans and 1 <= len(plans["plans"]) <= 3 and plans["plans"][0]["mutator"]
        good = await session.call_tool(
            "validate", {"genome": "tiny", "patch": make_patch(tree, faster)}
        )
        assert not good.isError, text(good)
        assert (good.structuredContent or {})["tests_passed"] is True
        bad = await session.call_tool(
            "validate", {"genome": "tiny", "patch": make_patch(tree, broken)}
        )
        said = bad.structuredContent or {}
        assert said["tests_passed"] is False and said["verdict"] == "reject", said

    in_memory(Target(store=str(evolved), workdir=tmp_path), body)
    with GenomeStore.open(f"sqlite:///{evolved}", create=False) as handle:
        assert len(list(handle.log())) == events


def test_tars_mcp_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    """Nothing to serve, a bad --http address, or HTTP without the swarm's tokens: one line each."""
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    cases = [
        ([], ["--store", "--config"]),
        (["--store", str(tmp_path / "s.db"), "--http", "localhost"], ["HOST:PORT"]),
        (["--store", str(tmp_path / "s.db"), "--http", "127.0.0.1:99999"], ["HOST:PORT"]),
        (["--store", str(tmp_path / "s.db"), "--http", "127.0.0.1:8765"], ["--config", "tokens"]),
    ]
    for args, needles in cases:
        result = runner.invoke(app, ["mcp", *args])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:"), (
            args,
            result.stderr,
        )
        for needle in needles:
            assert needle in lines[0], (args, lines[0])
