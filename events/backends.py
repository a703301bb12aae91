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
  what follows the third slash is the path);
- ``postgresql://user:password@host:port/dbname[?schema=name]``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from events._eventsourcing import DurableSQLiteFactory, RawRow, raw_notifications
from evolution.errors import StoreError

__all__ = [
    "COMMON_ENV",
    "DurableSQLiteFactory",
    "RawRow",
    "backend_env",
    "check_sqlite_path",
    "raw_notifications",
    "redact",
    "sqlite_path",
]

SQLITE_HEADER = b"SQLite format 3\x00"

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


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:`` URL names (``sqlite:///rel.db`` relative, ``sqlite:////abs.db`` absolute)."""
    rest = url[len("sqlite:") :]
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
