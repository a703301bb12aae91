"""`tars log …`: read the event log of a store, with no node running.

Every subcommand opens the store read-only (:func:`cli.common.read_store`): it refuses a
file that is not a TARS store, never writes to the file it reads, and works on read-only
media.  Only ``export --out`` and ``replay --out`` write, and only where they are told.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer

from cli.common import DEFAULT_STORE, PlainCommand, PlainGroup, console, handle_errors, read_store
from evolution.errors import IntegrityError, TarsError, UnknownVersionError
from evolution.tree import short, version_id

if TYPE_CHECKING:
    from events.store import GenomeStore, LogEntry, LogRow

app = typer.Typer(
    help="Inspect, verify, replay and export the event log.", no_args_is_help=True, cls=PlainGroup
)

StoreOpt = typer.Option(
    str(DEFAULT_STORE), "--store", help="event store: a SQLite path or a postgresql:// URL"
)
GenomeOpt = typer.Option(
    None, "--genome", "-g", help="genome name (default: the only one in the store)"
)


def _genome(store: GenomeStore, genome: str | None) -> str:
    names = store.genomes()
    if genome is not None:
        if genome not in names:
            raise TarsError(
                f"genome {genome!r} is not in the store",
                hint=f"genomes here: {', '.join(names) or 'none'}",
            )
        return genome
    if len(names) != 1:
        raise TarsError(
            f"the store holds {len(names)} genomes",
            hint=f"pass --genome NAME ({', '.join(names) or 'none'})",
        )
    return names[0]


def resolve_version(store: GenomeStore, genome: str, prefix: str) -> str:
    """A full version id from a unique prefix (users copy the short ids `ls` prints)."""
    from events.projections import lineage as lineage_of

    versions = {node.version for node in lineage_of(store.log(genome=genome))}
    matches = sorted(v for v in versions if v.startswith(prefix.lower()))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownVersionError(
            f"version {prefix} is not a version of {genome}",
            hint="`tars log lineage` lists its versions",
        )
    raise UnknownVersionError(
        f"version prefix {prefix} is ambiguous ({len(matches)} versions)",
        hint="give more characters",
    )


def _summary(entry: LogEntry) -> str:
    return _summary_of(entry.type, entry.data, entry.parent)


def _summary_of(kind: str, data: dict[str, Any], parent: str | None) -> str:
    if kind == "CandidateEvaluated":
        ratio, low, high = data.get("ratio"), data.get("low"), data.get("high")
        gain = f" {ratio:.2f}×" if isinstance(ratio, float) else ""
        if data.get("mutator") == "tune" and isinstance(low, float) and isinstance(high, float):
            gain += f" ({low:.2f}–{high:.2f}×)"  # a tune trial's interval (cli/run_tune.py)
        return f"{data.get('mutator')} {data.get('verdict')}{gain}{_memory(data.get('figures'))}"
    if kind == "VersionAdopted":
        approved = (data.get("evidence") or {}).get("approved_by")
        by = f" approved by {', '.join(approved)}" if isinstance(approved, list) else ""
        return (
            f"{data.get('mutator')} {data.get('ratio') or 0:.2f}× parent {short(parent or '')}{by}"
        )
    if kind == "ApprovalGiven":  # a person's signed decision (docs/approval.md)
        return f"{data.get('approver')} {data.get('decision')}: {data.get('reason', '')}"
    if kind == "RolledBack":
        return f"to {short(data.get('to_version', ''))}: {data.get('reason', '')}"
    if kind == "CycleCompleted":
        from cli.log_llm import llm_summary

        return f"cycle {data.get('cycle')}{llm_summary(data.get('llm'))}"
    if kind == "RolloutStepped":
        result = f" {data['result']}" if data.get("result") else ""
        return f"{data.get('phase')}{result} step {data.get('step')} {data.get('weight', 0):.0%}: {data.get('reason', '')}"
    return ""


def _memory(figures: Any) -> str:
    """ " mem 7.5→12.7 MB" when the record kept the peak memory of both sides."""
    from cli.progress import peak_memory

    found = peak_memory(figures)
    return "" if found is None else f" mem {found[0]:.1f}→{found[1]:.1f} MB"


def trade_off_table(data: dict[str, Any]) -> Any:
    """The trade-offs one candidate made: the main gain, then every other figure, both sides.

    None when the event kept no figures (events stored before they were kept, or a
    candidate that failed before its benchmark ran).
    """
    from rich.table import Table

    figures = data.get("figures")
    if not isinstance(figures, dict):
        evidence = data.get("evidence")
        figures = evidence.get("figures") if isinstance(evidence, dict) else None
    if not isinstance(figures, dict) or not figures:
        return None
    table = Table(title="trade-offs", title_justify="left")
    for column in ("figure", "parent", "candidate", "change", "limit"):
        table.add_column(column, justify="left" if column in ("figure", "limit") else "right")
    ratio, low, high = data.get("ratio"), data.get("low"), data.get("high")
    gain = ""
    if isinstance(ratio, int | float):
        gain = f"gain {ratio:.3f}×" + (
            " exact" if low == high else f" ({low:.2f}–{high:.2f}×)" if low and high else ""
        )
    rows = sorted(figures.items(), key=lambda item: (not _is_main(item[1]), item[0]))
    for name, row in rows:
        if not isinstance(row, dict):
            continue
        before, after = row.get("parent"), row.get("candidate")
        rule = f"main: {gain}" if _is_main(row) else _limit(row)
        table.add_row(name, _figure(before), _figure(after), _change(before, after), rule)
    return table


def _is_main(row: Any) -> bool:
    return isinstance(row, dict) and row.get("main") is True


def _figure(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.3f}"


def _change(before: Any, after: Any) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float) or not before:
        return ""
    return f"{(after - before) / abs(before):+.1%}"


def _limit(row: dict[str, Any]) -> str:
    """The figure's rule, marked ✗ where the candidate broke it."""
    before, after = row.get("parent"), row.get("candidate")
    measured = isinstance(before, int | float) and isinstance(after, int | float)
    if row.get("work"):
        return "work: same" + (" ✗" if before != after else "")
    allowed = row.get("max_change")
    if not isinstance(allowed, int | float):
        return ""
    direction = row.get("direction", "minimize")
    sign = "+" if direction == "minimize" else "-"
    broken = not measured
    if measured and before:
        worse = (after - before) / abs(before) * (1 if direction == "minimize" else -1)
        broken = worse > allowed + 1e-9
    return f"{sign}{allowed:.0%} at most" + (" ✗" if broken else "")


