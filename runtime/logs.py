"""A node's log lines: JSON, one event per line, with node, genome and version where known.

The codebase logs through the standard library (``logging.getLogger("tars.…")``); this
module puts structlog's :class:`~structlog.stdlib.ProcessorFormatter` on the root
handler, so every existing call comes out as one JSON object per line without being
rewritten, and code that wants fields of its own can use ``structlog.get_logger(...)``
or ``extra={"genome": ..., "version": ...}``: both end in the same handler and format.

Fields of every line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the
message with its arguments filled in), ``node``; then whatever the call adds (``extra``
keys, values bound with :func:`bound`), and ``exception`` with the traceback when there
is one.  ``node`` is the process's node (one node per process when deployed); a call may
override it with its own ``node`` (tests run several nodes in one process).

``tars node start --log-format json`` (what ``tars cluster up`` runs) uses it;
``text`` keeps the old one-line format for a person watching a terminal, and
:func:`readable` turns JSON lines back into that form for ``tars cluster logs``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

import structlog

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The fields a line starts with; the rest follow in the order the call gave them.
HEAD = ("time", "level", "logger", "node", "genome", "version", "event")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not when configured.

    A command run in-process (typer's CliRunner, an embedding program) swaps
    ``sys.stderr`` for a while and closes its stand-in; a handler holding that stand-in
    would fail on every later record ("I/O operation on closed file").
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def configure(
    node: str | None,
    fmt: str = "json",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the root logger (and structlog's loggers) to ``stream`` in ``fmt``.

    Replaces the root's handlers, as ``logging.basicConfig(force=True)`` did before;
    returns the new handler so a caller (a test) can remove it again.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _NodeAdder(node),
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    if fmt == "json":
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _ordered,
                    structlog.processors.JSONRenderer(default=repr),
                ],
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return handler


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (genome, version, …) to every line logged in this context (thread
    or task), by structlog's context variables."""
    with structlog.contextvars.bound_contextvars(**fields):
        yield


class _NodeAdder:
    """Puts the process's node id on a line that does not name one itself."""

    def __init__(self, node: str | None) -> None:
        self.node = node

    def __call__(
        self, logger: Any, name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self.node is not None:
            event.setdefault("node", self.node)
        return event


def _ordered(logger: Any, name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """The head fields first, so lines read alike from left to right."""
    head = {key: event[key] for key in HEAD if key in event}
    return {**head, **{k: v for k, v in event.items() if k not in head}}


def readable(line: str) -> str:
    """A JSON log line as the text format shows it; any other line as it is.

    ``tars cluster logs`` shows node logs this way (``--raw`` shows the JSON).
    """
    text = line.rstrip("\n")
    if not text.startswith("{"):
        return text
    try:
        event = json.loads(text)
    except ValueError:
        return text
    if not isinstance(event, dict) or "event" not in event:
        return text
    where = " ".join(
        f"{key}={event[key]}" for key in ("genome", "version") if event.get(key) is not None
    )
    stamp = str(event.get("time", "")).replace("T", " ").removesuffix("Z")
    level = str(event.get("level", "")).upper()
    head = " ".join(part for part in (stamp, level, str(event.get("logger", ""))) if part)
    body = f"{head}: {event['event']}" + (f" [{where}]" if where else "")
    if event.get("exception"):
        body += "\n" + str(event["exception"])
    return body
