"""A script's data sources, read and held to their declared type, record by record.

``file<jsonl|json|csv, T>`` (a path relative to the script), ``http<json|jsonl, T>``,
``sql<Row>(url, query)`` (``sqlite:///path`` or ``postgresql://…``), ``mcp<T>(server,
tool, args)`` and ``any`` (a path or URL, read as it is: JSON, JSON lines, else text).
A record that does not fit names itself (``line 3`` of a JSONL file, ``row 2`` of a CSV
or a query, ``item 4`` of a JSON list) and the field, with what was expected and found.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from evolution.errors import TarsError
from evolution.lang.types import ListT, Named, Ty, TypeTable
from evolution.lang.values import Mismatch, conform, from_text


class SourceProblem(Exception):
    """What is wrong with a source's data, in words; the host adds the script's place."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def read_source(
    kind: str, fmt: str, ty: Ty, table: TypeTable, location: Any, args: list[Any], base: Path
) -> Any:
    """The data of one source, validated against ``ty`` (``list<T>`` for many records)."""
    if kind == "sql":
        return _records(_sql(str(args[0]), str(args[1]), base), ty, table, "row")
    if kind == "mcp":
        from runtime.lang.mcp_client import call_tool

        tool_args = args[2] if len(args) > 2 else {}
        data = call_tool(str(args[0]), str(args[1]), dict(tool_args), base)
        return _one(data, ty, table, f"the result of {args[1]!r}")
    text = _fetch(str(location), base)
    if kind == "any":
        return _loose(text)
    if fmt == "jsonl":
        return _records(_jsonl(text), ty, table, "line")
    if fmt == "csv":
        return _csv(text, ty, table)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SourceProblem(
            f"{location} is not JSON: {exc}", "fix the file or declare `any`"
        ) from None
    if isinstance(ty, ListT) and isinstance(data, list):
        return _records(list(enumerate(data, 1)), ty, table, "item")
    return _one(data, ty, table, str(location))


def _fetch(location: str, base: Path) -> str:
    if location.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(location, timeout=30.0, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise SourceProblem(
                f"cannot read {location}: {exc}", "check the URL answers with the data"
            ) from None
        return response.text
    path = base / location
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceProblem(
            f"cannot read {path}: {exc}", "the path is relative to the script's folder"
        ) from None


def _loose(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError:
        return text


def _jsonl(text: str) -> list[tuple[int, Any]]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except ValueError as exc:
            raise SourceProblem(
                f"line {number} is not JSON: {exc}", "one JSON object per line"
            ) from None
    return out


def _records(rows: list[tuple[int, Any]], ty: Ty, table: TypeTable, unit: str) -> list[Any]:
    elem = ty.elem if isinstance(ty, ListT) else ty
    out = []
    for number, data in rows:
        try:
            out.append(conform(data, elem, table))
        except Mismatch as exc:
            raise SourceProblem(
                f"{unit} {number}: {exc}",
                f"make {unit} {number} a {elem}, or declare the source `any`",
            ) from None
    return out


def _one(data: Any, ty: Ty, table: TypeTable, what: str) -> Any:
    try:
        return conform(data, ty, table)
    except Mismatch as exc:
        raise SourceProblem(f"{what}: {exc}", "declare the type it has, or `any`") from None


def _csv(text: str, ty: Ty, table: TypeTable) -> list[Any]:
    elem = ty.elem if isinstance(ty, ListT) else ty
    assert isinstance(elem, Named)
    fields = dict(table.records[elem.name].fields)
    rows = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), 1):
        typed = {k: from_text(v, fields[k]) if k in fields else v for k, v in row.items()}
        rows.append((number, typed))
    return _records(rows, ty, table, "row")


def _sql(url: str, query: str, base: Path) -> list[tuple[int, Any]]:
    try:
        names, found = (
            _sqlite(url, query, base) if url.startswith("sqlite:///") else _pg(url, query)
        )
    except (TarsError, OSError) as exc:
        raise SourceProblem(f"the query failed: {exc}", "check the URL and the query") from None
    except Exception as exc:  # the driver's own errors (sqlite3.Error, psycopg.Error)
        raise SourceProblem(
            f"the query failed: {type(exc).__name__}: {exc}", "check the URL and the query"
        ) from None
    rows = [[float(v) if isinstance(v, Decimal) else v for v in row] for row in found]
    return [(i, dict(zip(names, row, strict=True))) for i, row in enumerate(rows, 1)]


def _sqlite(url: str, query: str, base: Path) -> tuple[list[str], list[Any]]:
    """Rows of a query on a SQLite file, opened read-only (a script never writes there)."""
    import sqlite3

    path = Path(url.removeprefix("sqlite:///"))
    path = path if path.is_absolute() else base / path
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = con.execute(query)
        return [d[0] for d in cursor.description or ()], cursor.fetchall()
    finally:
        con.close()


def _pg(url: str, query: str) -> tuple[list[str], list[Any]]:
    """Rows of a query on PostgreSQL, in a read-only transaction."""
    import psycopg

    with psycopg.connect(url) as con, con.cursor() as cur:
        cur.execute("set transaction read only")
        cur.execute(query.encode())
        names = [d.name for d in cur.description or ()]
        found = cur.fetchall()
        con.rollback()
        return names, found
