"""The dashboard's routes, its login gate, and a server of its own for `tars dashboard`.

:meth:`Dashboard.handle` answers every request under ``/dashboard``; it is one aiohttp
handler, so a node's HTTP front can hand it its ``/dashboard`` routes on the port it
already serves (docs/dashboard.md), and :class:`DashboardServer` runs it alone on a port
for a whole swarm.  Pages need a session (no session: a redirect to the login page; the
API and the event stream: 401); every action is a POST with the session's CSRF token
(missing or wrong: 403) by a login whose role may do it (otherwise 403).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from evolution.errors import ConfigError, PolicyError, ServiceError, TarsError
from runtime.dashboard.auth import COOKIE, Logins, Session, Sessions, allowed
from runtime.dashboard.live import Hub
from runtime.dashboard.pages import Pages
from runtime.dashboard.render import HERE, PREFIX
from runtime.dashboard.sources import Source
from runtime.service.loop_thread import serve_on_thread

__all__ = ["Dashboard", "DashboardServer", "Decide"]

#: the held-candidate decision: (genome, candidate, "approve"|"reject", approver, reason) -> reply
Decide = Callable[[str, str, str, str, str], dict[str, Any]]
_STATIC = {"dash.css": "text/css", "dash.js": "text/javascript"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_OPEN = ("/login", "/static/dash.css", "/static/dash.js")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


class Dashboard:
    """Every page, the API and the live stream of one dashboard."""

    def __init__(
        self, source: Source, logins: Logins, *, title: str = "TARS", decide: Decide | None = None,
        signs_for: frozenset[str] = frozenset(), poll: float = 0.1,
    ) -> None:  # fmt: skip
        self.source, self.logins, self.decide = source, logins, decide
        #: the approvers whose signing keys this dashboard holds: a login of that name signs
        self.signs_for = signs_for if decide is not None else frozenset()
        self.sessions = Sessions()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="dashboard")
        self.pages = Pages(source, title, self._run, self.signs_for)
        self.hub = Hub(self.pages.newer, self.pages.swarm_html, self.pages.live_row, poll=poll)

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    def close(self, wait: bool = False) -> None:
        """End every live stream (the server can then stop at once) and the worker threads
        (``wait``: until they are gone; not on the event loop's thread)."""
        self.hub.close()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        close = getattr(self.source, "close", None)
        if close is not None and wait:  # kept clients: only once no worker thread uses them
            close()

    # -- the one entry point --

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix(PREFIX) or "/"
        if path == "/" and not request.path.endswith("/"):
            raise web.HTTPFound(PREFIX + "/")
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None and path not in _OPEN:
            if path.startswith(("/api/", "/events")):
                return _json(401, {"error": "log in first", "hint": f"POST {PREFIX}/login"})
            raise web.HTTPFound(f"{PREFIX}/login")
        if request.method == "POST" and path != "/login":
            assert session is not None
            refused = await self._check_post(request, session)
            if refused is not None:
                return refused
        try:
            response = await self._route(request, path, session)
        except TarsError as exc:  # no node answered, or one refused: say so, never a traceback
            return _json(502, {"error": exc.message, "hint": exc.hint or ""})
        except web.HTTPException as exc:  # a page's 4xx: its message escaped, in the page's frame
            if exc.status < 400:
                raise
            response = self.pages.html("error.html", status=exc.status, session=session,
                                       message=exc.text or exc.reason)  # fmt: skip
        if not isinstance(response, web.FileResponse) and not response.prepared:
            response.headers["Content-Security-Policy"] = _CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Referrer-Policy"] = "same-origin"
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def _check_post(self, request: web.Request, session: Session) -> web.Response | None:
        form = await request.post()
        presented = request.headers.get("X-CSRF-Token") or form.get("csrf")
        if not self.sessions.csrf_ok(session, presented if isinstance(presented, str) else None):
            return _json(403, {"error": "missing or wrong CSRF token", "hint": "reload the page and try again"})  # fmt: skip
        return None

    async def _route(self, request: web.Request, path: str, session: Session | None) -> web.StreamResponse:  # fmt: skip
        parts = [p for p in path.split("/") if p]
        get = request.method in ("GET", "HEAD")
        if path == "/login":
            return await (self._login_page(request) if get else self._login(request))
        if get and len(parts) == 2 and parts[0] == "static" and parts[1] in _STATIC:
            return web.Response(body=(HERE / "static" / parts[1]).read_bytes(),
                                content_type=_STATIC[parts[1]], headers={"Cache-Control": "max-age=300"})  # fmt: skip
        assert session is not None
        if not get:
            return await self._action(request, parts, session)
        query = request.query
        if path == "/":
            return await self.pages.overview(session)
        if parts[0] == "log" and len(parts) == 1:
            return await self.pages.log(session, dict(query))
        if parts[0] == "events" and len(parts) == 1:
            after = int(query.get("after") or 0) if query.get("after", "").isdigit() else 0
            sid = request.cookies.get(COOKIE)
            return await self.hub.stream(
                request, after, self.pages.newer, lambda: self.sessions.alive(sid)
            )
        if parts == ["api", "status"]:
            return _json(200, await self.pages.status_json())
        if parts[0] == "genome" and len(parts) == 2:
            return await self.pages.genome(session, parts[1], query.get("all") == "1")
        if parts[0] == "genome" and len(parts) == 3 and parts[2] == "plot.svg":
            return await self.pages.plot(parts[1], query.get("by", "version"))
        if parts[0] == "genome" and len(parts) == 4 and parts[2] == "version":
            return await self.pages.version(session, parts[1], parts[3])
        raise web.HTTPNotFound()

    # -- login --

    async def _login_page(self, request: web.Request, failed: bool = False) -> web.Response:
        return self.pages.html("login.html", status=401 if failed else 200, failed=failed, session=None)  # fmt: skip

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        secret = form.get("secret")
        who = self.logins.login(secret) if isinstance(secret, str) else None
        if who is None:
            await asyncio.sleep(0.2)  # a guess costs the guesser, not the server
            return await self._login_page(request, failed=True)
        sid, _ = self.sessions.open(*who)
        response = _see_other(PREFIX + "/")
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path=PREFIX,
                            secure=request.secure)  # fmt: skip
        return response

    # -- actions (CSRF already checked) --

    async def _action(self, request: web.Request, parts: list[str], session: Session) -> web.StreamResponse:  # fmt: skip
        form = await request.post()
        field = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        if parts == ["logout"]:
            self.sessions.close(request.cookies.get(COOKIE))
            self.hub.wake()  # its open event streams end now, not at their next event
            response = _see_other(PREFIX + "/login")
            response.del_cookie(COOKIE, path=PREFIX)
            return response
        if parts == ["api", "rollout"]:
            if not allowed(session.role, "rollout"):
                return _json(403, {"error": f"{session.login} ({session.role}) may not steer rollouts",
                                   "hint": "log in as an operator (`tars keys --token NAME --role operator`)"})  # fmt: skip
            order = field.get("order", "")
            if order not in ("promote", "abort", "pause", "resume"):
                return _json(400, {"error": f"unknown order {order!r}", "hint": "promote, abort, pause or resume"})  # fmt: skip
            replies = await self.pages.rollout_order(field.get("genome", ""), order, field.get("node") or None)  # fmt: skip
            return _json(200, {"ok": True, "order": order, "nodes": replies})
        if parts == ["api", "held"]:
            return await self._decide(session, field)
        raise web.HTTPNotFound()

    async def _decide(self, session: Session, field: dict[str, str]) -> web.Response:
        # HELD-CANDIDATE DECISIONS: signed here with the key of the approver the login is
        # (docs/dashboard.md, "Held candidates"): the role says who may press, the key in
        # ``signs_for`` says in whose name; a token of bob never signs as alice.
        if not allowed(session.role, "decide"):
            return _json(403, {"error": f"{session.login} ({session.role}) may not approve or reject",
                               "hint": "log in as an approver (`tars keys --token NAME --role approver`)"})  # fmt: skip
        decision = field.get("decision", "")
        if decision not in ("approve", "reject"):
            return _json(400, {"error": f"unknown decision {decision!r}", "hint": "approve or reject"})  # fmt: skip
        if self.decide is None:
            return _json(501, {"error": "this dashboard holds no approver's signing key",
                               "hint": "run `tars dashboard --config cluster.yml --approver NAME` where "
                                       "NAME's key is, or `tars approve` (docs/dashboard.md)"})  # fmt: skip
        if session.login not in self.signs_for:
            return _json(403, {"error": f"this dashboard holds no signing key for {session.login}",
                               "hint": f"log in as one whose key it holds ({', '.join(sorted(self.signs_for))}), "
                                       f"or start one with `--approver {session.login}` where that key is"})  # fmt: skip
        reason = (field.get("reason", "").strip() + " (via dashboard)").strip()
        try:
            reply = await self._run(self.decide, field.get("genome", ""), field.get("candidate", ""),
                                    decision, session.login, reason)  # fmt: skip
        except (PolicyError, ConfigError) as exc:  # the swarm refused: said, not a 502
            return _json(409, {"error": exc.message, "hint": exc.hint or ""})
        return _json(200, {**reply, "decision": decision, "approver": session.login})

    def application(self) -> web.Application:
        """An aiohttp application serving this dashboard alone (``/`` leads to it)."""
        app = web.Application(client_max_size=64 * 1024)

        async def root(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(PREFIX + "/")

        app.router.add_get("/", root)
        app.router.add_route("*", PREFIX + "{tail:.*}", self.handle)
        return app


class DashboardServer:
    """A dashboard on its own port and thread (`tars dashboard`); :meth:`start` returns once
    it listens."""

    def __init__(self, dashboard: Dashboard, host: str = "127.0.0.1", port: int = 0) -> None:
        self.dashboard, self.host, self.port = dashboard, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{PREFIX}/"

    def start(self) -> None:
        try:
            self._loop, self._thread = serve_on_thread(self._listen, "dashboard")
        except Exception as exc:
            raise ServiceError(f"cannot serve the dashboard on {self.host}:{self.port}: {exc}",
                               hint="give `tars dashboard` a free --port") from exc  # fmt: skip

    async def _listen(self) -> None:
        runner = web.AppRunner(self.dashboard.application(), access_log=None,
                               handle_signals=False, shutdown_timeout=2.0)  # fmt: skip
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(self.dashboard.hub.close)
        if self._runner is not None:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):  # stopping anyway
                done.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self.dashboard.close(wait=True)
        thread.join(10)