#: Nanoseconds per second: event times come as integer nanoseconds since the epoch.
_NS = 1_000_000_000
#: Events `tars log ls` prints without --limit or --all: the newest ones, a screenful.
DEFAULT_LIMIT = 50


@app.command("ls", cls=PlainCommand)
@handle_errors
def ls(
    store: str = StoreOpt,
    genome: str | None = GenomeOpt,
    limit: int | None = typer.Option(
        None, "--limit", "-n", help=f"the newest N events (default {DEFAULT_LIMIT})"
    ),
    every: bool = typer.Option(False, "--all", help="every event (pipe it to a pager or grep)"),
) -> None:
    """The newest events, one line each, oldest first (the newest is the last line).

    Without --all, a note on stderr says how many earlier events were left out.
    """
    if every and limit is not None:
        raise TarsError(
            "--all and --limit together", hint="--all lists every event; --limit N the newest N"
        )
    if limit is not None and limit < 0:
        raise TarsError(
            f"--limit {limit} is negative", hint="give the number of newest events to list"
        )
    with read_store(store) as handle:
        if every:
            _write_rows(handle.log_rows(genome=genome), sys.stdout)
            return
        count = DEFAULT_LIMIT if limit is None else limit
        rows, earlier = handle.log_tail(count, genome=genome)
    _write_rows(rows, sys.stdout)
    if earlier:
        sys.stdout.flush()
        sys.stderr.write(
            f"({earlier:,} earlier event{'s' if earlier != 1 else ''} not shown: "
            f"--all lists every event, --limit N the newest N)\n"
        )


def _write_rows(rows: Iterable[LogRow], out: TextIO) -> None:
    """One line per row, written in blocks: ``seq time type genome version node summary``."""
    lines: list[str] = []
    # Events come in bursts (a cycle writes all of its events at once): the columns
    # that repeat (second, type, genome, node) are formatted once per distinct
    # combination, not once per line.
    heads: dict[tuple[int, str, str, str], tuple[str, str]] = {}
    for seq, kind, name, version, parent, time_ns, node, data, _ in rows:
        second = time_ns // _NS
        head = heads.get((second, kind, name, node))
        if head is None:
            stamp = datetime.fromtimestamp(second, UTC).isoformat(" ")[:19]
            head = heads[(second, kind, name, node)] = (
                f" {stamp} {kind:<18} {name:<12} ",
                f" {node:<8} ",
            )
        lines.append(
            f"{seq:>7}{head[0]}{(version or '')[:12]:<12}{head[1]}{_summary_of(kind, data, parent)}\n"
        )
        if len(lines) >= 4096:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))


@app.command(cls=PlainCommand)
@handle_errors
def show(
    seq: int = typer.Argument(..., help="event sequence number (from `tars log ls`)"),
    store: str = StoreOpt,
) -> None:
    """Every field of one event."""
    with read_store(store) as handle:
        for entry in handle.log(start=seq, limit=1):
            if entry.seq == seq:
                console.print_json(json.dumps(_as_json(entry), default=str))
                table = trade_off_table(entry.data)
                if table is not None:
                    console.print(table)
                return
    raise TarsError(f"no event with seq {seq}", hint="`tars log ls` lists the events")


