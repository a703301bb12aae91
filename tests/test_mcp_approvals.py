"""`tars mcp`'s approve and reject on the real approval library, against a real three-node
swarm in this process with a quorum of two (docs/mcp.md, docs/approval.md).

alice's server (the SDK's client in memory, with elicitation) approves one held candidate
and rejects another: neither moves the head.  bob's server over real streamable HTTP,
behind `tars mcp --http`'s own check (the dashboard's logins: tokens of `tars keys --token`
with their roles), refuses a request without a token or with a wrong one, refuses a
viewer's approval, and with an approver's token gives the second approval: every node
adopts.  The rejected candidate stays rejected.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session
from swarmkit import wait
from test_approval import (
    ONE,
    V0,
    approval_cluster,
    approving_swarm,
    heads,
    hold_two,
    same_index,
)

from cli.mcp_command import http_check
from cli.mcp_http import http_app
from cli.mcp_ops import Target
from cli.mcp_server import build_server
from evolution.tree import version_id
from runtime.access_tokens import make_token
from runtime.ports import free_port

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


def text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


@contextmanager
def served(app: Any, port: int) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1:``port`` in a thread; its /mcp address."""
    import uvicorn

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


def over_http(url: str, token: str, body: Callable[[ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        async with (
            httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
            streamable_http_client(url, http_client=http) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await body(session)

    anyio.run(main)


def test_mcp_approvals_adopt_only_at_the_quorum_on_every_node(tmp_path: Path) -> None:
    path, config = approval_cluster(tmp_path)  # quorum 2 of admin, alice, bob
    target = Target(config_path=path)
    with approving_swarm(path) as nodes:
        hold_two(nodes)

        asked: list[str] = []
        answers = iter([False, True, True])  # the person says no first: nothing is signed

        async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            asked.append(params.message)
            return types.ElicitResult(action="accept", content={"confirm": next(answers)})

        async def alice(session: ClientSession) -> None:
            listed = (await session.call_tool("held", {"genome": "tiny"})).structuredContent
            items = {item["candidate"]: item for item in (listed or {})["held"]}
            assert set(items) == {"c1", "c2"} and items["c1"]["quorum"] == 2, items
            args = {"genome": "tiny", "candidate": "c1", "reason": "read the diff"}
            declined = await session.call_tool("approve", args)
            assert (declined.structuredContent or {})["decided"] is False, text(declined)
            done = await session.call_tool("approve", args)
            assert not done.isError, text(done)
            result = (done.structuredContent or {})["result"]
            assert result["approvals"] == ["alice"] and result["adopted"] is False, result
            gone = await session.call_tool("reject", {"genome": "tiny", "candidate": "c2"})
            assert (gone.structuredContent or {})["result"]["rejected"] is True, text(gone)

        async def in_memory() -> None:
            server = build_server(target, approver="alice")
            async with create_connected_server_and_client_session(
                server, elicitation_callback=person
            ) as session:
                await alice(session)

        anyio.run(in_memory)
        assert len(asked) == 3 and "signed as alice" in asked[0], asked
        wait(lambda: same_index(nodes), 30, "every node applied alice's decisions")
        assert heads(nodes) == {V0}  # one approval of two adopts nothing, anywhere
        assert all("c1" in n.store.head("tiny").pending for n in nodes)

        viewer = make_token(config, "vera", role="viewer")
        approver = make_token(config, "bobby", role="approver")
        port = free_port()
        app = http_app(build_server(target, approver="bob", port=port), http_check(target))
        with served(app, port) as url:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": viewer}):
                reply = httpx.post(url, headers=ACCEPT | headers, json=INIT, timeout=10)
                assert reply.status_code == 401, (headers, reply.status_code)

            async def refused(session: ClientSession) -> None:
                done = await session.call_tool("approve", {"genome": "tiny", "candidate": "c1"})
                assert done.isError and "vera (viewer) may not approve" in text(done), text(done)

            over_http(url, viewer, refused)
            assert heads(nodes) == {V0}

            async def bob(session: ClientSession) -> None:
                final = await session.call_tool("approve", {"genome": "tiny", "candidate": "c2"})
                assert final.isError and "a rejection is final" in text(final), text(final)
                done = await session.call_tool("approve", {"genome": "tiny", "candidate": "c1"})
                assert not done.isError, text(done)
                result = (done.structuredContent or {})["result"]
                assert result["adopted"] is True and result["approvals"] == ["alice", "bob"]

            over_http(url, approver, bob)
        wait(lambda: heads(nodes) == {version_id(ONE)}, 60, "adopted on every node")
        reasons = [
            e.data.get("reason")
            for e in nodes[2].store.log(genome="tiny")
            if e.type == "ApprovalGiven"
        ]
        assert reasons == [
            "read the diff (via mcp by stdio)",
            "(via mcp by stdio)",
            "(via mcp by bobby)",
        ], reasons
