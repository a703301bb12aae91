"""The dashboard's pages: what each one asks the swarm, and the template it fills.

Reads go to one node (the last that answered, the log being the same on every node);
the swarm's status and each rollout are asked of every node at once.  A page with many
versions shows the newest :data:`SHOWN` of its lineage (``?all=1`` shows every one),
so the first page stays fast on a long history; plots are separate SVG requests, cached
per head.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from evolution.errors import TarsError
from runtime.dashboard.auth import Session, allowed
from runtime.dashboard.figures import with_figures
from runtime.dashboard.render import diff_lines, env, event_row, swarm_rows
from runtime.dashboard.sources import Source, rollouts, statuses

__all__ = ["SHOWN", "Pages"]

Run = Callable[..., Awaitable[Any]]
#: lineage rows a genome page shows unless asked for all
SHOWN = 300
TYPES = (
    "Registered", "CandidateEvaluated", "ApprovalRequested", "Approved", "ProposalSubmitted",
    "VoteCast", "ProposalRebased", "ProposalRejected", "VersionAdopted", "RolledBack",
    "CycleCompleted", "RolloutStepped",
)  # fmt: skip


class Pages:
    def __init__(self, source: Source, title: str, run: Run,
                 signs_for: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.source, self.title, self.run, self.signs_for = source, title, run, signs_for
        self.env = env()
        self._reader: str | None = None
        self._plots: dict[tuple[str, str, str, int], bytes] = {}

    # -- asking the swarm --

    def ask_reader(self, body: dict[str, Any], timeout: float = 10.0) -> Any:
        """Ask the node that answered last (then the others): the log is the same on each."""
        nodes = self.source.nodes
        order = ([self._reader] if self._reader in nodes else []) + [n for n in nodes if n != self._reader]  # fmt: skip
        last: Exception | None = None
        for node_id in order:
            try:
                reply = self.source.ask(node_id, body, timeout)
            except TarsError as exc:
                last = exc
                continue
            self._reader = node_id
            return reply
        raise TarsError(f"no node answered ({last})", hint="start the swarm with `tars cluster up`")

    async def newer(self, after: int) -> list[list[Any]]:
        reply = await self.run(self.ask_reader, {"op": "log", "after": after, "limit": 2000})
        return list(reply.get("rows") or []) if isinstance(reply, dict) else []

    def live_row(self, row: list[Any]) -> dict[str, Any]:
        item = event_row(row)
        item["html"] = self.env.get_template("_row.html").render(e=item)
        if item["type"] in ("Registered", "VersionAdopted", "RolledBack"):
            item["head"] = item["version"]
        return item

    async def swarm_html(self) -> str:
        rows = swarm_rows(await self.run(statuses, self.source))
        return self.env.get_template("_swarm.html").render(rows=rows)

    async def status_json(self) -> dict[str, Any]:
        return {"nodes": swarm_rows(await self.run(statuses, self.source))}

    async def rollout_order(self, genome: str, order: str, node: str | None) -> dict[str, Any]:
        if node is None:
            return dict(await self.run(rollouts, self.source, genome, order))
        if node not in self.source.nodes:
            return {node: {"ok": False, "error": f"no node {node}"}}
        try:
            body = {"op": "rollout", "genome": genome, "order": order}
            return {node: await self.run(self.source.ask, node, body, 15.0)}
        except TarsError as exc:
            return {node: {"ok": False, "error": str(exc)}}

    # -- pages --

    def html(self, template: str, *, status: int = 200, **values: Any) -> web.Response:
        session: Session | None = values.pop("session")
        text = self.env.get_template(template).render(
            title=self.title, session=session, **values,
            may=(lambda action: session is not None and allowed(session.role, action)
                 and (action != "decide" or session.login in self.signs_for)),
        )  # fmt: skip
        return web.Response(status=status, text=text, content_type="text/html")

    async def overview(self, session: Session) -> web.Response:
        rows = swarm_rows(await self.run(statuses, self.source))
        genomes = sorted({g for row in rows if row.get("up") for g in row["heads"]})
        boards = _boards({g: await self.run(rollouts, self.source, g) for g in genomes})
        http_of = {row["node"]: row.get("http") for row in rows}
        for g, board in boards.items():
            await self.run(with_figures, board, http_of, g)
        recent = await self.run(self.ask_reader, {"op": "log", "limit": 30})
        events = [event_row(r) for r in reversed(recent.get("rows") or [])]
        heads: dict[str, Any] = {g: next((r["heads"][g] for r in rows if r.get("up") and g in r["heads"]), {})
                 for g in genomes}  # fmt: skip
        return self.html("overview.html", session=session, rows=rows, genomes=genomes,
                         heads=heads, boards=boards, events=events,
                         after=events[0]["seq"] if events else 0)  # fmt: skip

    async def genome(self, session: Session, name: str, every: bool) -> web.Response:
        reply = await self.run(self.ask_reader, {"op": "genome", "genome": name})
        if not reply.get("ok"):
            raise web.HTTPNotFound(text=str(reply.get("error")))
        from runtime.plots import objectives_of

        lineage = _lineage(reply["versions"], reply["candidates"], reply["head"])
        shown = lineage if every else lineage[-SHOWN:]
        board = _boards({name: await self.run(rollouts, self.source, name)}).get(name, [])
        if board:
            rows = swarm_rows(await self.run(statuses, self.source))
            await self.run(with_figures, board, {r["node"]: r.get("http") for r in rows}, name)
        recent = await self.run(self.ask_reader, {"op": "log", "limit": 1})
        after = (recent.get("rows") or [[0]])[-1][0]
        own = await self.run(self.ask_reader, {"op": "log", "limit": 30, "genome": name})
        events = [event_row(r) for r in reversed(own.get("rows") or [])]
        tally = (
            await self.run(self.ask_reader, {"op": "held", "genome": name})
            if reply["pending"]
            else {}
        )
        held = (
            {item["candidate"]: item for item in tally.get("held") or []} if tally.get("ok") else {}
        )
        return self.html("genome.html", session=session, g=reply, name=name, held=held, quorum=tally.get("quorum"),
                         lineage=list(reversed(shown)), hidden=len(lineage) - len(shown),
                         objectives=objectives_of(reply["manifest"]), board=board, after=after, events=events)  # fmt: skip

    async def plot(self, name: str, by: str) -> web.Response:
        from runtime.plots import objectives_of, plot_fitness

        if by not in ("version", "time"):
            raise web.HTTPBadRequest(text="by: version or time")
        reply = await self.run(self.ask_reader, {"op": "genome", "genome": name})
        if not reply.get("ok"):
            raise web.HTTPNotFound(text=str(reply.get("error")))
        key = (name, reply["head"], by, reply["versions_count"])
        if key not in self._plots:
            self._plots = {k: v for k, v in self._plots.items() if k[0] != name}
            self._plots[key] = await self.run(
                lambda: plot_fitness(reply["versions"], objectives_of(reply["manifest"]), genome=name, by=by)
            )  # fmt: skip
        return web.Response(body=self._plots[key], content_type="image/svg+xml")

    async def version(self, session: Session, name: str, version: str) -> web.Response:
        reply = await self.run(self.ask_reader, {"op": "version", "genome": name, "version": version})  # fmt: skip
        if not reply.get("ok"):
            raise web.HTTPNotFound(text=str(reply.get("error")))
        events = reply["events"]
        patch = next((str(e["data"]["patch"]) for e in events if e["data"].get("patch")), "")
        votes = [e for e in events if e["type"] == "VoteCast"]
        judged = [e for e in events if e["type"] in ("CandidateEvaluated", "VersionAdopted", "ProposalSubmitted", "ApprovalRequested")]  # fmt: skip
        evidence = judged[-1]["data"] if judged else {}
        figures = evidence.get("figures") or (evidence.get("evidence") or {}).get("figures") or {}
        full = next((e["version"] for e in events if str(e["version"] or "").startswith(version)), version)  # fmt: skip
        return self.html("version.html", session=session, name=name, version=full, events=events,
                         diff=diff_lines(patch), votes=votes, evidence=evidence, figures=figures,
                         stamp=lambda ns: datetime.fromtimestamp(ns / 1e9, UTC).isoformat(" ", "seconds")[:19])  # fmt: skip

    async def log(self, session: Session, query: dict[str, str]) -> web.Response:
        body: dict[str, Any] = {"op": "log", "limit": min(int(query.get("limit") or 200), 2000)
                                if str(query.get("limit") or "200").isdigit() else 200}  # fmt: skip
        for key in ("genome", "type", "node", "q"):
            if query.get(key):
                body[key] = query[key]
        for key in ("since", "until"):
            when = _when(query.get(key, ""))
            if when:
                body[key] = when
        reply = await self.run(self.ask_reader, body)
        if not reply.get("ok"):
            raise web.HTTPBadRequest(text=str(reply.get("error")))
        events = [event_row(r) for r in reversed(reply["rows"])]
        live = not any(query.get(k) for k in ("type", "node", "q", "since", "until"))
        return self.html("log.html", session=session, events=events, query=query, types=TYPES,
                         nodes=self.source.nodes, earlier=reply.get("earlier", 0), live=live,
                         after=events[0]["seq"] if events else 0)  # fmt: skip


def _when(text: str) -> int:
    """A ``datetime-local`` field (UTC) as nanoseconds; 0 when empty or not a time."""
    try:
        when = (
            int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1e9) if text else 0
        )
    except (ValueError, OverflowError):
        return 0
    return max(0, min(when, (1 << 63) - 1))  # what an event's time (int64 ns) can be


def _boards(replies: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each genome's rollouts: one row per node that runs a Deployer."""
    out: dict[str, list[dict[str, Any]]] = {}
    for genome, nodes in replies.items():
        for node_id, reply in nodes.items():
            if (
                isinstance(reply, dict)
                and reply.get("ok")
                and reply.get("phase") not in (None, "idle")
            ):
                out.setdefault(genome, []).append({**reply, "node": node_id})
    return out


