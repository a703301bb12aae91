"""`tars call` and `tars load`: the genome's live service, from the caller's side.

Both speak the front's HTTP contract (docs/contracts.md) through
:mod:`runtime.service.client` and :mod:`runtime.service.load`; a node's front is found at
its ``http`` port in cluster.yml, or given with ``--url`` (any front, even one not in a
cluster.yml).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cli.common import console, err_console, handle_errors
from evolution.errors import ConfigError

if TYPE_CHECKING:
    from runtime.service.load import LoadReport

ConfigOpt = typer.Option(Path("cluster.yml"), "--config", "-c", help="the cluster's cluster.yml")
NodeOpt = typer.Option(None, "--node", "-n", help="the node whose front to use (its http port)")


def parse_args(pairs: list[str], json_args: str | None) -> dict[str, Any]:
    """``ARG=VALUE`` words as keyword arguments: a value that parses as JSON is that
    value (``top=3`` is 3, ``lines='["a"]'`` a list), any other is the string itself;
    ``--json-args`` gives them all at once, and the words win over it."""
    args: dict[str, Any] = {}
    if json_args is not None:
        try:
            given = json.loads(json_args)
        except ValueError as exc:
            raise ConfigError(
                f"--json-args is not JSON: {exc}", hint="""pass an object: '{"top": 3}'"""
            ) from exc
        if not isinstance(given, dict):
            raise ConfigError(
                f"--json-args is a {type(given).__name__}, not an object",
                hint="""pass an object: '{"top": 3}'""",
            )
        args.update(given)
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.isidentifier():
            raise ConfigError(
                f"argument {pair!r} is not NAME=VALUE",
                hint="write each argument as name=value (a JSON value, or else a string)",
            )
        try:
            args[name] = json.loads(value)
        except ValueError:
            args[name] = value
    return args


def _urls(
    config: Path, node: str | None, url: list[str] | None, *, first: bool = False
) -> list[str]:
    """The fronts to use: ``--url`` as given, else the nodes' http addresses."""
    if url:
        return [u.rstrip("/") for u in url]
    from runtime.config import load_cluster
    from runtime.service.client import node_urls

    return node_urls(load_cluster(config), node, first=first)


@handle_errors
def call(
    genome: str = typer.Argument(..., help="the genome whose service to call"),
    function: str = typer.Argument(..., help="one of the functions its manifest serves"),
    pairs: list[str] | None = typer.Argument(
        None, help="ARG=VALUE …, VALUE read as JSON when it is"
    ),
    json_args: str | None = typer.Option(
        None, "--json-args", help="all arguments as one JSON object"
    ),
    config: Path = ConfigOpt,
    node: str | None = NodeOpt,
    url: str | None = typer.Option(None, "--url", help="a front's address, http://HOST:PORT"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for the answer"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as one JSON object"),
) -> None:
    """Call one function of a genome's live service; print its result, version and colour."""
    from runtime.service.client import call as call_front

    args = parse_args(pairs or [], json_args)
    front = _urls(config, node, [url] if url else None, first=True)[0]
    answer = call_front(front, genome, function, args, timeout=timeout)
    if as_json:
        print(json.dumps(answer._asdict()))
        return
    console.print_json(json.dumps(answer.result))
    console.print(
        f"served by {front}: version {answer.version}, {answer.colour}, "
        f"{answer.seconds * 1000:.1f} ms",
        highlight=False,
        markup=False,
    )


@handle_errors
def load(
    genome: str = typer.Argument(..., help="the genome whose service to load"),
    rate: float = typer.Option(
        50.0, "--rate", min=0.0, help="requests per second, open loop (0: closed loop)"
    ),
    concurrency: int = typer.Option(16, "--concurrency", min=1, help="requests in flight at most"),
    duration: float = typer.Option(10.0, "--duration", min=0.1, help="seconds of load"),
    mix: Path | None = typer.Option(
        None, "--mix", help='recorded requests: JSON lines {"function": ..., "args": {...}}'
    ),
    config: Path = ConfigOpt,
    node: str | None = NodeOpt,
    url: list[str] | None = typer.Option(
        None, "--url", help="a front's address (repeat for several); default: every node's"
    ),
    timeout: float = typer.Option(10.0, "--timeout", help="seconds one request may take"),
    as_json: bool = typer.Option(False, "--json", help="print the report as one JSON object"),
) -> None:
    """Drive a genome's service: throughput, latency percentiles, errors, who answered."""
    from runtime.service.client import describe
    from runtime.service.load import drive, generated_mix, read_mix

    urls = _urls(config, node, url)
    requests = read_mix(mix, genome) if mix else generated_mix(genome, describe(urls[0], genome))
    if as_json:
        report = drive(urls, requests, rate, concurrency, duration, timeout=timeout)
        print(json.dumps(report.as_dict()))
        return
    with _LoadProgress(duration) as progress:
        report = drive(urls, requests, rate, concurrency, duration, progress, timeout=timeout)
    _show(report)


class _LoadProgress:
    """A bar over the run's duration with the counts so far, drawn on stderr."""

    def __init__(self, duration: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[bold]load"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self._task = self._bar.add_task("load", total=duration, counts="")

    def __enter__(self) -> _LoadProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def __call__(self, at: Any) -> None:
        counts = (
            f"sent {at.sent}, answered {at.answered}, errors {at.errors}, in flight {at.in_flight}"
        )
        self._bar.update(self._task, completed=min(at.elapsed, at.duration), counts=counts)


def _show(report: LoadReport) -> None:
    """The report as a few lines a person reads."""
    if report.interrupted:
        console.print("interrupted: the figures below are of the run so far", style="yellow")
    console.print(
        f"{report.sent} requests in {report.seconds:.2f} s to {len(report.urls)} front(s): "
        f"{report.throughput:.1f}/s answered, {report.ok} ok, {report.lost} lost, "
        f"{report.unsent} never sent",
        highlight=False,
        markup=False,
    )
    console.print(
        f"latency p50 {report.p50 * 1000:.2f} ms, p90 {report.p90 * 1000:.2f} ms, "
        f"p99 {report.p99 * 1000:.2f} ms",
        highlight=False,
    )
    if report.errors:
        shown = ", ".join(f"{status}: {n}" for status, n in report.errors.items())
        console.print(f"errors by status: {shown}", highlight=False, markup=False)
    for version, colours in report.answered_by.items():
        shown = ", ".join(f"{colour} {n}" for colour, n in sorted(colours.items()))
        console.print(f"answered by {version}: {shown}", highlight=False, markup=False)
