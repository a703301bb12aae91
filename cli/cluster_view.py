"""`tars cluster status` as a table: one row per node, and the warnings under it.

Rows are plain dicts (``--json`` prints them as they are); the table and the summary
only render them.  rich's table is imported when drawn: every `tars` run imports the
command modules.  Every kind of frame a node dropped is named under the table (one line
per node that dropped any), so a peer pushing against the transport's bounds shows here
rather than only as a counter in ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape

from cli.common import console

if TYPE_CHECKING:
    from rich.table import Table

    from runtime.config import ClusterConfig
    from runtime.launcher import Launcher


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def status_rows(
    config: ClusterConfig, launcher: Launcher, statuses: dict[str, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    applied = [_int(s.get("applied_index")) for s in statuses.values() if s is not None]
    newest = max(applied, default=0)
    rows = []
    for node_id in config.ids:
        status = statuses.get(node_id)
        pid = launcher.pid(node_id)
        row: dict[str, Any] = {
            "node": node_id,
            "endpoint": config.endpoint(node_id),
            # the service's HTTP front: the node says where it listens; else cluster.yml's port
            "http": (status or {}).get("http") or config.http_url(node_id),
            "pid": pid,
            "up": status is not None,
        }
        if status is not None:
            row.update(
                role=status.get("role"),
                term=status.get("term"),
                leader=status.get("leader"),
                commit_index=status.get("commit_index"),
                applied_index=status.get("applied_index"),
                lag=newest - _int(status.get("applied_index")),
                members=status.get("members", []),
                heads=status.get("heads", {}),
                counters=status.get("counters", {}),
                log=status.get("log", {}),
                last_transfer=status.get("last_transfer"),
                isolation=status.get("isolation"),
            )
        rows.append(row)
    return rows


def _heads(heads: dict[str, Any]) -> str:
    parts = []
    for genome, head in sorted(heads.items()):
        if not isinstance(head, dict):
            continue
        fitness = head.get("fitness")
        shown = f"{fitness:.4g}" if isinstance(fitness, int | float) else "?"
        parts.append(f"{genome} {str(head.get('version', ''))[:12]} {shown}")
    return "\n".join(parts) or "-"


def log_cell(row: dict[str, Any]) -> str:
    """Where the node's Raft log starts: the whole log, or a snapshot and what was fetched."""
    log = row.get("log") or {}
    snapshot = _int(log.get("snapshot_index"))
    shown = f"from {snapshot}" if snapshot else "whole"
    fetched = row.get("last_transfer")
    if isinstance(fetched, dict):
        shown += f"\nfetched {_int(fetched.get('events'))}"
    return shown


_COLUMNS = ("node", "pid", "role", "term", "leader", "applied", "lag", "log", "heads", "http")


def status_table(config: ClusterConfig, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=escape(f"cluster {config.name} ({config.path})"))
    for column in _COLUMNS:
        table.add_column(
            column,
            justify="right" if column in ("pid", "term", "applied", "lag") else "left",
            no_wrap=column not in ("heads", "http"),
        )
    for row in rows:
        pid = str(row["pid"]) if row["pid"] is not None else "-"
        if not row["up"]:
            role = "[yellow]not answering[/]" if row["pid"] is not None else "[red]down[/]"
            table.add_row(row["node"], pid, role, *["-"] * 6, escape(str(row["http"] or "-")))
            continue
        role = escape(str(row["role"] or "?"))
        styled = f"[bold green]{role}[/]" if role == "leader" else role
        table.add_row(
            row["node"],
            pid,
            styled,
            str(row["term"]),
            escape(str(row["leader"] or "-")),
            str(row["applied_index"]),
            str(row["lag"]),
            escape(log_cell(row)),
            escape(_heads(row["heads"])),
            escape(str(row["http"] or "-")),
        )
    return table


