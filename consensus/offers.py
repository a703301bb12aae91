"""The recent committed offers: what a peer's incubator may be asked to prove (issue 9).

A proposer commits its cycle's candidates as an ``offer`` entry before it asks any peer
to prove one; a peer then runs only what its own ledger state holds.  The state machine
(:class:`consensus.ledger.LedgerState`) keeps the recent offers here: in memory, rebuilt
from re-deliveries after a restart, and in the compaction snapshot, so a node that
restarts on a compacted log or takes a peer's state still knows them.  Only the most
recent :data:`KEPT` offers are kept, each within :data:`MAX_CANDIDATES` candidates and
:data:`MAX_BYTES` characters of patches, so a member cannot grow its peers' memory with
offers: an offer over the bounds is skipped the same way on every node.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from typing import Any

from consensus.entries import Offer, decode, encode
from evolution.errors import ConsensusError

#: Offers a node keeps, most recent first out (a peer asks within seconds of the commit).
KEPT = 16
#: Most candidates one offer may name.
MAX_CANDIDATES = 64
#: Most characters of patches one offer may carry (all its candidates together).
MAX_BYTES = 2 << 20


def check(offer: Offer) -> None:
    """Refuse an offer over the bounds (a :class:`ConsensusError`, so every node skips it)."""
    if len(offer.candidates) > MAX_CANDIDATES:
        raise ConsensusError(
            f"offer {offer.id} names {len(offer.candidates)} candidates, over {MAX_CANDIDATES}"
        )
    size = sum(len(c.patch) + len(c.candidate) for c in offer.candidates)
    if size > MAX_BYTES:
        raise ConsensusError(f"offer {offer.id} carries {size} characters, over {MAX_BYTES}")


class Offers:
    """The last :data:`KEPT` committed offers by id, with the index that committed each."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, tuple[int, Offer]] = OrderedDict()
        self._changed = threading.Condition()

    def __len__(self) -> int:
        with self._changed:
            return len(self._by_id)

    def keep(self, index: int, offer: Offer) -> None:
        """Record an offer committed at ``index`` (the first of an id stands; bounds checked)."""
        check(offer)
        with self._changed:
            if offer.id in self._by_id:
                return
            self._by_id[offer.id] = (index, offer)
            while len(self._by_id) > KEPT:
                self._by_id.popitem(last=False)
            self._changed.notify_all()

    def replayed(self, index: int, entry: object) -> None:
        """A re-delivered entry: an offer is known again after a restart (one over the
        bounds stays skipped); any other entry changes nothing here."""
        if isinstance(entry, Offer):
            with contextlib.suppress(ConsensusError):
                self.keep(index, entry)

    def get(self, offer: str, wait: float = 0.0) -> Offer | None:
        """The committed offer, waiting up to ``wait`` s for this node to apply it."""
        deadline = time.monotonic() + wait
        with self._changed:
            while offer not in self._by_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self._by_id[offer][1]

    # -- the compaction snapshot's part --

    def state(self, index: int) -> list[list[Any]]:
        """The offers committed up to ``index``, as ``[index, entry bytes]`` pairs."""
        with self._changed:
            return [[at, encode(o)] for at, o in self._by_id.values() if at <= index]

    @staticmethod
    def read(state: Any) -> list[tuple[int, Offer]]:
        """A snapshot's offers (absent in snapshots older than offers: none); checked."""
        if state is None:
            return []
        if not isinstance(state, list):
            raise TypeError("offers is not a list")
        out: list[tuple[int, Offer]] = []
        for item in state:
            if not (isinstance(item, list) and len(item) == 2 and type(item[0]) is int):
                raise TypeError("an offer is not [index, entry]")
            if not isinstance(item[1], bytes):
                raise TypeError("an offer's entry is not bytes")
            offer = decode(item[1])
            if not isinstance(offer, Offer):
                raise TypeError(f"a {type(offer).__name__} entry among the offers")
            check(offer)
            out.append((item[0], offer))
        return out[-KEPT:]

    def replace(self, offers: list[tuple[int, Offer]]) -> None:
        """Stand on a snapshot's offers (later entries replay over them)."""
        with self._changed:
            self._by_id = OrderedDict((o.id, (at, o)) for at, o in offers)
            self._changed.notify_all()
