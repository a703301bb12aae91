"""`tars mcp`: serve the MCP server over stdio (the default) or streamable HTTP.

Only typer is imported at module level: every `tars` run imports the command modules, and
the MCP SDK (pydantic, starlette, uvicorn) is for the one command that serves it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cli.common import handle_errors
from cli.node import WEAK_HELP
from evolution.errors import ConfigError

if TYPE_CHECKING:
    from cli.mcp_http import Check
    from cli.mcp_ops import Target


@handle_errors
def mcp(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="serve the running swarm of this cluster.yml"
    ),
    store: str | None = typer.Option(
        None, "--store", help="serve this one store: a SQLite path or a postgresql:// URL"
    ),
    node: str | None = typer.Option(
        None, "--node", "-n", help="with --config: read this node's store (default: the first)"
    ),
    http: str | None = typer.Option(
        None, "--http", help="HOST:PORT: streamable HTTP at http://HOST:PORT/mcp (bearer token)"
    ),
    workdir: Path = typer.Option(
        Path(".tars") / "mcp", "--workdir", help="where the server's sandbox works"
    ),
    approver: str = typer.Option(
        "admin", "--approver", help="the key that signs approve/reject (an approver's)"
    ),
    weak: bool = typer.Option(False, "--accept-weak-isolation", help=WEAK_HELP),
) -> None:
    """Serve TARS to an MCP client (an AI agent): tools for status, the log, cycles, rollback,
    rollouts; resources for manifests, versions, diffs and events (docs/mcp.md)."""
    from cli.mcp_ops import Target

    target = Target(store=store, config_path=config, node=node, workdir=workdir, weak=weak)
    if http is None:
        serve_stdio(target, approver)
        return
    host, port = parse_address(http)
    serve_http(target, host, port, http_check(target), approver)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT`` for 127.0.0.1) as a host and a port number."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"--http {text!r} is not HOST:PORT", hint="pass e.g. --http 127.0.0.1:8765"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def http_check(target: Target) -> Check:
    """The dashboard's login over the swarm's keys folder (:func:`runtime.dashboard.logins_for`):
    a token made by `tars keys --token NAME` (its role with it) or the admin key's secret,
    where this machine holds it; anything else is refused (401)."""
    if target.config_path is None:
        raise ConfigError(
            "--http needs --config: the tokens `tars keys --token NAME` makes live in its keys folder",
            hint="pass --config cluster.yml (or use stdio: no --http)",
        )
    from runtime.dashboard import logins_for

    return logins_for(target.config).login


def serve_stdio(target: Target, approver: str = "admin") -> None:
    """Speak MCP on stdin/stdout until the client closes them.

    File descriptor 1 is moved first: the protocol keeps a private copy of it, and fd 1
    itself points at stderr, so nothing else (a child process, a C library, a stray print)
    can write into the protocol's stream.
    """
    import io
    import os
    import sys

    from cli.mcp_server import build_server

    protocol = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(io.FileIO(protocol, "w"), encoding="utf-8", write_through=True)
    build_server(target, approver=approver, stdio=True).run("stdio")


def serve_http(target: Target, host: str, port: int, check: Check, approver: str = "admin") -> None:
    """Serve streamable HTTP at http://HOST:PORT/mcp behind the bearer token ``check``."""
    import uvicorn

    from cli.common import console
    from cli.mcp_http import http_app
    from cli.mcp_server import build_server

    server = build_server(target, host=host, port=port, approver=approver)
    console.print(f"MCP over streamable HTTP at http://{host}:{port}/mcp (bearer token)")
    uvicorn.run(http_app(server, check), host=host, port=port, log_level="warning")
