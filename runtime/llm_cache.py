"""The reply cache and request journal on disk (SQLite, no pickle).

A reply is stored under ``sha256(model + prompt)``: the same question to the same model
is answered from disk, so a replay, a restart or a second run over the same history
pays no tokens.  Every request (sent or served from the cache) is journalled with its
model, prompt hash, tokens, latency and outcome, which is the record of what a run
asked and paid.  Neither table holds an API key or a header: only what the model said.

One connection shared by the CLI's thread and the generator's actor thread, behind a
lock (SQLite allows it with ``check_same_thread=False``).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from evolution.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency REAL NOT NULL,
    cached INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class CachedReply:
    """A model's reply and the tokens its endpoint reported for it."""

    text: str
    tokens_in: int
    tokens_out: int

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True)
class RequestRecord:
    """One request: which model, which prompt (by hash), what it cost, how long, how it ended."""

    model: str
    prompt_hash: str
    tokens_in: int
    tokens_out: int
    latency: float
    cached: bool
    attempts: int
    outcome: str = "ok"


class ReplyCache:
    """Replies by prompt hash, and the journal of requests."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"llm cache {path}: cannot be opened ({exc})",
                hint="set cache: in llm.yml to a writable path",
            ) from exc
        self.path = path
        self._lock = threading.Lock()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._db.execute(
                "SELECT reply, tokens_in, tokens_out FROM replies WHERE key = ?", (key,)
            ).fetchone()
        return CachedReply(row[0], row[1], row[2]) if row else None

    def put(self, key: str, model: str, reply: CachedReply) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                (key, model, reply.text, reply.tokens_in, reply.tokens_out),
            )

    def journal(self, record: RequestRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (model, prompt_hash, tokens_in, tokens_out, latency, "
                "cached, attempts, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.model,
                    record.prompt_hash,
                    record.tokens_in,
                    record.tokens_out,
                    record.latency,
                    int(record.cached),
                    record.attempts,
                    record.outcome,
                ),
            )

    def records(self) -> list[RequestRecord]:
        """Every journalled request, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT model, prompt_hash, tokens_in, tokens_out, latency, cached, attempts, "
                "outcome FROM requests ORDER BY id"
            ).fetchall()
        return [RequestRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
