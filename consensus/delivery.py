"""The delivery thread: committed entries and snapshots reach the application, in log order.

It runs apart from the driver so that a slow store write never delays heartbeats.  A
failing callback halts delivery on this node instead of skipping the entry: skipping
would fork this node's store from its peers, and a restart delivers again from the start.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from consensus.interface import Committed, Snapshot, SnapshotApp
from consensus.journal import CrcJournal
from consensus.wire import _MEMBERSHIP, TAG
from evolution.errors import ConsensusError

logger = logging.getLogger(__name__)


class Delivery:
    """One thread calling ``on_commit`` (and ``install_snapshot``) for what the driver queues."""

    def __init__(self, node_id: str, stopping: threading.Event) -> None:
        self.node_id = node_id
        self._stopping = stopping
        self.callback: Callable[[Committed], None] | None = None
        self.app: SnapshotApp | None = None
        self._queue: queue.SimpleQueue[Committed | Snapshot | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: why delivery halted ("index N: error"), or None
        self.error: str | None = None
        #: the last index the callback applied
        self.applied = 0

    def put(self, item: Committed | Snapshot) -> None:
        self._queue.put(item)

    def collect(self, journal: CrcJournal, delivered: int, applied: int) -> list[bytes]:
        """Queue the TARS entries after index ``delivered`` up to ``applied`` (driver thread).

        The journal is synced first: nothing reaches the application that a crash could
        take back.  Returns the membership commands among those entries.
        """
        journal.sync()
        first = journal[0][1]
        membership: list[bytes] = []
        for index in range(delivered + 1, applied + 1):
            command, entry_index, term = journal[index - first]
            if entry_index != index:  # pragma: no cover - journal invariant
                raise ConsensusError(
                    f"raft {self.node_id}: journal position holds index {entry_index}, "
                    f"expected {index}",
                    hint="the journal is inconsistent; move it away and rejoin",
                )
            if command[:1] == TAG:
                self._queue.put(Committed(index, term, command[1:]))
            elif command[0] == _MEMBERSHIP:
                membership.append(command)
        return membership

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"raft-apply-{self.node_id}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Deliver what is already queued, then end the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()

    def _install(self, item: Snapshot) -> None:
        app = self.app
        assert app is not None
        try:
            app.install_snapshot(item)
        except Exception as exc:
            if self._stopping.is_set():
                return
            self.error = f"snapshot at index {item.index}: {exc!r}"
            logger.exception(
                "raft %s: installing the snapshot at index %d failed; delivery halted until restart",
                self.node_id,
                item.index,
            )

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None or self.callback is None:
                continue
            if isinstance(item, Snapshot):
                self._install(item)
                continue
            try:
                self.callback(item)
                self.applied = item.index
            except Exception as exc:
                self.error = f"index {item.index}: {exc!r}"
                logger.exception(
                    "raft %s: on_commit failed at index %d; delivery halted until restart",
                    self.node_id,
                    item.index,
                )
