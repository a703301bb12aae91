"""A run of committed entries, applied in memory and stored in as few transactions as possible.

The ledger's state machine triggers each entry's events on the lineages of a :class:`Run`;
:meth:`Run.flush` stores every pending event of the run together with the run's last
Raft index (the tracking record) in ONE store transaction, so a crash loses or keeps
the whole run, never half of it.  An entry that fails is cut out of the run
(:meth:`Run.begin` / :meth:`Run.abort`) without losing the entries before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from events.domain import Lineage, proposals_of
from events.store import GenomeStore
from evolution.errors import UnknownGenomeError


class Run:
    """The lineages a run of entries changes, kept in memory until one transaction stores them."""

    def __init__(
        self,
        store: GenomeStore,
        ledger: str,
        live: dict[str, Lineage],
        applied: int,
        on_stored: Callable[[int, Sequence[Lineage]], None],
    ) -> None:
        self.store = store
        self.ledger = ledger
        #: lineages as the last stored run left them (the ledger's, shared across runs)
        self.live = live
        #: the highest index stored (the store's tracking record), moved by :meth:`flush`
        self.applied = applied
        #: told the new applied index and the lineages written after every transaction
        #: (the ledger's applied index and committed chain heads)
        self.on_stored = on_stored
        self.lineages: dict[str, Lineage] = {}
        #: the last index this run applied or skipped (stored by the next flush)
        self.last_index = applied
        self._marks: dict[str, int] = {}

    @property
    def dirty(self) -> bool:
        """Whether the run applied indexes the store does not hold yet."""
        return self.last_index > self.applied

    def lineage(self, name: str, *, missing_ok: bool = False) -> Any:
        found = self.lineages.get(name) or self.live.get(name)
        if found is not None:
            self.lineages[name] = found
        else:
            try:
                found = self.store.load(name)
            except UnknownGenomeError:
                if missing_ok:
                    return None
                raise
            self.lineages[name] = found
        return found

    def add(self, lineage: Lineage) -> None:
        self.lineages[lineage.name] = lineage

    def begin(self) -> None:
        """Remember how many events each lineage had before the next entry."""
        self._marks = {name: len(lin._pending_events) for name, lin in self.lineages.items()}

    def abort(self) -> None:
        """Drop the failed entry's events; keep the run's earlier ones and store them now.

        A lineage's in-memory state already moved with the dropped events, so after
        storing the earlier ones every lineage is loaded afresh from the store.
        """
        for name, lineage in list(self.lineages.items()):
            self.live.pop(name, None)
            mark = self._marks.get(name)
            if mark is None:
                del self.lineages[name]  # first touched (or registered) by the failed entry
            else:
                del lineage._pending_events[mark:]
        self.flush(keep=False)

    def waiting(self, genome: str | None) -> dict[str, tuple[str, frozenset[str]]]:
        lineage = self.lineages.get(genome) if genome is not None else None
        return waiting_of(lineage) if lineage is not None else {}

    def flush(self, *, keep: bool = True) -> None:
        """One transaction: every pending event of the run and the last index applied."""
        pending = [lineage for lineage in self.lineages.values() if lineage._pending_events]
        if pending or self.dirty:
            try:
                self.store.commit(pending, (self.ledger, self.last_index) if self.dirty else None)
            except BaseException:
                self.live.clear()  # nothing was stored: in-memory lineages are ahead of the store
                raise
            self.applied = max(self.applied, self.last_index)
            self.on_stored(self.applied, pending)
        if keep:
            self.live.update(self.lineages)
        self.lineages = {}
        self._marks = {}


def waiting_of(lineage: Lineage) -> dict[str, tuple[str, frozenset[str]]]:
    return {pid: (p["version"], frozenset(p["votes"])) for pid, p in proposals_of(lineage).items()}
