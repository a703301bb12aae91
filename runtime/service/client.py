"""A caller of the service's HTTP front (docs/contracts.md, "the service's HTTP front").

``tars call`` and ``tars load`` go through here: where a node's front listens (its
``http`` port in cluster.yml), one call with the front's errors turned into
:class:`~evolution.errors.ServiceError` with the front's own hint, and a genome's
description (``GET /v1/{genome}``) from which a request mix can be generated.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from evolution.errors import ConfigError, ServiceError, TarsError, TransportError

if TYPE_CHECKING:
    from runtime.config import ClusterConfig

#: The header a caller may set to name a request; the front echoes it.
REQUEST_HEADER = "X-Tars-Request"


class Answer(NamedTuple):
    """A served call: the function's result and which version and colour answered it."""

    result: Any
    version: str | None
    colour: str | None
    seconds: float
    request: str | None


def http_url(config: ClusterConfig, node_id: str, *, ask: bool = True) -> str:
    """``http://HOST:PORT`` of the node's front: its ``http`` port in cluster.yml, else
    the address the running node gives in its status (a port it chose at start).

    Read defensively: a cluster.yml written before the service has no such port, and a
    node that is down cannot say its own; this says so instead of guessing one.
    """
    spec = config.node(node_id)
    port = getattr(spec, "http", None)
    if isinstance(port, int) and port > 0:
        return f"http://{spec.host}:{port}"
    said = _said_by(config, node_id) if ask else None
    if said is not None:
        return said
    raise ConfigError(
        f"node {node_id} of {config.path} has no http port and does not say one: "
        "its service is not reachable",
        hint=f"start the node (`tars cluster up`), or add `http: PORT` to {node_id} in "
        f"{config.path} (docs/cluster.md), or pass the front's address with --url http://HOST:PORT",
    )


def _said_by(config: ClusterConfig, node_id: str) -> str | None:
    """The ``http`` address in the running node's admin status, if it answers with one."""
    from runtime.launcher import admin_request

    try:
        status = admin_request(config, node_id, {"op": "status"}, timeout=3.0)
    except TarsError:
        return None
    said = status.get("http") if isinstance(status, dict) else None
    return said if isinstance(said, str) and said.startswith("http://") else None


def node_urls(
    config: ClusterConfig, node_id: str | None = None, *, first: bool = False
) -> list[str]:
    """The fronts of every node that has an http port (or says one), or of ``node_id``
    alone; ``first``: stop at the first one found (a single call needs no more)."""
    if node_id is not None:
        return [http_url(config, node_id)]
    urls: list[str] = []
    for member in config.ids:
        try:
            urls.append(http_url(config, member))
        except ConfigError:
            continue
        if first:
            break
    if not urls:
        raise ConfigError(
            f"no node of {config.path} has an http port or says one: no service to reach",
            hint=f"start the swarm (`tars cluster up`), or add `http: PORT` to the nodes in "
            f"{config.path} (docs/cluster.md), or pass --url http://HOST:PORT",
        )
    return urls


def failure(status: int, body: Any, where: str) -> ServiceError:
    """The front's error answer as a :class:`ServiceError` that keeps its hint."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = f"{where}: {status} {body['error']}"
        hint = body.get("hint")
        if not isinstance(hint, str) or not hint:
            hint = (
                "the genome's code raised on these arguments: look at the error, or at the "
                "node's log (`tars cluster logs --id NODE`)"
                if body.get("kind") == "exception"
                else "see the front's answer above"
            )
        return ServiceError(message, hint=hint)
    return ServiceError(
        f"{where}: {status} with a body that is not the front's error",
        hint="is this address a TARS node's http port? `tars cluster status` lists them",
    )


def call(
    url: str,
    genome: str,
    function: str,
    args: dict[str, Any],
    *,
    timeout: float = 30.0,
    request: str | None = None,
) -> Answer:
    """``POST /v1/{genome}/{function}`` with ``args``; the answer, or a ServiceError."""
    import httpx

    where = f"{url}/v1/{genome}/{function}"
    headers = {REQUEST_HEADER: request} if request else {}
    started = time.perf_counter()
    try:
        reply = httpx.post(where, json=args, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransportError(
            f"{where}: {type(exc).__name__}: {exc}",
            hint="is the node up? `tars cluster status` shows each node's http address",
        ) from exc
    seconds = time.perf_counter() - started
    body = _json(reply)
    if reply.status_code != 200 or not isinstance(body, dict) or "result" not in body:
        raise failure(reply.status_code, body, where)
    return Answer(
        body["result"],
        body.get("version"),
        body.get("colour"),
        seconds,
        reply.headers.get(REQUEST_HEADER),
    )


def describe(url: str, genome: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """``GET /v1/{genome}``: its version and functions with their argument types and examples."""
    import httpx

    where = f"{url}/v1/{genome}"
    try:
        reply = httpx.get(where, timeout=timeout)
    except httpx.HTTPError as exc:
        raise TransportError(
            f"{where}: {type(exc).__name__}: {exc}",
            hint="is the node up? `tars cluster status` shows each node's http address",
        ) from exc
    body = _json(reply)
    if reply.status_code != 200 or not isinstance(body, dict):
        raise failure(reply.status_code, body, where)
    return body


def _json(reply: Any) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None
