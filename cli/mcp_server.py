"""`tars mcp`: the swarm's tools and resources for an AI agent, on the official MCP SDK.

The server is a front end like the CLI: each tool calls the library function the `tars`
verb calls (:mod:`cli.mcp_ops`, :mod:`cli.mcp_reads`), in a worker thread so the event
loop keeps answering (progress, cancellation, other sessions) while a cycle runs in the
sandbox.  A :class:`TarsError` becomes a tool error carrying its message and hint, never a
traceback.  Over streamable HTTP every request passes :class:`BearerGate` first: a bearer
token checked by the ``check`` callable handed to :func:`cli.mcp_http.http_app` (the dashboard's
login: tokens with their roles, the admin secret), and nothing is served without one.  docs/mcp.md has the decisions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import BaseModel, Field, ValidationError

from cli import mcp_ops, mcp_reads, mcp_steps
from cli.mcp_ops import Target
from evolution.errors import TarsError

log = logging.getLogger("tars.mcp")

#: The approval helper's two calls, ``held(config, genome)`` and ``decide(config, genome,
#: candidate, decision, approver, reason)`` (see :func:`default_approvals`).
Approvals = tuple[Callable[..., Any], Callable[..., Any]]
T = TypeVar("T")

INSTRUCTIONS = (
    "TARS evolves programs (genomes) by proving candidate patches in a sandbox and adopting "
    "the winners through a swarm's Raft ledger. Start with `status` and `genomes`; read the "
    "log with `log`, versions with `lineage` and `diff`; `run_cycles` evolves a genome of a "
    "single store, `rollback` and `rollout` change a running swarm."
)


async def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking library call in a worker thread; a TarsError becomes a tool error
    with its message and hint (``Error executing tool X: message — hint``)."""
    try:
        return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
    except TarsError as exc:
        raise ToolError(str(exc)) from exc
    except Exception as exc:  # a bug: said in one line to the agent, in full in our log
        log.exception("tool call failed")
        raise ToolError(
            f"internal error ({type(exc).__name__}: {exc}); see the server's log"
        ) from exc


def plain(value: Any) -> Any:
    """A value JSON can carry (event data may hold bytes or other non-JSON values)."""
    return json.loads(json.dumps(value, default=str))


def _caller(ctx: Context[Any, Any, Any]) -> str:
    """Who asked: the HTTP token's owner (set by :class:`BearerGate`), or ``stdio``."""
    request = ctx.request_context.request
    state = getattr(request, "scope", {}).get("state", {}) if request is not None else {}
    return str(state.get("tars_caller") or "stdio")


class TarsMCP(FastMCP):
    """FastMCP whose argument errors name each argument, what was wrong, and the fix.

    The SDK checks a call's arguments against the tool's signature (pydantic) before the
    tool runs and says so in pydantic's words, with a link per error; an agent gets one
    line per argument instead.
    """

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_errors(name, exc.__cause__)) from exc.__cause__
            raise


def argument_errors(tool: str, error: ValidationError) -> str:
    """``Error executing tool T: argument 'x': <what> (got <value>); … — <the fix>``."""
    said = []
    for found in error.errors(include_url=False):
        where = ".".join(str(part) for part in found["loc"]) or "arguments"
        got = "" if found["type"] == "missing" else f" (got {found.get('input')!r})"
        said.append(f"argument {where!r}: {found['msg']}{got}")
    return (
        f"Error executing tool {tool}: {'; '.join(said)} — "
        "call it again with the types its input schema gives (tools/list)"
    )


def build_server(
    target: Target,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    approvals: Approvals | None = None,
    approver: str = "admin",
    stdio: bool = False,
) -> FastMCP:
    """The MCP server of ``target``: every tool and resource registered; ``approvals`` (by
    default :mod:`cli.approvals`) backs held/approve/reject, signed as ``approver``.
    ``stdio``: the one server of this process speaks on stdout (see :func:`_quiet_stdout`)."""
    server = TarsMCP(
        "tars",
        instructions=INSTRUCTIONS,
        host=host,
        port=port,
        lifespan=_quiet_stdout if stdio else None,
        log_level="WARNING",
    )
    _register_reads(server, target)
    _register_steps(server, target)
    _register_swarm(server, target)
    _register_resources(server, target)
    found = approvals if approvals is not None else default_approvals()
    if found is not None:
        register_approvals(server, target, found, approver)
    return server


