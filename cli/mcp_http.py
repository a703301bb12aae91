"""Streamable HTTP for `tars mcp --http`, behind a bearer token on every request.

The SDK's own bearer support is built for OAuth (an issuer, protected-resource metadata)
and guards only the ``/mcp`` route; TARS's tokens are the dashboard's, and the rule is
"nothing without one", on every path and method.  So the whole ASGI app sits behind
:class:`BearerGate`, which asks the ``check`` it was handed (docs/mcp.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from mcp.server.fastmcp import FastMCP
    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("tars.mcp")

#: ``check(token) -> caller | None``: who holds the token, as a name or ``(name, role)``
#: (the dashboard's roles: what the caller may change), or None (refused, 401).
Check = Callable[[str], "str | tuple[str, str] | None"]


class BearerGate:
    """Every HTTP request needs ``Authorization: Bearer TOKEN`` that ``check`` accepts; any
    other gets 401 before it reaches the MCP app.  The caller's name goes into the request's
    state (``tars_caller``), where tools find who asked."""

    def __init__(self, app: ASGIApp, check: Check) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        found = await self._caller(scope) if scope["type"] == "http" else None
        if found is None:
            await _refuse(send)
            return
        name, role = found if isinstance(found, tuple) else (found, None)
        state = scope.setdefault("state", {})
        state["tars_caller"], state["tars_role"] = name, role
        await self.app(scope, receive, send)

    async def _caller(self, scope: Scope) -> str | tuple[str, str] | None:
        found = [value for key, value in scope["headers"] if key.lower() == b"authorization"]
        if len(found) != 1:
            return None
        scheme, _, token = found[0].decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return await anyio.to_thread.run_sync(self.check, token)
        except Exception:  # a check that fails refuses: never let a request through on error
            log.exception("token check failed")
            return None


async def _refuse(send: Send) -> None:
    body = json.dumps(
        {
            "error": "unauthorized",
            "hint": "send Authorization: Bearer TOKEN (`tars keys --token NAME`)",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="tars"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def http_app(server: FastMCP, check: Check) -> ASGIApp:
    """The server's streamable HTTP app (at ``/mcp``) behind :class:`BearerGate`."""
    return BearerGate(server.streamable_http_app(), check)
