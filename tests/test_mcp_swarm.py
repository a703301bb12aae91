"""`tars mcp --config`: a real in-process swarm through the SDK's client; and approve's
elicitation (the person asked through the protocol before a decision is signed).

The approval calls (``held``/``decide``) are another helper's module, merged later: the
elicitation test hands the server stand-ins for those two calls, recording what they were
asked; what it checks is the server's side (ask first, sign only on a yes).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, types
from mcp.shared.memory import create_connected_server_and_client_session
from swarmkit import candidate, in_process_swarm, wait

from cli.demo import write_cluster
from cli.mcp_ops import Target
from cli.mcp_server import Approvals, build_server
from consensus.ledger import cycle_entry, register_entry
from runtime.genome_files import load_genome

TINY = Path(__file__).parent / "data" / "tiny"


def connected(server: Any, body: Callable[[ClientSession], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        async with create_connected_server_and_client_session(server, **kw) as session:
            await body(session)

    anyio.run(main)


def text(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


def test_status_rollout_and_rollback_of_a_running_swarm(tmp_path: Path) -> None:
    with in_process_swarm(tmp_path / "swarm", TINY) as nodes:
        _, tree = load_genome(TINY)
        nodes[0].propose(
            register_entry("tiny", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
        )
        _, adoption = candidate(tree, "written plainly.", "written plainly (by MCP's test).")
        nodes[0].propose(cycle_entry("tiny", nodes[0].id, 1, 3, [], [], adoption, time.time()))
        wait(
            lambda: all(n.store.head("tiny").version == adoption.version for n in nodes),
            what="the adoption on every node",
        )
        target = Target(config_path=tmp_path / "swarm" / "cluster.yml")

        async def body(session: ClientSession) -> None:
            status = (await session.call_tool("status", {})).structuredContent or {}
            assert status["members"] == ["node-1", "node-2", "node-3"]
            assert status["leader"] in status["members"] and status["term"] >= 1
            assert all(n["up"] for n in status["nodes"])
            assert {n["heads"]["tiny"]["version"] for n in status["nodes"]} == {adoption.version}
            rollout = await session.call_tool("rollout", {"genome": "tiny", "order": "status"})
            assert not rollout.isError, text(rollout)
            assert set((rollout.structuredContent or {})["nodes"]) == set(status["members"])
            bad = await session.call_tool("rollout", {"genome": "tiny", "order": "explode"})
            assert bad.isError and "'order'" in text(bad) and "promote" in text(bad)
            back = await session.call_tool(
                "rollback", {"genome": "tiny", "to": adoption.parent[:10], "reason": "test"}
            )
            assert not back.isError, text(back)
            assert (back.structuredContent or {})["head"] == adoption.parent

        connected(build_server(target), body)
        wait(
            lambda: all(n.store.head("tiny").version == adoption.parent for n in nodes),
            what="the rollback on every node",
        )
        reasons = [
            e.data.get("reason")
            for e in nodes[2].store.log(genome="tiny")
            if e.type == "RolledBack"
        ]
        assert reasons == ["test (by stdio)"]


def stand_ins(decided: list[tuple[Any, ...]]) -> Approvals:
    """The approval helper's ``held`` and ``decide``, as stand-ins that record their calls."""

    def held(config: Any, genome: str | None = None) -> list[dict[str, Any]]:
        return [{"genome": "tiny", "candidate": "c1", "rules": ["max_patch_lines"]}]

    def decide(
        config: Any, genome: str, candidate: str, decision: str, approver: str, reason: str = ""
    ) -> dict[str, Any]:
        decided.append((genome, candidate, decision, approver, reason))
        return {"ok": True, "index": 42}

    return held, decide


def test_approve_asks_the_person_through_elicitation(tmp_path: Path) -> None:
    config = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    decided: list[tuple[Any, ...]] = []
    asked: list[str] = []
    answers = iter([True, False])

    async def person(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        yes = next(answers)
        return types.ElicitResult(action="accept", content={"confirm": yes})

    async def body(session: ClientSession) -> None:
        listed = {t.name for t in (await session.list_tools()).tools}
        assert {"held", "approve", "reject"} <= listed
        held = (await session.call_tool("held", {})).structuredContent or {}
        assert held["held"][0]["candidate"] == "c1"
        yes = await session.call_tool(
            "approve", {"genome": "tiny", "candidate": "c1", "reason": "ok"}
        )
        assert (yes.structuredContent or {})["decided"] is True, text(yes)
        no = await session.call_tool("reject", {"genome": "tiny", "candidate": "c1"})
        assert (no.structuredContent or {})["decided"] is False, text(no)

    server = build_server(Target(config_path=config), approvals=stand_ins(decided), approver="ann")
    connected(server, body, elicitation_callback=person)
    assert len(asked) == 2 and "approve candidate c1 of tiny" in asked[0] and "ann" in asked[0]
    assert decided == [("tiny", "c1", "approve", "ann", "ok (via mcp by stdio)")]


def test_without_elicitation_the_call_itself_decides(tmp_path: Path) -> None:
    config = write_cluster(tmp_path, 1, TINY, 1, 1, 3, 1)
    decided: list[tuple[Any, ...]] = []

    async def body(session: ClientSession) -> None:
        done = await session.call_tool("reject", {"genome": "tiny", "candidate": "c1"})
        assert (done.structuredContent or {})["confirmed"] is None, text(done)

    connected(build_server(Target(config_path=config), approvals=stand_ins(decided)), body)
    assert decided == [("tiny", "c1", "reject", "admin", "(via mcp by stdio)")]


def test_no_approval_tools_without_the_approval_module(tmp_path: Path) -> None:
    """In a build without the approval helper's module, approve/reject are not offered."""
    from cli.mcp_server import default_approvals

    async def body(session: ClientSession) -> None:
        listed = {t.name for t in (await session.list_tools()).tools}
        assert ("approve" in listed) == (default_approvals() is not None)

    connected(build_server(Target(store=str(tmp_path / "s.db"))), body)
