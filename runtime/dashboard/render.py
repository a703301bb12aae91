"""The dashboard's HTML: jinja2 templates with autoescape, and the values they show.

Everything shown comes from the log or from a node, and some of it from candidate code
or a language model (patches, reasons, mutator names): the templates escape every value
(jinja2's autoescape, never ``|safe`` on data), and the page's Content-Security-Policy
allows scripts and styles from the dashboard's own ``/static`` only, so text that looks
like markup stays text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["PREFIX", "diff_lines", "env", "event_row", "summary", "swarm_rows"]

PREFIX = "/dashboard"
HERE = Path(__file__).parent


def short(value: Any) -> str:
    return str(value or "")[:12]


def stamp(time_ns: Any) -> str:
    if not isinstance(time_ns, int):
        return ""
    return datetime.fromtimestamp(time_ns / 1e9, UTC).isoformat(" ", "seconds")[:19]


def figure(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    return f"{value:,.0f}" if value == int(value) and abs(value) >= 100 else f"{value:.4g}"


def summary(kind: str, data: dict[str, Any], parent: str | None) -> str:
    """One event in a few words (what `tars log ls` prints)."""
    ratio = data.get("ratio")
    gain = f" {ratio:.3g}×" if isinstance(ratio, int | float) else ""
    if kind == "CandidateEvaluated":
        return f"{data.get('mutator')} {data.get('verdict')}{gain}"
    if kind in ("VersionAdopted", "ProposalSubmitted"):
        return f"{data.get('mutator')}{gain} parent {short(parent)}"
    if kind == "RolledBack":
        return f"to {short(data.get('to_version'))}: {data.get('reason', '')}"
    if kind == "CycleCompleted":
        return f"cycle {data.get('cycle')}, {data.get('candidates')} candidates"
    if kind == "VoteCast":
        return f"{'yes' if data.get('yes') else 'no'}: {data.get('reason', '')}"
    if kind in ("ProposalRejected", "ApprovalRequested"):
        return str(data.get("reason") or ", ".join(map(str, data.get("reasons") or [])))
    if kind == "RolloutStepped":
        result = f" {data['result']}" if data.get("result") else ""
        weight = data.get("weight") or 0
        return f"{data.get('phase')}{result} step {data.get('step')} {weight:.0%}: {data.get('reason', '')}"
    return ""


def event_row(row: list[Any]) -> dict[str, Any]:
    """A ``log`` row as the templates and the live stream use it."""
    seq, kind, genome, version, parent, time_ns, node, data = row[:8]
    return {
        "seq": seq, "type": kind, "genome": genome, "version": version or "",
        "parent": parent or "", "time": stamp(time_ns), "time_ns": time_ns, "node": node,
        "summary": summary(kind, data if isinstance(data, dict) else {}, parent),
    }  # fmt: skip


def diff_lines(patch: str) -> list[tuple[str, str]]:
    """A unified diff as ``(css class, line)``: added, removed, hunk header, file, context."""
    out = []
    for line in patch.splitlines():
        if line.startswith(("+++", "---")):
            out.append(("file", line))
        elif line.startswith("+"):
            out.append(("add", line))
        elif line.startswith("-"):
            out.append(("del", line))
        elif line.startswith("@@"):
            out.append(("hunk", line))
        else:
            out.append(("ctx", line))
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def swarm_rows(statuses: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """One row per node: role, term, indexes, lag, heads, isolation and drop counters."""
    newest = max((_int(s.get("applied_index")) for s in statuses.values() if s), default=0)
    rows = []
    for node_id, status in statuses.items():
        if status is None:
            rows.append({"node": node_id, "up": False})
            continue
        counters = status.get("counters") or {}
        dropped = {
            str(k)[8:]: v for k, v in sorted(counters.items())
            if str(k).startswith(("dropped_", "refused_")) and isinstance(v, int) and v > 0
        }  # fmt: skip
        rows.append({
            "node": node_id, "up": True, "role": status.get("role"),
            "leader": status.get("leader"), "term": status.get("term"),
            "commit": status.get("commit_index"), "applied": status.get("applied_index"),
            "lag": newest - _int(status.get("applied_index")),
            "members": status.get("members") or [], "heads": status.get("heads") or {},
            "isolation": status.get("isolation") or "", "drops": dropped,
            "halted": status.get("halted"), "stage": status.get("stage"),
            "http": status.get("http"),
        })  # fmt: skip
    return rows


def env() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(short=short, stamp=stamp, figure=figure)
    environment.globals.update(P=PREFIX)
    return environment
