"""A steady load in the background: callers on every node's front while something else runs.

`tars demo` evolves its genome while the swarm serves it; this keeps a modest load on
every node through every adoption and rollout (:func:`runtime.service.load.drive` in
short rounds on a thread of its own), so the demo's summary can say how many requests
were served and how many were lost while versions changed under them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence

from evolution.errors import TarsError
from runtime.service.load import LoadReport, Request, drive

log = logging.getLogger("tars.load")

#: seconds of one round of load; the totals are the sum of the rounds
ROUND = 5.0


class SteadyLoad:
    """Rounds of :func:`drive` until :meth:`stop`; :attr:`served`, :attr:`lost` add them up."""

    def __init__(
        self, urls: Sequence[str], mix: Sequence[Request], rate: float = 20.0, concurrency: int = 4
    ) -> None:
        self.urls, self.mix, self.rate, self.concurrency = list(urls), list(mix), rate, concurrency
        self.served = 0
        #: requests that got no 200 answer, by why ("503", "timeout", "connect", …)
        self.lost: Counter[str] = Counter()
        #: version -> 200 answers it gave
        self.versions: Counter[str] = Counter()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def start(self) -> SteadyLoad:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Ends after the round that runs (at most :data:`ROUND` seconds and its timeout)."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._halt.is_set():
            try:
                report = drive(self.urls, self.mix, self.rate, self.concurrency, ROUND)
            except TarsError as exc:  # a bad mix: say so once, and stop loading
                log.warning("the steady load stopped: %s", exc)
                return
            self._add(report)

    def _add(self, report: LoadReport) -> None:
        self.served += report.ok
        self.lost.update(report.errors)
        for version, colours in report.answered_by.items():
            self.versions[version] += sum(colours.values())
