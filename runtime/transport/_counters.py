"""What a node can tell about its traffic (counters) and the fault injection tests use.

Every frame that is sent, received, retransmitted or dropped is counted under one name of
``_COUNTERS``; the threads that count the most (the I/O thread, each request socket,
each link) keep their own tallies without the lock and :meth:`stats` adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._core import _COUNTERS, _Core

__all__ = ["_COUNTERS", "_Counters"]


class _Counters(_Core):
    def block(self, peers: Iterable[str]) -> None:
        """Fault injection: drop all traffic to and from ``peers``; ``block([])`` heals."""
        self._blocked = frozenset(peers)

    def stats(self) -> dict[str, int]:
        """Counters since start: traffic, retransmissions and every kind of dropped frame."""
        with self._count_lock:
            counts = dict(self._counts)
            callers = list(self._callers)
        counts["received"] += self._io_received
        counts["sent"] += self._io_sent
        for link in list(self._links.values()):
            counts["sent"] += link.sent
            counts["retransmits"] += link.retransmits
        for caller in callers:
            counts["sent"] += caller.sent
            counts["received"] += caller.received
        return counts
