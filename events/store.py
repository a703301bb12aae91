"""The genome store: the one object the rest of TARS holds, over an eventsourcing application.

Layers, as in eventsourcing itself: :mod:`events.domain` decides (pure),
:mod:`events.application` persists (eventsourcing's recorders, chosen by configuration in
:mod:`events.backends`; the library's internals only through :mod:`events._eventsourcing`),
and :class:`GenomeStore` is the facade.  Writes go through the aggregate so every rule is
checked before anything is stored; reads that list history decode the raw stored rows
instead (:mod:`events.listing`, :mod:`events.verify`), and state transfer between nodes
is :mod:`events.transfer`.

The facade is composed, not a stack of mixins: each part receives what it uses (the
application, the shared :class:`~events.names.GenomeNames`, the URL) in its constructor,
so its whole state is in one place and it can be read and tested on its own.  What stays
here is the API itself: each write method states its decision on the lineage and hands it
to :class:`~events.writer.LineageWriter` (load, decide, store, redo on a lost race), the
reads of the head, and dropping the parts' caches after a batch commit or an import.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from events._eventsourcing import Tracking, WriteConflict, translated
from events.application import SNAPSHOT_INTERVAL, GenomesApplication
from events.backends import backend_env, redact
from events.domain import Lineage, proposals_of
from events.listing import VERSION_FIELDS as _VERSION_FIELDS
from events.listing import LogReader, LogRow
from events.names import PAGE, GenomeNames
from events.records import Adoption, CandidateRecord, Head, Held, LogEntry, VerifyReport
from events.transfer import EXPORT_PAGE, IMPORTABLE_TOPICS, Transfer
from events.verify import StoreCheck, check, verify
from events.versions import VersionIndex
from events.writer import RETRIES, WRITE_HINT, LineageWriter
from evolution.errors import GenomeError, StoreError, TarsError, UnknownGenomeError
from evolution.tree import Tree, short, version_id

__all__ = [
    "EXPORT_PAGE",
    "IMPORTABLE_TOPICS",
    "PAGE",
    "RETRIES",
    "SNAPSHOT_INTERVAL",
    "Adoption",
    "CandidateRecord",
    "GenomeStore",
    "GenomesApplication",
    "Head",
    "Held",
    "LogEntry",
    "LogRow",
    "StoreCheck",
    "VerifyReport",
    "_VERSION_FIELDS",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GenomeStore:
    """Every genome's lineage in one event store; the only store object TARS code holds."""

    def __init__(self, app: GenomesApplication, url: str) -> None:
        self._app = app
        self.url = redact(url)
        self._names = GenomeNames(app.recorder, self.url)
        self._versions = VersionIndex(app)
        self._log = LogReader(app, self._names)
        self._transfer = Transfer(app, self._names, self.url)
        self._writer = LineageWriter(app, self._names, self.url)

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> GenomeStore:
        """Open (and with ``create``, make) the store a URL names; see :mod:`events.backends`."""
        env = backend_env(url, create=create)
        try:
            app = GenomesApplication(env=env)
        except TarsError:
            raise
        except Exception as exc:
            raise StoreError(
                f"store {redact(url)}: cannot open: {exc}",
                hint="check the URL, that the database is running and that this user may write to it",
            ) from exc
        return cls(app, url)

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> GenomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writes ----

    def register(
        self,
        name: str,
        manifest_text: str,
        tree: Mapping[str, str],
        fitness: float | None,
        node: str,
        *,
        at: datetime | None = None,
        tracking: tuple[str, int] | None = None,
    ) -> str:
        """Register a genome; registering the same tree again is a no-op returning its version."""
        version = version_id(tree)
        for _ in range(RETRIES):
            if tracking is not None and (self.applied(tracking[0]) or 0) >= tracking[1]:
                return version
            try:
                existing = self._writer.get(name)
            except UnknownGenomeError:
                lineage = Lineage.register(name, manifest_text, tree, fitness, node, timestamp=at)
                try:
                    self._writer.save(lineage, Tracking(*tracking) if tracking else None)
                except WriteConflict:
                    continue  # another writer registered it first: compare with theirs
                self._names.learn(lineage.id, name)
                return version
            if version in (existing.registered_version, existing.head):
                if tracking is not None:
                    self.mark_applied(*tracking)
                return version
            raise GenomeError(
                f"genome {name} is already registered in store {self.url} with another tree "
                f"(registered {short(existing.registered_version)}, head {short(existing.head)}, this {short(version)})",
                hint="register it under another name, or evolve the registered genome",
            )
        raise StoreError(f"store {self.url}: registering {name} kept conflicting", hint="retry")

    def record_cycle(
        self,
        name: str,
        node: str,
        *,
        evaluated: Sequence[CandidateRecord] = (),
        adopted: Adoption | None = None,
        held: Sequence[Held] = (),
        cycle: int | None = None,
        seed: int = 0,
        tracking: tuple[str, int] | None = None,
        at: datetime | None = None,
        llm: dict[str, Any] | None = None,
    ) -> None:
        """Store everything one cycle decided in one transaction: all of it or none.

        ``llm`` is what asking the models cost the cycle and where it failed
        (``evolution.llm_usage``), kept on ``CycleCompleted`` (so only with ``cycle``).

        Events go in this order: evaluations, approval requests, the adoption, and, when
        ``cycle`` is given, ``CycleCompleted`` (without ``cycle`` no cycle is counted,
        which suits applying single decisions).  ``tracking`` = (ledger name, index) is
        stored in the same transaction; a write whose index was already applied is skipped.
        """

        def decide(lineage: Lineage) -> None:
            for record in evaluated:
                lineage.evaluate(record, node, timestamp=at)
            for request in held:
                lineage.hold(request, node, timestamp=at)
            if adopted is not None:
                lineage.adopt(adopted, node, timestamp=at)
            if cycle is not None:
                lineage.complete_cycle(
                    cycle,
                    adopted.version if adopted else None,
                    len(evaluated),
                    seed,
                    node,
                    timestamp=at,
                    llm=llm,
                )

        if not evaluated and adopted is None and not held and cycle is None and tracking is None:
            return
        self._writer.write(name, decide, tracking)

    def adopt(
        self, name: str, adoption: Adoption, node: str, *, at: datetime | None = None
    ) -> None:
        """Make ``adoption.version`` the head (its parent must be the head, its patch must give it)."""
        self._writer.write(name, lambda lineage: lineage.adopt(adoption, node, timestamp=at), None)

    def rollback(
        self, name: str, to_version: str, reason: str, node: str, *, at: datetime | None = None
    ) -> None:
        """Append a rollback to an earlier version (an id or a unique prefix); history is kept."""
        full = self._versions.resolve(name, to_version)

        def decide(lineage: Lineage) -> None:
            past = self._versions.lineage_at(name, full) if full != lineage.head else lineage
            lineage.rollback(full, past.head_tree, past.head_fitness, reason, node, timestamp=at)

        self._writer.write(name, decide, None)

    def approve(self, name: str, candidate: str, node: str, *, at: datetime | None = None) -> Held:
        """Record a human approval of a held candidate and return it (adopting is separate)."""
        return self._writer.write(
            name, lambda lineage: lineage.approve(candidate, node, timestamp=at), None
        )

    def transact(
        self, name: str, decide: Callable[[Lineage], T], tracking: tuple[str, int] | None = None
    ) -> T | None:
        """Let ``decide`` trigger events on the genome's lineage and store them in one transaction.

        The ledger's state machine uses it: ``tracking`` = (ledger, index) goes into the
        same transaction, and an index already applied is skipped (returns ``None``), so
        re-delivering committed entries after a crash never doubles an event.
        """
        return self._writer.write(name, decide, tracking)

    def load(self, name: str) -> Lineage:
        """The genome's lineage aggregate, for a caller that batches decisions (the ledger)."""
        return self._writer.get(name)

    def commit(self, lineages: Sequence[Lineage], tracking: tuple[str, int] | None) -> None:
        """Store the pending events of several lineages and the tracking record in ONE transaction.

        The ledger applies a run of committed entries this way: either all of their
        events and the last entry's index are stored, or none, so exactly-once holds for
        the whole run and the fsync is paid once per run instead of once per entry.
        """
        if not lineages and tracking is None:
            return
        record = Tracking(*tracking) if tracking is not None else None
        with translated(
            f"store {self.url}: cannot write ledger entries up to {tracking}", WRITE_HINT
        ):
            self._app.record(*lineages, tracking=record)
        for lineage in lineages:
            self._names.learn(lineage.id, lineage.name)
            self._writer.forget(lineage.name)  # the caller's lineage is now the newer one

    def mark_applied(self, ledger: str, index: int) -> None:
        """Record that a ledger entry was applied although it changed no genome."""
        if (self.applied(ledger) or 0) >= index:
            return
        recorder = self._app.recorder
        try:
            with translated(
                f"store {self.url}: cannot record ledger index {index}",
                "check free disk space, permissions and that the database is running",
                conflicts=True,
            ):
                recorder.insert_events([], tracking=Tracking(ledger, index))
        except WriteConflict as exc:  # applied concurrently: the same entry, already stored
            logger.debug("ledger %s index %d already applied: %s", ledger, index, exc)

    def applied(self, ledger: str) -> int | None:
        """The highest tracking index recorded for ``ledger`` (``None`` if none)."""
        return self._writer.applied(ledger)

    # ---- transfer between nodes (catching up past a compacted ledger): events.transfer ----

    def positions(self) -> dict[str, int]:
        """Every lineage in the store (lineage id as 32-hex text) -> its last position: what a
        node behind a compacted ledger compares with a peer's (see :mod:`events.transfer`)."""
        return self._transfer.positions()

    def export_events(
        self, lineage: str, after: int, upto: int, max_bytes: int = 1 << 20
    ) -> list[tuple[int, str, bytes]]:
        """Raw stored events ``(position, topic, state)`` of one lineage with
        ``after < position <= upto``, in position order, exactly the bytes stored; at most
        ``max_bytes`` of state except that the first event always comes."""
        return self._transfer.export_events(lineage, after, upto, max_bytes)

    def import_events(
        self, events: Sequence[tuple[str, int, str, bytes]], tracking: tuple[str, int]
    ) -> int:
        """Store events a peer exported, ``(lineage hex, position, topic, state)``, and the
        tracking record ``(ledger, index)`` in ONE transaction; return how many were stored.

        Everything is checked before anything is written (``Transfer.import_events`` lists
        the checks); any failure raises :class:`IntegrityError` with nothing stored.  After
        the commit this object's caches of the lineages imported are dropped.
        """
        count, lineages = self._transfer.import_events(events, tracking)
        for lineage in lineages:
            self._writer.forget(lineage.name)  # older than the store now
            self._versions.forget(lineage.name)
        return count

    # ---- reads ----

    def genomes(self) -> list[str]:
        return self._names.names()

    def head(self, name: str) -> Head:
        lineage = self._writer.get(name)
        return Head(
            name=lineage.name,
            version=lineage.head,
            tree=dict(lineage.head_tree),
            fitness=lineage.head_fitness,
            versions_count=lineage.versions_count,
            cycles_completed=lineage.cycles_completed,
            manifest_text=lineage.manifest_text,
            pending={candidate: lineage.held(candidate) for candidate in lineage.pending},
            proposals=copy.deepcopy(proposals_of(lineage)),
        )

    def resolve(self, name: str, version: str) -> str:
        """The full id of a version given by a unique prefix (UnknownVersionError otherwise)."""
        return self._versions.resolve(name, version)

    def chain(self, name: str) -> str:
        """The genome's last hash-chain link: equal on two nodes iff their histories are equal."""
        return self._writer.get(name).chain

    def at_version(self, name: str, version: str) -> tuple[Tree, float | None]:
        """The tree and fitness the genome had when ``version`` was its head."""
        full = self._versions.resolve(name, version)
        past = self._versions.lineage_at(name, full)
        return dict(past.head_tree), past.head_fitness

    def materialise(self, name: str, version: str) -> Tree:
        """The tree of any version the genome ever had (full id or unique prefix)."""
        lineage = self._writer.get(name)
        if version == lineage.head:
            return dict(lineage.head_tree)
        full = self._versions.resolve(name, version)
        if full == lineage.head:
            return dict(lineage.head_tree)
        return dict(self._versions.lineage_at(name, full).head_tree)

    # ---- the log: events.listing, events.verify ----

    def log(
        self, *, genome: str | None = None, start: int = 1, limit: int | None = None
    ) -> Iterator[LogEntry]:
        """Events in store order from sequence number ``start``, optionally of one genome."""
        return self._log.log(genome, start, limit)

    def log_rows(
        self, *, genome: str | None = None, start: int = 1, limit: int | None = None
    ) -> Iterator[LogRow]:
        """The same events as :meth:`log`, as plain tuples for listing many of them.

        Each row is ``(seq, type, genome, version, parent, time_ns, node, data, position)``:
        the time is integer nanoseconds since the epoch (UTC) instead of a ``datetime``,
        and no object is built per row beyond the decoded event and the tuple, so
        ``tars log ls`` over 100,000 events spends its time in SQLite and msgpack.
        """
        return self._log.log_rows(genome, start, limit)

    def log_tail(self, count: int, *, genome: str | None = None) -> tuple[list[LogRow], int]:
        """The newest ``count`` events (of one genome, or of all) as :meth:`log_rows` rows, in
        store order, and how many earlier events there are (see ``LogReader.log_tail``)."""
        return self._log.log_tail(count, genome)

    def verify(self) -> VerifyReport:
        """Recompute every chain from the raw stored rows; raise naming the first bad event."""
        return verify(self._app, self._names, self._log)

    def check(self, mark: Path | None = None, ledgers: Sequence[str] = ()) -> StoreCheck:
        """The start-up check: SQLite's quick_check, then the hash chain from the last check.

        ``mark`` is the file where the last check left what it verified (see
        :mod:`events.verify`), so a node's start stays fast as history grows; without one
        the whole chain is walked.  The applied index of each of ``ledgers`` must not go
        back.  Damage raises :class:`IntegrityError` naming what is wrong; a sound store gets
        a new mark.
        """
        return check(self._app, self._names, self._log, self.url, mark, ledgers)