# Drop kinds that mean a peer sent more than a bound lets a node hold (docs/transport.md,
# "Bounded peers"): worth a warning even when the rest of the swarm looks healthy.
BOUND_DROPS = (
    "dropped_reorder",
    "dropped_reorder_bytes",
    "dropped_backlog_bytes",
    "dropped_unacked_bytes",
    "dropped_request_bytes",
)


def drop_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per answering node that dropped frames: every drop kind it counted."""
    lines = []
    for row in rows:
        counters = row.get("counters") or {}
        if not row.get("up") or not isinstance(counters, dict):
            continue
        drops = {
            str(name)[len("dropped_") :]: value
            for name, value in sorted(counters.items())
            if str(name).startswith("dropped_") and isinstance(value, int) and value > 0
        }
        if drops:
            shown = ", ".join(f"{kind} {value}" for kind, value in drops.items())
            lines.append(f"{row['node']} dropped frames: {shown}")
    return lines


def bound_warning(rows: list[dict[str, Any]]) -> str | None:
    """The warning when a node refused frames for a per-peer bound, naming the nodes."""
    nodes = [
        str(row["node"])
        for row in rows
        if row.get("up")
        and isinstance(row.get("counters"), dict)
        and any(_int(row["counters"].get(name)) > 0 for name in BOUND_DROPS)
    ]
    if not nodes:
        return None
    return (
        f"{', '.join(nodes)} refused frames at a per-peer bound "
        "(reorder, backlog, unacked or request bytes): a peer sent more than the node "
        'holds for it; see docs/transport.md, "Bounded peers"'
    )


def refusal_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per answering node that refused something a peer or a key sent it.

    Entries whose signature did not verify, transfers whose heads the ledger never
    committed, entries forwarded in another member's name, admin requests from a member
    key, incubations of candidates no committed offer holds: each is an attack or a bug,
    and a person should see it without asking for ``--json``.
    """
    lines = []
    for row in rows:
        counters = row.get("counters") or {}
        if not row.get("up") or not isinstance(counters, dict):
            continue
        refused = {
            str(name)[len("refused_") :]: value
            for name, value in sorted(counters.items())
            if str(name).startswith("refused_") and isinstance(value, int) and value > 0
        }
        if refused:
            shown = ", ".join(f"{kind} {value}" for kind, value in refused.items())
            lines.append(f"{row['node']} refused: {shown}")
    return lines


def isolation_lines(rows: list[dict[str, Any]]) -> list[str]:
    """How each answering node runs candidate code, one line per distinct isolation."""
    nodes: dict[str, list[str]] = {}
    for row in rows:
        if row.get("up") and isinstance(row.get("isolation"), str):
            nodes.setdefault(row["isolation"], []).append(str(row["node"]))
    return [f"{', '.join(names)} candidate isolation: {line}" for line, names in nodes.items()]


def print_summary(config: ClusterConfig, rows: list[dict[str, Any]]) -> None:
    up = [row for row in rows if row["up"]]
    console.print(f"{len(up)} of {len(rows)} nodes answering", highlight=False, markup=False)
    leaders = {row["leader"] for row in up if row.get("leader")}
    if len(leaders) > 1:
        console.print(
            f"[yellow]nodes disagree on the leader: {escape(', '.join(sorted(map(str, leaders))))}[/] (an election is in progress)"
        )
    members = next((row["members"] for row in up if row.get("role") == "leader"), None)
    if members is not None and sorted(members) != sorted(config.ids):
        console.print(
            f"[yellow]the swarm's members ({escape(', '.join(sorted(map(str, members))))}) differ from cluster.yml's nodes "
            f"({', '.join(config.ids)})[/]: `tars cluster add|remove` changes both"
        )
    for line in isolation_lines(rows):
        console.print(line, highlight=False, markup=False)
    for line in drop_lines(rows):
        console.print(line, highlight=False, markup=False)
    for line in refusal_lines(rows):
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)
    warning = bound_warning(rows)
    if warning is not None:
        console.print(f"[yellow]{escape(warning)}[/]", highlight=False)
