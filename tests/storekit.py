"""Store backends for test classes: the same tests on memory, SQLite and PostgreSQL.

A test class mixes in one backend and asks for stores by name through ``create_store``
(a fresh, empty store per name) and ``reopen_store`` (the same store again after it was
closed, where the backend can do that: ``reopenable``).  Exactly-once through tracking
records is the backend's job, so the ledger's tests run on every backend, as
``tests/test_events.py`` does for the store itself.  Stores are closed (and PostgreSQL
databases dropped) after each test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.store import GenomeStore


class Backend:
    """Opens and tracks the stores of one test; subclasses say how to make one."""

    reopenable = True

    @pytest.fixture(autouse=True)
    def _stores(self, tmp_path: Path) -> Iterator[None]:
        self.tmp_path = tmp_path
        self.opened: list[GenomeStore] = []
        yield
        self.close_all()

    def close_all(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()

    def create_store(self, name: str = "store") -> GenomeStore:
        """A new, empty store of this backend, closed after the test."""
        store = self._open(name, new=True)
        self.opened.append(store)
        return store

    def reopen_store(self, name: str = "store") -> GenomeStore:
        """The store ``name`` again (close it first); skips where the backend cannot."""
        if not self.reopenable:
            pytest.skip("an in-memory store does not survive closing")
        store = self._open(name, new=False)
        self.opened.append(store)
        return store

    def close_store(self, store: GenomeStore) -> None:
        store.close()
        self.opened.remove(store)

    def _open(self, name: str, *, new: bool) -> GenomeStore:
        raise NotImplementedError


class MemoryBackend(Backend):
    reopenable = False

    def _open(self, name: str, *, new: bool) -> GenomeStore:
        return GenomeStore.open("memory://")


class SQLiteBackend(Backend):
    def _open(self, name: str, *, new: bool) -> GenomeStore:
        return GenomeStore.open(f"sqlite:///{self.tmp_path / f'{name}.db'}", create=new)


class PostgresBackend(Backend):
    """One database per store name, made on first use and dropped after the test.

    Concrete classes must carry ``@pytest.mark.postgres`` themselves.
    """

    @pytest.fixture(autouse=True)
    def _databases(self, postgres_dsn: str, _stores: None) -> Iterator[None]:
        import psycopg

        self.pg_dsn = postgres_dsn
        self.pg_prefix = "tars_test_" + uuid.uuid4().hex[:12]
        self.pg_names: list[str] = []
        yield
        self.close_all()
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            for db in self.pg_names:
                admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')

    def _open(self, name: str, *, new: bool) -> GenomeStore:
        import psycopg

        db = f"{self.pg_prefix}_{name}"
        if new:
            with psycopg.connect(self.pg_dsn, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{db}"')
            self.pg_names.append(db)
        return GenomeStore.open(f"{self.pg_dsn.rsplit('/', 1)[0]}/{db}")
