"""The dashboard's live side: one poller per dashboard, and server-sent events to every page.

One task polls the log for events after the newest it holds (every ``poll`` seconds,
only while a page listens) and each node's status (every ``status_every`` polls); pages
subscribe with ``GET /dashboard/events?after=SEQ`` and get every event after the one
they were rendered with, then each new one as it is applied, without a reload.  A poll
of the log asks for rows after a sequence number, which costs the new rows only
(``GenomeStore.log_rows(start=…)``), so polling often is cheap on a log of any length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

__all__ = ["Hub"]

log = logging.getLogger("tars.dashboard")
Fetch = Callable[[int], Awaitable[list[list[Any]]]]
Status = Callable[[], Awaitable[str]]
Render = Callable[[list[Any]], dict[str, Any]]
#: seconds between two keep-alive comments on an idle stream
PING_SECONDS = 15.0


class Hub:
    """New log rows and the swarm's status, polled once and handed to every stream."""

    def __init__(
        self, fetch: Fetch, status: Status, render: Render, *, poll: float = 0.1,
        status_every: int = 10,
    ) -> None:  # fmt: skip
        self.fetch, self.status, self.render = fetch, status, render
        self.poll, self.status_every = poll, status_every
        self.rows: deque[dict[str, Any]] = deque(maxlen=2000)
        self.last_seq: int | None = None
        self.status_html, self.status_version = "", 0
        self.listeners = 0
        self.closing = asyncio.Event()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, after: int) -> None:
        if self._task is None or self._task.done():
            if self.last_seq is None:
                self.last_seq = after
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        tick = 0
        while not self.closing.is_set():
            if self.listeners:
                try:
                    await self._poll(tick)
                except Exception as exc:  # noqa: BLE001 (a node down: the next poll tries again)
                    log.debug("dashboard poll failed: %s", exc)
                tick += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), self.poll)

    async def _poll(self, tick: int) -> None:
        fresh = await self.fetch(self.last_seq or 0)
        woke = False
        for row in fresh:
            if self.last_seq is not None and row[0] <= self.last_seq:
                continue
            self.rows.append(self.render(row))
            self.last_seq = row[0]
            woke = True
        if tick % self.status_every == 0:
            html = await self.status()
            if html != self.status_html:
                self.status_html, self.status_version = html, self.status_version + 1
                woke = True
        if woke:
            self._changed.set()
            self._changed = asyncio.Event()

    async def stream(
        self, request: web.Request, after: int, older: Fetch, alive: Callable[[], bool]
    ) -> web.StreamResponse:
        """One page's stream: ``log`` events after ``after``, then ``status`` as it changes,
        while ``alive()`` says its session lasts (a logout ends the stream it opened)."""
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })  # fmt: skip
        await response.prepare(request)
        self.start(after)
        self.listeners += 1
        sent_status = 0
        try:
            oldest = self.rows[0]["seq"] if self.rows else (self.last_seq or 0) + 1
            if after + 1 < oldest:  # rendered before this hub held its rows: fetch the gap
                for row in await older(after):
                    if row[0] < oldest:
                        await _send(response, "log", self.render(row))
                        after = max(after, row[0])
            while not self.closing.is_set() and alive():
                changed = self._changed
                for item in [r for r in self.rows if r["seq"] > after]:
                    await _send(response, "log", item)
                    after = item["seq"]
                if self.status_version != sent_status and self.status_html:
                    await _send(response, "status", {"html": self.status_html})
                    sent_status = self.status_version
                try:
                    await asyncio.wait_for(changed.wait(), PING_SECONDS)
                except TimeoutError:
                    await response.write(b": ping\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.listeners -= 1
        return response

    def wake(self) -> None:
        """Wake every stream to look again (a session ended: its streams stop now)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        self.closing.set()
        self._changed.set()


async def _send(response: web.StreamResponse, kind: str, data: dict[str, Any]) -> None:
    await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
