"""Which persistence backend a store URL means, as eventsourcing configuration.

The store never branches on the backend: a URL becomes an eventsourcing environment
(``PERSISTENCE_MODULE`` and that module's settings) and eventsourcing builds the
recorders.  The one piece of our own is a SQLite factory that pins ``synchronous=FULL`` on
every connection (WAL mode's default durability depends on how SQLite was compiled, and a
decision the swarm committed must survive a power cut); it reaches into eventsourcing's
SQLite internals, so it lives in :mod:`events._eventsourcing` and is re-exported here,
with the raw notification reader.

URLs:

- ``memory://`` — eventsourcing's POPO recorders, for fast tests;
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy style:
  what follows the third slash is the path); ``…/path.db?mode=ro`` opens an existing TARS
  store read-only (``tars log``): nothing is created or written, not even the tables, and
  the file may sit on read-only media;
- ``postgresql://user:password@host:port/dbname[?schema=name]``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from events._eventsourcing import DurableSQLiteFactory, RawRow, raw_notifications
from evolution.errors import StoreError

__all__ = [
    "COMMON_ENV",
    "DurableSQLiteFactory",
    "RawRow",
    "backend_env",
    "check_sqlite_path",
    "identify_sqlite_store",
    "raw_notifications",
    "read_only_url",
    "redact",
    "sqlite_path",
]

SQLITE_HEADER = b"SQLite format 3\x00"

#: The query of a SQLite URL that asks for read-only opening.
READ_ONLY = "mode=ro"

#: The tables every TARS SQLite store has (eventsourcing's process recorder makes them).
TARS_TABLES = ("stored_events", "tracking")

#: How the topics of TARS's stored events begin (the ``Lineage`` aggregate's module).
TARS_TOPIC = "events.domain:"

#: Settings every backend shares: our transcoder, no cipher or compressor (``log`` and
#: ``verify`` decode raw rows with msgpack), and a small aggregate cache so a cycle does
#: not replay the lineage from its snapshot on every write.
COMMON_ENV = {
    "TRANSCODER_TOPIC": "events.transcoder:MsgpackTranscoder",
    "CIPHER_TOPIC": "",
    "CIPHER_KEY": "",
    "COMPRESSOR_TOPIC": "",
    "AGGREGATE_CACHE_MAXSIZE": "64",
}


def backend_env(url: str, *, create: bool = True) -> dict[str, str]:
    """The eventsourcing environment for a store URL; checks what can be checked before writing."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        return {**COMMON_ENV, "PERSISTENCE_MODULE": "eventsourcing.popo"}
    if scheme == "sqlite":
        path = sqlite_path(url)
        if _read_only(url):
            return {
                **COMMON_ENV,
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": identify_sqlite_store(path),
                "SQLITE_LOCK_TIMEOUT": "30",
                "CREATE_TABLE": "no",
            }
        check_sqlite_path(path, create=create)
        return {
            **COMMON_ENV,
            "PERSISTENCE_MODULE": "events._eventsourcing:DurableSQLiteFactory",
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": "30",
        }
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(url)
        if not parts.hostname or not parts.path.strip("/"):
            raise StoreError(
                f"store {redact(url)}: a PostgreSQL URL needs a host and a database name",
                hint="write postgresql://user:password@host:5432/dbname",
            )
        query = parse_qs(parts.query)
        return {
            **COMMON_ENV,
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")),
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", [""])[0],
            "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", ["10"])[0],
            "CREATE_TABLE": "yes" if create else "no",
        }
    raise StoreError(
        f"store {redact(url)}: unknown kind of store {scheme + '://' if scheme else url!r}",
        hint="use sqlite:///path/to/store.db, postgresql://user:pass@host:port/dbname or memory://",
    )


def read_only_url(url: str) -> str:
    """The URL that opens the same store without writing to it (SQLite: ``?mode=ro``).

    Other backends are returned as they are: a PostgreSQL reader opened with
    ``create=False`` creates no table, and the database's own grants decide the rest.
    """
    if url.split(":", 1)[0].lower() != "sqlite" or _read_only(url):
        return url
    return f"{url}?{READ_ONLY}"