@asynccontextmanager
async def _quiet_stdout(server: FastMCP) -> AsyncIterator[None]:
    """Once the stdio transport holds its stream, a stray ``print`` goes to stderr, not
    into the protocol (see :func:`cli.mcp_command.serve_stdio`).  Only for stdio: it swaps
    the process's ``sys.stdout``, which sessions running side by side must not do."""
    import sys

    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def _register_reads(server: FastMCP, target: Target) -> None:
    def reading(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
        async def call(*args: Any) -> T:
            def read() -> T:
                with target.reading() as store:
                    return fn(store, *args)

            return await _call(read)

        return call

    @server.tool()
    async def genomes() -> dict[str, Any]:
        """Every genome of the store: head version, fitness, versions, cycles, held candidates."""
        return {"genomes": plain(await reading(mcp_reads.genomes)())}

    @server.tool()
    async def log(
        genome: str | None = None,
        type: str | None = None,
        node: str | None = None,
        since: str | None = None,
        limit: int = mcp_reads.DEFAULT_EVENTS,
        detail: bool = False,
    ) -> dict[str, Any]:
        """The newest events of the log, oldest first, filtered by genome, event type
        (VersionAdopted, CandidateEvaluated, RolledBack, CycleCompleted, RolloutStepped,
        Registered, …), node, and time (`since`: ISO-8601, UTC unless it says); `limit`
        1-1000; `detail` adds each event's data (evidence, patch)."""
        query = partial(
            mcp_reads.query_log,
            genome=genome, type=type, node=node, since=since, limit=limit, detail=detail,
        )  # fmt: skip
        return plain(await reading(query)())

    @server.tool()
    async def lineage(genome: str) -> dict[str, Any]:
        """The genome's version tree: each version's parent, mutator, fitness, whether it is
        the head or was rolled back."""
        return plain(await reading(mcp_reads.lineage)(genome))

    @server.tool()
    async def diff(genome: str, a: str, b: str) -> str:
        """The unified diff from version `a` to version `b` (ids or unique prefixes)."""
        return await reading(mcp_reads.diff)(genome, a, b)


def _register_steps(server: FastMCP, target: Target) -> None:
    @server.tool()
    async def analyze(genome: str) -> dict[str, Any]:
        """Profile the genome's head (a genome of the store, or a genome folder) in the
        sandbox: ranked opportunities calibrated by its log, or why nothing is worth trying."""
        return plain(await _call(mcp_steps.analyze, target, genome))

    @server.tool()
    async def plan(genome: str, seed: int = 7, limit: int = 8) -> dict[str, Any]:
        """The plans one cycle would make: a mutator chosen for each opportunity, and why."""
        return plain(await _call(mcp_steps.plan, target, genome, seed, limit))

    @server.tool()
    async def validate(genome: str, patch: str, seed: int = 7) -> dict[str, Any]:
        """Prove a unified diff against the genome's head: applied, the genome's tests in the
        jail, then the benchmark against the parent; the governor's verdict and its reasons.
        Nothing is recorded."""
        return plain(await _call(mcp_steps.validate, target, genome, patch, seed))

    @server.tool()
    async def run_cycles(
        genome: str,
        ctx: Context[Any, Any, Any],
        cycles: int = 1,
        seed: int = 7,
        candidates: int = 4,
    ) -> dict[str, Any]:
        """Evolve the genome (a genome of the store, or a genome folder to register) for
        `cycles` more cycles (1 or more) of `candidates` candidates each, recording every
        decision in the store; a progress notification follows each cycle."""

        def hook(done: int, total: int, line: str) -> None:
            anyio.from_thread.run(partial(ctx.report_progress, done, total, line))

        run = partial(
            mcp_steps.run_cycles,
            target,
            genome,
            cycles,
            seed=seed,
            candidates=candidates,
            hook=hook,
        )
        return plain(await _call(run))


def _register_swarm(server: FastMCP, target: Target) -> None:
    @server.tool()
    async def status() -> dict[str, Any]:
        """The swarm: members, leader, term, each node's applied index, lag and genome heads
        (a single store: its genomes' heads)."""
        return plain(await _call(mcp_ops.status, target))

    @server.tool()
    async def rollback(
        genome: str, to: str, ctx: Context[Any, Any, Any], reason: str = "rollback via mcp"
    ) -> dict[str, Any]:
        """Make an earlier version (`to`: id or unique prefix) the head again; on a swarm it
        is committed through the ledger and every node applies it. Erases nothing."""
        _guard(ctx, "rollout")
        return plain(await _call(mcp_ops.rollback, target, genome, to, reason, _caller(ctx)))

    @server.tool()
    async def rollout(
        genome: str, ctx: Context[Any, Any, Any], order: str = "status", node: str | None = None
    ) -> dict[str, Any]:
        """Progressive delivery on each node (or `node`): `order` is status, promote (all
        traffic to green now), abort (all back to blue), pause or resume."""
        if order != "status":
            _guard(ctx, "rollout")
        return plain(await _call(mcp_ops.rollout, target, genome, order, node))


def _register_resources(server: FastMCP, target: Target) -> None:
    async def read(fn: Callable[..., T], *args: Any) -> T:
        def call() -> T:
            with target.reading() as store:
                return fn(store, *args)

        return await _call(call)

    @server.resource("tars://genome/{name}/manifest", mime_type="application/toml")
    async def manifest(name: str) -> str:
        """The genome.toml of the genome's head."""
        return await read(mcp_reads.manifest, name)

    @server.resource("tars://genome/{name}/version/{version}", mime_type="application/json")
    async def version(name: str, version: str) -> str:
        """One version: its files (path, bytes), parent, mutator, fitness, the event that made it."""
        return json.dumps(plain(await read(mcp_reads.version_info, name, version)), indent=1)

    @server.resource("tars://genome/{name}/diff/{a}/{b}", mime_type="text/x-diff")
    async def diff(name: str, a: str, b: str) -> str:
        """The unified diff from version a to version b."""
        return await read(mcp_reads.diff, name, a, b)

    @server.resource("tars://log/{genome}", mime_type="application/json")
    async def events(genome: str) -> str:
        """The genome's newest events (the `log` tool filters and pages)."""
        found = await read(partial(mcp_reads.query_log, genome=genome))
        return json.dumps(plain(found), indent=1)


def _guard(ctx: Context[Any, Any, Any], action: str) -> None:
    refused = refusal(ctx, action)
    if refused is not None:
        raise ToolError(refused)


# ---- approve and reject: the approval helper's module, wired when this build has it ------


class Confirm(BaseModel):
    """What the person is asked before a decision is signed and committed."""

    confirm: bool = Field(description="yes: sign and commit this decision")


def default_approvals() -> Approvals | None:
    """``held`` and ``decide`` of the approval library (:mod:`cli.approvals`, docs/approval.md):
    decisions are signed in this process with the server's ``--approver`` key."""
    from cli.approvals import decide, held

    return held, decide


def refusal(ctx: Context[Any, Any, Any], action: str) -> str | None:
    """Why this caller may not do ``action`` (None: it may).  Over HTTP the caller's role is
    the dashboard's (its token's, or ``admin`` for the admin secret; docs/dashboard.md):
    ``operator`` steers rollouts and rolls back, ``approver`` decides held candidates.  Over
    stdio the caller is whoever started the server on this machine, with its keys."""
    from runtime.dashboard.auth import allowed

    request = ctx.request_context.request
    if request is None:
        return None
    state = getattr(request, "scope", {}).get("state", {})
    role = state.get("tars_role")
    if isinstance(role, str) and allowed(role, action):
        return None
    what, needed = _NEEDS[action]
    return (
        f"{state.get('tars_caller') or 'this caller'} ({role or 'no role'}) may not {what} "
        f"— call with a token of role {needed} or above (`tars keys --token NAME --role {needed}`)"
    )


#: what each guarded action is called, and the role it needs (runtime/dashboard/auth.py)
_NEEDS = {
    "decide": ("approve or reject", "approver"),
    "rollout": ("roll back or steer rollouts", "operator"),
}


async def confirmed(ctx: Context[Any, Any, Any], question: str) -> bool | None:
    """Ask the person through the client (MCP elicitation): True or False; None when the
    client cannot ask (then the agent's call itself is the decision)."""
    params = ctx.session.client_params
    if params is None or params.capabilities.elicitation is None:
        return None
    answer = await ctx.elicit(question, schema=Confirm)
    return answer.action == "accept" and answer.data.confirm


def register_approvals(server: FastMCP, target: Target, calls: Approvals, approver: str) -> None:
    """``held``, ``approve`` and ``reject`` over the approval helper's ``held``/``decide``."""
    held_of, decide = calls

    @server.tool()
    async def held(genome: str | None = None) -> dict[str, Any]:
        """Candidates the governor held for a human: patch, evidence, rules, approvals so far."""
        return {"held": plain(await _call(held_of, target.config, genome))}

    async def decision(
        ctx: Context[Any, Any, Any], genome: str, candidate: str, verdict: str, reason: str
    ) -> dict[str, Any]:
        _guard(ctx, "decide")
        answer = await confirmed(
            ctx, f"{verdict} candidate {candidate} of {genome}, signed as {approver}? {reason}"
        )
        if answer is False:
            return {"decided": False, "why": "the person did not confirm; nothing was signed"}
        why = f"{reason} (via mcp by {_caller(ctx)})".strip()
        done = await _call(decide, target.config, genome, candidate, verdict, approver, why)
        return {"decided": True, "confirmed": answer, "result": plain(done)}

    @server.tool()
    async def approve(
        genome: str, candidate: str, ctx: Context[Any, Any, Any], reason: str = ""
    ) -> dict[str, Any]:
        """Approve a held candidate (signed with the server's approver key); the person is
        asked to confirm first where the client supports elicitation."""
        return await decision(ctx, genome, candidate, "approve", reason)

    @server.tool()
    async def reject(
        genome: str, candidate: str, ctx: Context[Any, Any, Any], reason: str = ""
    ) -> dict[str, Any]:
        """Reject a held candidate for good (signed); confirmed like `approve`."""
        return await decision(ctx, genome, candidate, "reject", reason)