@app.command(cls=PlainCommand)
@handle_errors
def diff(
    old: str = typer.Argument(..., help="version (prefix)"),
    new: str = typer.Argument(..., help="version (prefix)"),
    store: str = StoreOpt,
    genome: str | None = GenomeOpt,
) -> None:
    """The unified diff between two versions."""
    from evolution.patch import make_patch

    with read_store(store) as handle:
        name = _genome(handle, genome)
        a = handle.materialise(name, resolve_version(handle, name, old))
        b = handle.materialise(name, resolve_version(handle, name, new))
    sys.stdout.write(make_patch(a, b))


@app.command(cls=PlainCommand)
@handle_errors
def lineage(store: str = StoreOpt, genome: str | None = GenomeOpt) -> None:
    """The tree of versions: who came from whom, by which mutator, at what fitness."""
    from rich.tree import Tree as RichTree

    from events.projections import lineage as lineage_of

    with read_store(store) as handle:
        name = _genome(handle, genome)
        nodes = lineage_of(handle.log(genome=name))
        head = handle.head(name).version
    labels: dict[str, RichTree] = {}
    root = RichTree(f"[bold]{name}[/]")
    for node in nodes:
        fitness = f"{node.fitness:.4g}" if node.fitness is not None else "?"
        mark = " [green]← head[/]" if node.version == head else ""
        label = f"{short(node.version)} {node.mutator or 'registered'} fitness {fitness} (seq {node.seq}){mark}"
        parent = labels.get(node.parent or "", root)
        labels[node.version] = parent.add(label)
    console.print(root)


@app.command(cls=PlainCommand)
@handle_errors
def verify(store: str = StoreOpt) -> None:
    """Recompute the hash chain of every event; fail naming the first one that was edited."""
    with read_store(store) as handle:
        try:
            report = handle.verify()
        except IntegrityError as exc:
            console.print(f"[bold red]FAILED[/] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"[green]OK[/] {report}")


@app.command(cls=PlainCommand)
@handle_errors
def replay(
    to: str = typer.Option(..., "--to", help="version (prefix) to rebuild"),
    out: Path = typer.Option(..., "--out", help="new or empty folder to write the tree into"),
    store: str = StoreOpt,
    genome: str | None = GenomeOpt,
) -> None:
    """Rebuild a version's exact tree from the log (snapshot plus patches)."""
    from runtime.genome_files import write_tree

    with read_store(store) as handle:
        name = _genome(handle, genome)
        version = resolve_version(handle, name, to)
        tree = handle.materialise(name, version)
    if version_id(tree) != version:
        raise IntegrityError(
            f"replay of {short(version)} gives tree {short(version_id(tree))}",
            hint="run `tars log verify`",
        )
    write_tree(tree, out)
    console.print(
        f"wrote {len(tree)} files of {name} {short(version)} to {out} (tree hash verified)"
    )


@app.command(cls=PlainCommand)
@handle_errors
def export(
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one JSON object per event"),
    out: Path | None = typer.Option(None, "--out", help="file to write (default: stdout)"),
    store: str = StoreOpt,
    genome: str | None = GenomeOpt,
) -> None:
    """Every event as one JSON object per line."""
    if fmt != "jsonl":
        raise TarsError(f"unknown export format {fmt!r}", hint="use --format jsonl")
    with read_store(store) as handle:
        if out is None:
            _export(handle, genome, sys.stdout)
            return
        tmp = out.with_name(out.name + ".partial")
        with tmp.open("w", encoding="utf-8") as stream:
            _export(handle, genome, stream)
        tmp.replace(out)


def _export(handle: GenomeStore, genome: str | None, stream: TextIO) -> None:
    for entry in handle.log(genome=genome):
        stream.write(json.dumps(_as_json(entry), default=str, sort_keys=True) + "\n")


def _as_json(entry: LogEntry) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": entry.seq,
        "type": entry.type,
        "genome": entry.genome,
        "version": entry.version,
        "parent": entry.parent,
        "node": entry.node,
        "time": entry.time.isoformat() if isinstance(entry.time, datetime) else entry.time,
    }
    for key, value in entry.data.items():
        if key in ("tree", "manifest_text"):
            continue  # whole trees are for replay, not for reading
        row.setdefault(key, value)
    return row


@app.command("llm", cls=PlainCommand)
@handle_errors
def llm(store: str = StoreOpt, genome: str | None = GenomeOpt) -> None:
    """What the language models cost, cycle by cycle, and every failure with its reason."""
    from cli.log_llm import show_usage

    with read_store(store) as handle:
        name = _genome(handle, genome)
        cycles = [e.data for e in handle.log(genome=name) if e.type == "CycleCompleted"]
    show_usage(name, cycles)
