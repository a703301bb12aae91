"""A script's MCP client, on the official SDK: start (stdio) or connect (streamable HTTP).

A server is named by one string: an ``http(s)://…/mcp`` URL is connected to over
streamable HTTP; anything else is a command line started over stdio (``tars mcp --store
x.db``), in the script's folder; an HTTP server gets ``Authorization: Bearer
$TARS_MCP_TOKEN`` when that variable is set (the token stays out of the script and its
versions).  Each use opens a session, initialises it, lists the
tools (an unknown tool is an error naming the ones there), calls the tool and closes: a
data source is read once per run, so a lasting session would buy nothing.  A tool's
result is its structured content when the server gives one (FastMCP wraps a non-object
result as ``{"result": …}``, unwrapped here), else its text, read as JSON when it is JSON.
"""

from __future__ import annotations

import json
import os
import shlex
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, NamedTuple

import anyio

from evolution.errors import TransportError

#: the bearer token sent to an HTTP server (`tars mcp --http` asks for a login token)
TOKEN_VARIABLE = "TARS_MCP_TOKEN"


class Tool(NamedTuple):
    """A tool a server lists: its name, description and output schema (None if it gives none)."""

    name: str
    description: str
    output_schema: dict[str, Any] | None


async def _session(stack: AsyncExitStack, server: str, cwd: Path) -> Any:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if server.startswith(("http://", "https://")):
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        token = os.environ.get(TOKEN_VARIABLE)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, timeout=60))
        read, write, _ = await stack.enter_async_context(
            streamable_http_client(server, http_client=http)
        )
    else:
        words = shlex.split(server)
        if not words:
            raise TransportError("an empty MCP server command", hint="name a command or a URL")
        params = StdioServerParameters(command=words[0], args=words[1:], cwd=str(cwd))
        read, write = await stack.enter_async_context(stdio_client(params))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    return session


def _result(result: Any) -> Any:
    if result.structuredContent is not None:
        data = result.structuredContent
        if isinstance(data, dict) and set(data) == {"result"}:
            return data["result"]
        return data
    texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    text = "\n".join(texts)
    try:
        return json.loads(text)
    except ValueError:
        return text


async def _use(server: str, tool: str | None, args: dict[str, Any], cwd: Path) -> Any:
    async with AsyncExitStack() as stack:
        session = await _session(stack, server, cwd)
        listed = (await session.list_tools()).tools
        tools = [Tool(t.name, t.description or "", t.outputSchema) for t in listed]
        if tool is None:
            return tools
        if tool not in {t.name for t in tools}:
            raise TransportError(
                f"the MCP server {server!r} has no tool {tool!r}",
                hint=f"its tools: {', '.join(sorted(t.name for t in tools)) or 'none'}",
            )
        result = await session.call_tool(tool, args)
        if result.isError:
            texts = " ".join(getattr(c, "text", "") for c in result.content)
            raise TransportError(
                f"the MCP tool {tool!r} failed: {texts.strip()[:400]}",
                hint="check the tool's arguments (the server's message above says which)",
            )
        return _result(result)


def _run(server: str, tool: str | None, args: dict[str, Any], cwd: Path) -> Any:
    try:
        return anyio.run(_use, server, tool, args, cwd)
    except TransportError:
        raise
    except ExceptionGroup as group:  # the SDK's task groups wrap what the session raised
        inner = _first(group)
        if isinstance(inner, TransportError):
            raise inner from None
        raise TransportError(
            f"cannot talk to the MCP server {server!r}: {inner}",
            hint="check the command starts an MCP server over stdio, or the URL ends in /mcp",
        ) from None
    except OSError as exc:
        raise TransportError(
            f"cannot talk to the MCP server {server!r}: {exc}",
            hint="check the command starts an MCP server over stdio, or the URL ends in /mcp",
        ) from None


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of a (nested) exception group."""
    inner = group.exceptions[0]
    return _first(inner) if isinstance(inner, BaseExceptionGroup) else inner


def list_tools(server: str, cwd: Path) -> list[Tool]:
    """The server's tools (a script's introspection of a server, and the CLI's ``--tools``)."""
    tools: list[Tool] = _run(server, None, {}, cwd)
    return tools


def call_tool(server: str, tool: str, args: dict[str, Any], cwd: Path) -> Any:
    """Call one tool; its structured (or JSON, or text) result."""
    return _run(server, tool, args, cwd)