def _read_only(url: str) -> bool:
    return url.lower().startswith("sqlite:") and url.rpartition("?")[2] == READ_ONLY


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:`` URL names (``sqlite:///rel.db`` relative, ``sqlite:////abs.db`` absolute)."""
    rest = url[len("sqlite:") :]
    if _read_only(url):
        rest = rest.rpartition("?")[0]
    if rest.startswith("///"):
        rest = rest[3:]
    elif rest.startswith("//"):
        raise StoreError(
            f"store {url}: a SQLite URL has no host",
            hint="write sqlite:///relative/path.db or sqlite:////absolute/path.db",
        )
    if not rest:
        raise StoreError(
            f"store {url}: no file named", hint="write sqlite:////absolute/path/to/store.db"
        )
    return Path(unquote(rest)).expanduser()


def check_sqlite_path(path: Path, *, create: bool) -> None:
    """Refuse a SQLite path that cannot work, before eventsourcing writes anything there."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.exists():
        if path.is_dir():
            raise StoreError(
                f"store {path}: is a directory", hint="name a file inside it, e.g. store.db"
            )
        with path.open("rb") as stream:
            header = stream.read(len(SQLITE_HEADER))
        if header and header != SQLITE_HEADER:  # an empty file is a new database to SQLite
            raise StoreError(
                f"store {path}: is not a SQLite database",
                hint="point --store at a TARS store, or at a new file name to create one",
            )
        if header or not create:
            identify_sqlite_store(path, new_ok=create)
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(
                f"store {path}: file is not writable",
                hint="fix its permissions or copy it elsewhere",
            )
    elif not create:
        raise StoreError(
            f"store {path}: does not exist",
            hint="pass the path of a store a node or `tars demo` wrote",
        )
    if not directory.is_dir():
        raise StoreError(
            f"store {path}: directory does not exist",
            hint=f"create {directory} first, or choose another path",
        )
    if not _writable(directory):
        raise StoreError(
            f"store {path}: directory is not writable",
            hint=f"SQLite needs to create its journal files beside the store: make {directory} writable or choose another path",
        )


def identify_sqlite_store(path: Path, *, new_ok: bool = False) -> str:
    """Refuse a file that is not a TARS store; the ``file:`` URI that reads it without writing.

    Another application's SQLite file, an empty file or a folder is named with what it is
    not, before eventsourcing could create its tables in it.  ``new_ok`` accepts a SQLite
    database with no table at all (a store about to be made).  The URI is read-only: with
    a non-empty write-ahead log beside the file (a node has it open, or crashed) SQLite
    must read the log, so ``mode=ro``; otherwise ``immutable=1`` as well, which takes no
    lock and creates no ``-wal``/``-shm`` file, so a store on read-only media opens.
    """
    if not path.exists():
        raise StoreError(
            f"store {path}: does not exist",
            hint="pass the path of a store a node or `tars demo` wrote",
        )
    if path.is_dir():
        raise StoreError(
            f"store {path}: is a directory, not a TARS store",
            hint="name the store file inside it, e.g. store.db",
        )
    with path.open("rb") as stream:
        header = stream.read(len(SQLITE_HEADER))
    hint = "point --store at a store a node, `tars evolve run` or `tars demo` wrote"
    if not header:
        raise StoreError(f"store {path}: is an empty file, not a TARS store", hint=hint)
    if header != SQLITE_HEADER:
        raise StoreError(f"store {path}: is not a SQLite database, so not a TARS store", hint=hint)
    uri = _read_only_uri(path)
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            first = (
                db.execute("SELECT topic FROM stored_events LIMIT 1").fetchone()
                if ("stored_events" in tables)
                else None
            )
    except sqlite3.Error as exc:
        raise StoreError(
            f"store {path}: cannot be read: {exc}",
            hint="check the file is readable; a store with its -wal file on read-only "
            "media needs its -shm file too, or a copy in a writable folder",
        ) from exc
    missing = [name for name in TARS_TABLES if name not in tables]
    if missing and not (new_ok and not tables):
        held = ", ".join(sorted(tables)) or "none"
        raise StoreError(
            f"store {path}: is a SQLite database but not a TARS store "
            f"(no {' or '.join(missing)} table; its tables: {held})",
            hint=hint,
        )
    if first is not None and not str(first[0]).startswith(TARS_TOPIC):
        raise StoreError(
            f"store {path}: holds another application's events "
            f"(first topic {first[0]!r}), not a TARS store",
            hint=hint,
        )
    return uri


def _read_only_uri(path: Path) -> str:
    wal = path.with_name(path.name + "-wal")
    target = quote(str(path.resolve()))
    if wal.exists() and wal.stat().st_size > 0:
        return f"file:{target}?mode=ro"
    return f"file:{target}?mode=ro&immutable=1"


def _writable(directory: Path) -> bool:
    """Whether files can be created in ``directory`` (a real probe: ``access`` lies to root)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return False
    try:
        handle, probe = tempfile.mkstemp(prefix=".tars-probe-", dir=directory)
    except OSError:
        return False
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def redact(url: str) -> str:
    """A URL fit for messages: the password replaced."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
