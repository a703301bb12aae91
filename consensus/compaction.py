"""Log compaction and snapshots, the engine's side (driver thread only).

pysyncobj never compacts on its own (its dump is a pickle of the whole object).  When
the application registers ``RaftEngine.on_snapshot``, :meth:`Compaction.maybe_compact`
drops the log before a point the application has durably applied and writes a small
msgpack manifest (:mod:`consensus.snapshot`) as pysyncobj's "full dump" file; pysyncobj
ships that file to a follower whose log no longer overlaps, and
:meth:`Compaction.on_offer` lets the follower install it only once its application has
fetched the state up to that point from a peer (``SnapshotApp.install_snapshot``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consensus import snapshot
from consensus._pysyncobj import Core, Node
from consensus.interface import Snapshot, SnapshotApp
from consensus.journal import CrcJournal
from consensus.wire import RaftNode, _RaftWire, command_ok
from evolution.errors import ConfigError, ConsensusError

logger = logging.getLogger(__name__)


class Compaction:
    """When to compact, the snapshot file, and a leader's snapshot offers.

    ``enqueue`` hands a :class:`Snapshot` to the applier thread, which asks the
    application to stand on it (fetching the state it lacks).
    """

    def __init__(
        self, node_id: str, journal_path: Path, enqueue: Callable[[Snapshot], None]
    ) -> None:
        self.node_id = node_id
        self.journal_path = journal_path
        self.path = journal_path.with_name(journal_path.name + ".snap")
        self._enqueue = enqueue
        self.app: SnapshotApp | None = None
        self.compact_after = 0
        self.keep = 0
        self.index = 0  # the snapshot this node stands on
        self._offer: bytearray | None = None
        self._install_wanted = 0
        self._offer_wanted = 0  # a leader's snapshot this node is fetching the state of
        self.compactions = 0
        self.installs = 0
        self.offers_deferred = 0
        self.failures = 0

    def enable(self, app: SnapshotApp, compact_after: int, keep: int) -> None:
        if keep < 2 or compact_after <= keep:
            raise ConfigError(
                f"compaction of node {self.node_id}: compact_after ({compact_after}) must "
                f"exceed keep ({keep}), and keep must be at least 2",
                hint="e.g. compact_after=10000, keep=1000",
            )
        self.app, self.compact_after, self.keep = app, compact_after, keep

    # ---- at start -----------------------------------------------------------------------

    def load(self, journal: CrcJournal) -> int:
        """Stand on this node's own snapshot file, if the log was compacted.

        Returns the snapshot's index (0 without one): nothing up to it is delivered.
        """
        first = journal[0][1] if len(journal) else 1
        if not self.path.exists():
            if first > 1:
                raise ConsensusError(
                    f"Raft journal {self.journal_path} starts at index {first}, but its "
                    f"snapshot file {self.path} is missing",
                    hint="the log before that index is gone; move the journal away and let "
                    "this node rejoin as a new member (it then fetches a snapshot)",
                )
            return 0
        manifest = snapshot.read(self.path, command_ok)
        self._finish_cut(journal, manifest)
        if self.app is None:
            raise ConsensusError(
                f"{self.path}: this node's log was compacted, but nothing was "
                "registered with on_snapshot to restore the state before it",
                hint="call engine.on_snapshot(app) before start()",
            )
        self.index = manifest.index
        self._install_wanted = manifest.index
        self._enqueue(Snapshot(manifest.index, manifest.term, manifest.state, None))
        return manifest.index

    def _finish_cut(self, journal: CrcJournal, manifest: snapshot.Manifest) -> None:
        """Drop the log's head a crash left behind the snapshot, as the compaction meant to.

        The snapshot file is written before the journal is cut; a crash in between leaves
        a log that still starts before the snapshot's two entries, and pysyncobj, seeing
        its first entries differ from them, would clear the whole log, entries after the
        snapshot included (acknowledged ones, which Raft must never lose).
        """
        if not len(journal):
            return
        position = manifest.index - 1 - journal[0][1]
        if position <= 0 or position + 1 >= len(journal):
            return
        if (
            journal[position] == manifest.entries[0]
            and journal[position + 1] == manifest.entries[1]
        ):
            logger.warning(
                "raft %s: finishing a compaction a crash interrupted (log cut before index %d)",
                self.node_id,
                manifest.index - 1,
            )
            journal.deleteEntriesTo(position)

    def deserialize(self, file_name: str) -> tuple[Any, Any, list[Node]]:
        """pysyncobj's custom deserializer: the last two entries and the membership."""
        manifest = snapshot.read(Path(file_name), command_ok)
        return (
            manifest.entries[1],
            manifest.entries[0],
            [RaftNode(m) for m in manifest.members],
        )

    # ---- compaction ---------------------------------------------------------------------

    def maybe_compact(self, core: Core, journal: CrcJournal) -> None:
        """Drop the log before ``keep`` entries behind what the application made durable.

        The manifest is written (and fsynced) before the journal loses anything, so a
        crash in between leaves a snapshot whose entries are still in the log, and the
        restart finishes the cut (:meth:`_finish_cut`).
        """
        app = self.app
        if app is None or len(journal) <= self.compact_after:
            return
        first = journal[0][1]
        upto = min(app.applied_index(), core.last_applied) - self.keep
        if upto <= first + 1:
            return
        prev, last = journal[upto - 1 - first], journal[upto - first]
        members = sorted([self.node_id, *(n.id for n in core.others)])
        try:
            data = snapshot.encode([prev, last], members, app.snapshot_state(upto))
            snapshot.write(self.path, data)
        except Exception:
            self.failures += 1
            logger.exception(
                "raft %s: writing the snapshot at index %d failed; the log is kept",
                self.node_id,
                upto,
            )
            return
        core.delete_entries_to(upto - 1)
        self.index = upto
        self.compactions += 1
        logger.info(
            "raft %s: log compacted up to index %d (%d entries left, snapshot %d bytes)",
            self.node_id,
            upto,
            len(journal),
            len(data),
        )

    # ---- a leader's offer -----------------------------------------------------------------

    def holding(self) -> bool:
        """Whether the application is still fetching the state of a leader's snapshot."""
        app = self.app
        return app is not None and self._offer_wanted > app.applied_index()

    def on_offer(self, wire: _RaftWire, node: Node, message: dict[str, Any]) -> int:
        """A leader whose log no longer reaches ours offers its snapshot, chunk by chunk.

        pysyncobj would install it at once, but the application's state must reach the
        snapshot's index first, or the entries after it would be applied on top of a
        hole.  So the chunks are collected, the manifest checked, and the snapshot either
        handed to pysyncobj (the application already has that state) or the application
        asked to fetch the state while the offer counts as a heartbeat (leader known,
        election timer reset, commit index untouched).  The leader offers again at its
        next heartbeat.  Returns the index installed, or 0.
        """
        chunk = message["serialized"]
        if chunk is None:
            wire.heartbeat(node, message["term"])
            return 0
        data, first, last = chunk
        if first:
            self._offer = bytearray()
        if self._offer is None:  # a chunk without its start: wait for the next offer
            wire.heartbeat(node, message["term"])
            return 0
        self._offer += data
        if len(self._offer) > snapshot.MAX_BYTES:
            self._offer = None
            wire.dropped_invalid += 1
            return 0
        if not last:
            wire.heartbeat(node, message["term"])
            return 0
        blob, self._offer = bytes(self._offer), None
        try:
            manifest = snapshot.decode(blob, f"leader {node.id}", command_ok)
        except ConsensusError as exc:
            wire.dropped_invalid += 1
            logger.warning("raft %s: dropped a snapshot offer: %s", self.node_id, exc)
            return 0
        return self._take(wire, node, message, manifest, blob)

    def _take(
        self,
        wire: _RaftWire,
        node: Node,
        message: dict[str, Any],
        manifest: snapshot.Manifest,
        blob: bytes,
    ) -> int:
        app = self.app
        if app is None:
            logger.error(
                "raft %s: %s offers a snapshot at index %d but compaction is not enabled here",
                self.node_id,
                node.id,
                manifest.index,
            )
            return 0
        if app.applied_index() < manifest.index:
            self.offers_deferred += 1
            wire.heartbeat(node, message["term"])
            self._offer_wanted = max(self._offer_wanted, manifest.index)
            if manifest.index > self._install_wanted:
                self._install_wanted = manifest.index
                self._enqueue(Snapshot(manifest.index, manifest.term, manifest.state, node.id))
            return 0
        # The application has the state: install the snapshot as the log's new start.
        wire.install_dump(node, blob, message["term"], message["commit_index"])
        self.index = manifest.index
        self.installs += 1
        logger.info(
            "raft %s: installed %s's snapshot at index %d", self.node_id, node.id, manifest.index
        )
        return manifest.index
