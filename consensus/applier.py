"""The applier thread: committed entries and snapshots reach the application, in log order.

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

logger = logging.getLogger(__name__)


class Applier:
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
