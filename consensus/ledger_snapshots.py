"""The part of the ledger's state machine that stands in for a compacted log.

:class:`consensus.ledger.LedgerState` keeps, besides the store, the member list (with
its changes by index), the swarm's signing keys and the committed chain heads of its
store; a snapshot carries them (:mod:`consensus.blob`), a peer's state transfer reads
them at one point of the log (:meth:`LedgerSnapshots.export_begin`) and a node catching
up stores a peer's events under them (:meth:`LedgerSnapshots.import_state`).  A mixin of
``LedgerState`` only, kept apart so each module holds one concept.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from consensus.approvals import ApproverList, Approvers, approvers_from
from consensus.blob import (
    Heads,
    approvers_of,
    encode_blob,
    members_and_keys,
    offers_of,
    store_heads,
)
from consensus.entries import Members
from consensus.offers import Offers
from consensus.signing import Keyring
from events.domain import Lineage
from events.store import GenomeStore
from evolution.errors import TarsError
from runtime.keys import decode_sign_key

__all__ = ["LedgerSnapshots"]


class LedgerSnapshots:
    """Members, keys and chain heads by ledger index; the ledger's snapshot and transfer."""

    store: GenomeStore
    ledger: str
    lock: threading.Lock
    members: list[str]
    keys: Keyring | None
    offers: Offers
    approval: Approvers
    approvers: Keyring
    _approver_changes: list[tuple[int, Approvers]]
    _applied: int
    _member_changes: list[tuple[int, list[str]]]
    _heads: tuple[int, Heads]
    _live: dict[str, Lineage]
    _trees: dict[str, dict[str, str]]

    def _stored(self, index: int, lineages: Sequence[Lineage]) -> None:
        self._applied = max(self._applied, index)
        heads = dict(self._heads[1])
        for lineage in lineages:
            heads[lineage.id.hex] = (lineage.version, lineage.chain)
        self._heads = (self._applied, heads)

    # -- snapshots: what stands in for a compacted log --

    def members_at(self, index: int) -> list[str]:
        """The member list in force after applying ``index``."""
        for since, members in reversed(self._member_changes):
            if since <= index:
                return members
        return self._member_changes[0][1]

    def approvers_at(self, index: int) -> Approvers | None:
        """The approvers an ``approvers`` entry set at or before ``index``; None while
        cluster.yml's are in force (a blob then carries none, as before the entry existed)."""
        for since, approval in reversed(self._approver_changes):
            if since <= index:
                return approval
        return None

    def _take_approvers(self, index: int, entry: ApproverList) -> str | None:
        """Judge approvals with the entry's approvers from ``index`` on; why not, or None."""
        try:
            approval = approvers_from(entry, f"ledger entry {index}")
        except TarsError as exc:
            return str(exc)
        self._set_approvers(index, approval)
        return None

    def _set_approvers(self, index: int, approval: Approvers) -> None:
        self.approval, self.approvers = approval, Keyring(approval.keys)
        self._approver_changes = [c for c in self._approver_changes if c[0] < index]
        self._approver_changes.append((index, approval))

    def snapshot_state(self, index: int) -> bytes:
        """The ledger's state that is not in the store, for a snapshot at ``index``: the
        member list at ``index``, the keys, and the chain heads as this store holds them
        at its applied index (at or after ``index``); see :mod:`consensus.blob`."""
        heads_index, heads = self._heads
        keys = self.keys.as_text() if self.keys is not None else {}
        offers = self.offers.state(index)
        approval = self.approvers_at(index)
        return encode_blob(self.members_at(index), keys, heads_index, heads, offers, approval)

    def restore(self, index: int, state: bytes) -> None:
        """Take the member list, keys and recent offers of a snapshot at ``index``; later
        entries replay over them."""
        members, keys = members_and_keys(index, state)
        offers = offers_of(index, state)
        approval = approvers_of(index, state)
        with self.lock:
            if approval is not None:  # else cluster.yml's (or what this node had) stand
                self._set_approvers(index, approval)
            self.members = sorted(set(members)) or self.members
            self._member_changes = [(index, self.members)]
            if self.keys is not None:
                self.keys.update(keys)
            self.offers.replace(offers)

    def export_begin(self) -> tuple[int, dict[str, int], bytes]:
        """(applied index, lineage positions, state blob) at one point of the log, for a peer."""
        with self.lock:
            index = self._applied
            return index, self.store.positions(), self.snapshot_state(index)

    def import_state(
        self, events: Sequence[tuple[str, int, str, bytes]], index: int, state: bytes
    ) -> int:
        """Store a peer's events up to ``index`` (checked, one transaction), then its members."""
        with self.lock:
            stored = self.store.import_events(events, (self.ledger, index))
            self._applied = max(self._applied, index)
            self._live.clear()
            self._trees.clear()
            self._heads = (self._applied, store_heads(self.store))
        self.restore(index, state)
        return stored

    def _take_members(self, index: int, entry: Members) -> None:
        self.members = sorted(set(entry.members)) or self.members
        self._member_changes.append((index, self.members))
        if self.keys is not None and entry.keys:
            where = f"ledger entry {index}"
            self.keys.update({n: decode_sign_key(t, where) for n, t in entry.keys.items()})