def _lineage(versions: list[list[Any]], candidates: list[list[Any]], head: str) -> list[dict[str, Any]]:  # fmt: skip
    """Versions and recent candidates in log order, each with its depth in the tree: a
    version whose parent is the one before it stays at its parent's depth, a branch goes
    one deeper, and a candidate that was not adopted is a leaf under its parent."""
    items = [("v", row[4], row) for row in versions] + [("c", row[5], row) for row in candidates]
    items.sort(key=lambda item: item[1])
    depth: dict[str, int] = {}
    previous: str | None = None
    out = []
    for kind, _, row in items:
        if kind == "v":
            version, parent = row[0], row[1]
            level = 0 if parent is None else depth.get(parent, 0) + (parent != previous)
            depth[version], previous = level, version
            state = "head" if version == head else row[7]
            out.append({"version": version, "parent": parent or "", "mutator": row[2], "fitness": row[3],
                        "state": state, "level": min(level, 12), "ratio": row[9], "seq": row[4]})  # fmt: skip
        else:
            level = depth.get(row[1] or "", 0) + 1
            out.append({"version": row[0] or "", "parent": row[1] or "", "mutator": row[2],
                        "fitness": None, "state": str(row[3]), "level": min(level, 12),
                        "ratio": row[4], "seq": row[5]})  # fmt: skip
    return out
