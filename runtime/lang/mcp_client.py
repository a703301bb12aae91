"""A script's MCP client, on the official SDK: start (stdio) or connect (streamable HTTP).

A server is named by one string: an ``http(s)://…/mcp`` URL is connected to over
streamable HTTP; anything else is a command line started over stdio (``tars mcp --store
x.db``), in the script's folder; an HTTP server gets ``Authorization: Bearer
$TARS_MCP_TOKEN`` when that variable is set (the token stays out of the script and its
versions).  A data source's read (:func:`call_tool`) opens a session, initialises it,
lists the tools (an unknown tool is an error naming the ones there), calls the tool and
closes: it is read once per run.  A script's ``call`` statements go through
:class:`Sessions`, which keeps each server's session for the run: starting a server over
stdio costs seconds, and a script may call in every verdict.  A tool's
result is its structured content when the server gives one (FastMCP wraps a non-object
result as ``{"result": …}``, unwrapped here), else its text, read as JSON when it is JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import threading
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


async def _tools(session: Any) -> list[Tool]:
    listed = (await session.list_tools()).tools
    return [Tool(t.name, t.description or "", t.outputSchema) for t in listed]


def _known(server: str, tool: str, tools: list[Tool]) -> None:
    if tool not in {t.name for t in tools}:
        raise TransportError(
            f"the MCP server {server!r} has no tool {tool!r}",
            hint=f"its tools: {', '.join(sorted(t.name for t in tools)) or 'none'}",
        )


def _answer(tool: str, result: Any) -> Any:
    if result.isError:
        texts = " ".join(getattr(c, "text", "") for c in result.content)
        raise TransportError(
            f"the MCP tool {tool!r} failed: {texts.strip()[:400]}",
            hint="check the tool's arguments (the server's message above says which)",
        )
    return _result(result)


async def _use(server: str, tool: str | None, args: dict[str, Any], cwd: Path) -> Any:
    async with AsyncExitStack() as stack:
        session = await _session(stack, server, cwd)
        tools = await _tools(session)
        if tool is None:
            return tools
        _known(server, tool, tools)
        return _answer(tool, await session.call_tool(tool, args))


def _run(server: str, tool: str | None, args: dict[str, Any], cwd: Path) -> Any:
    return _said(server, lambda: anyio.run(_use, server, tool, args, cwd))


def _said(server: str, work: Any) -> Any:
    """``work()``, with what the SDK raised said as a :class:`TransportError`."""
    try:
        return work()
    except TransportError:
        raise
    except BaseExceptionGroup as group:  # the SDK's task groups wrap what the session raised
        inner = _first(group)
        if isinstance(inner, TransportError):
            raise inner from None
        raise TransportError(
            f"cannot talk to the MCP server {server!r}: {inner}",
            hint="check the command starts an MCP server over stdio, or the URL ends in /mcp",
        ) from None
    except Exception as exc:  # OSError, the SDK's McpError (a server that closed), …
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


class _Link:
    """One server's lasting session, held by a task of its own on the client's loop (the
    SDK's task groups must be entered and left by the same task); calls come by a queue."""

    def __init__(self, server: str, cwd: Path) -> None:
        self.server, self.cwd = server, cwd
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], asyncio.Future[Any]] | None]
        self.tools: list[Tool] = []
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Start (or connect to) the server and list its tools; raise what failed."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue = asyncio.Queue()
        self.task = asyncio.ensure_future(self._serve(ready))
        await ready

    async def call(self, tool: str, args: dict[str, Any]) -> Any:
        """The tool's raw result, from the session's task."""
        if self.task is None or self.task.done():
            raise TransportError(
                f"the MCP server {self.server!r} is gone", hint="see its errors above"
            )
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self.queue.put((tool, args, done))
        return await done

    async def _serve(self, ready: asyncio.Future[None]) -> None:
        try:
            async with AsyncExitStack() as stack:
                session = await _session(stack, self.server, self.cwd)
                self.tools = await _tools(session)
                ready.set_result(None)
                while (item := await self.queue.get()) is not None:
                    tool, args, done = item
                    try:
                        done.set_result(await session.call_tool(tool, args))
                    except Exception as exc:  # noqa: BLE001 (handed to the caller)
                        done.set_exception(exc)
        except BaseException as exc:  # noqa: BLE001 (handed to whoever waits)
            if not ready.done():
                ready.set_exception(exc)
            while not self.queue.empty():
                item = self.queue.get_nowait()
                if item is not None and not item[2].done():
                    item[2].set_exception(exc)


class Sessions:
    """The MCP servers one script run calls (``call ops.tool(…)``), each started or
    connected to at its first call and kept until :meth:`close`: a ``tars mcp`` over
    stdio costs seconds to start, so a script that calls in every verdict starts it once.

    The sessions live on an event loop of a daemon thread of their own (a script runs on
    the caller's thread, with no loop); a server left open at exit gets end-of-file on
    its stdin and stops.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self._links: dict[str, _Link] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _on_loop(self, work: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="mcp-client", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def _link(self, server: str) -> _Link:
        link = self._links.get(server)
        if link is None or link.task is None or link.task.done():
            link = _Link(server, self.cwd)
            _said(server, lambda: self._on_loop(link.open()))
            self._links[server] = link
        return link

    def tool(self, server: str, tool: str) -> Tool:
        """The tool as the server lists it (its output schema), the server started if new."""
        link = self._link(server)
        _known(server, tool, link.tools)
        return next(t for t in link.tools if t.name == tool)

    def call(self, server: str, tool: str, args: dict[str, Any]) -> Any:
        """Call one tool on the server's lasting session; its result, as :func:`call_tool`."""
        self.tool(server, tool)
        link = self._links[server]
        return _answer(tool, _said(server, lambda: self._on_loop(link.call(tool, args))))

    def close(self) -> None:
        """End every session (its server process with it) and the loop's thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def end() -> None:
            for link in self._links.values():
                if link.task is not None and not link.task.done():
                    await link.queue.put(None)
                    await asyncio.wait([link.task], timeout=10.0)

        try:
            asyncio.run_coroutine_threadsafe(end(), loop).result(timeout=30.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10.0)
            self._links.clear()
            self._loop = self._thread = None
