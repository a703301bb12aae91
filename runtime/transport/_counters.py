"""What a node can tell about its traffic (counters) and the fault injection tests use.

Every frame that is sent, received, retransmitted or dropped is counted under one name of
``_COUNTERS``; the threads that count the most (the I/O thread, each request socket,
each link) keep their own tallies without the lock and :meth:`stats` adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._core import _COUNTERS, _GAUGES, _Core

__all__ = ["_COUNTERS", "_GAUGES", "_Counters"]


class _Counters(_Core):
    def block(self, peers: Iterable[str]) -> None:
        """Fault injection: drop all traffic to and from ``peers``; ``block([])`` heals."""
        self._blocked = frozenset(peers)

    def stats(self) -> dict[str, int]:
        """Counters since start (traffic, retransmissions, every kind of dropped frame) and
        the bytes held now in each kind of buffer a peer can make grow (``_GAUGES``).

        The tallies of other threads are read without their locks: each is an int that
        only its owner writes, so a read is at worst a moment old.
        """
        with self._count_lock:
            counts = dict(self._counts)
            callers = list(self._callers)
            work_out = self._work_out
        counts["received"] += self._io_received
        counts["sent"] += self._io_sent
        counts.update(dict.fromkeys(_GAUGES, 0))
        for link in list(self._links.values()):
            counts["sent"] += link.sent
            counts["retransmits"] += link.retransmits
            counts["dropped_backlog_bytes"] += link.refused_bytes
            counts["backlog_bytes"] += link.backlog_bytes
            for stream in list(link.streams.values()):
                counts["unacked_bytes"] += stream.unacked_bytes
        for caller in callers:
            counts["sent"] += caller.sent
            counts["received"] += caller.received
        for budget in list(self._budgets.values()):
            counts["dropped_reorder"] += budget.refused_frames
            counts["dropped_reorder_bytes"] += budget.refused_bytes
            counts["reorder_bytes"] += budget.held
        counts["request_bytes"] = max(0, self._work_in - work_out)
        return counts
