"""The ledger's state transfer (consensus/transfer.py) between two real stores, on every backend.

The peer here is the real ``transfer.serve`` handler called in-process, so the protocol
and the checks are tested apart from the network (tests/test_swarm.py runs it over
ZeroMQ between real nodes); ``Tampering`` stands for a peer that answers wrongly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack
import pytest
from storekit import Backend, MemoryBackend, PostgresBackend, SQLiteBackend
from test_ledger import BASE, MEMBERS, adoption, edit

from consensus import ledger as L
from consensus import transfer
from evolution.errors import ConsensusError, IntegrityError

Rewrite = Callable[[dict[str, Any], Any, Callable[[str, Any], Any]], Any]


class Peer:
    """A requester that reaches ``state``'s bulk handler, optionally rewriting its replies."""

    def __init__(self, state: L.LedgerState, rewrite: Rewrite | None = None) -> None:
        self.handle = transfer.serve(state)
        self.rewrite = rewrite
        self.requests = 0

    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any:
        assert channel == transfer.CHANNEL
        self.requests += 1
        reply = self.handle("node-1", body)
        return self.rewrite(body, reply, self.handle) if self.rewrite else reply


def source_entries() -> list[bytes]:
    """A registration, a members change and 60 cycles, one adoption among them."""
    entries = [L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0)]
    entries.append(L.members_entry([*MEMBERS, "node-4"], "node-1", 1001.0))
    child = edit(BASE, "return 1", "return 10")
    entries.append(L.cycle_entry("g", "node-1", 1, 7, [], [], adoption(BASE, child), 1002.0))
    for voter in ("node-2", "node-3"):
        entries.append(
            L.vote_entry(
                "g",
                L.proposal_id("g", "node-1", 1, adoption(BASE, child).version),
                adoption(BASE, child).version,
                voter,
                True,
                "ok",
                1003.0,
            )
        )
    for cycle in range(2, 61):
        entries.append(L.cycle_entry("g", "node-1", cycle, 7, [], [], None, 1003.0 + cycle))
    return entries


def _past_upto(body: dict[str, Any], reply: Any, handle: Callable[[str, Any], Any]) -> Any:
    if body.get("op") == "events":  # a peer that sends more than it announced at begin
        return handle("node-1", {**body, "upto": body["upto"] + 5})
    if body.get("op") == "begin":
        return {**reply, "positions": {k: v - 5 for k, v in reply["positions"].items()}}
    return reply


def _gap(body: dict[str, Any], reply: Any, handle: Callable[[str, Any], Any]) -> Any:
    if body.get("op") == "events" and len(reply["events"]) > 2:
        return {"events": [reply["events"][0], *reply["events"][2:]]}
    return reply


def _flipped(body: dict[str, Any], reply: Any, handle: Callable[[str, Any], Any]) -> Any:
    if body.get("op") == "events":
        rows = [list(r) for r in reply["events"]]
        raw = bytearray(rows[-1][2])
        raw[-3] ^= 0x01
        rows[-1][2] = bytes(raw)
        return {"events": rows}
    return reply


def _malformed(body: dict[str, Any], reply: Any, handle: Callable[[str, Any], Any]) -> Any:
    return {"index": "ten"} if body.get("op") == "begin" else reply


class TransferTests(Backend):
    """The transfer between two stores of one backend; the concrete classes below pick it."""

    def open_state(self, name: str, members: list[str] = MEMBERS) -> L.LedgerState:
        return L.LedgerState(self.create_store(name), members)

    def source(self) -> L.LedgerState:
        """A peer that applied :func:`source_entries`."""
        state = self.open_state("source")
        state.apply_batch(list(enumerate(source_entries(), 1)))
        return state

    def test_an_empty_node_fetches_everything_and_the_member_list(self) -> None:
        source = self.source()
        target = self.open_state("target")
        seen: list[tuple[int, int]] = []
        got = transfer.fetch(
            Peer(source), target, "node-1", at_least=10, progress=lambda *p: seen.append(p)
        )
        assert (
            got is not None
            and got.index == source.applied_index
            and got.events == len(list(source.store.log()))
        )
        assert seen and seen[-1] == (
            got.events,
            got.events,
        )  # progress ends at the total it announced
        assert target.store.chain("g") == source.store.chain("g")
        assert target.store.head("g").version == source.store.head("g").version
        assert target.applied_index == source.applied_index
        assert target.store.applied(L.LEDGER) == source.applied_index
        assert target.members == sorted(
            [*MEMBERS, "node-4"]
        )  # from the peer, not from this node's config
        target.store.verify()
        # and the ledger goes on from there: the next entry applies on top
        nxt = L.cycle_entry("g", "node-1", 61, 7, [], [], None, 2000.0)
        for state in (source, target):
            state.apply(source.applied_index + 1, nxt)
        assert target.store.chain("g") == source.store.chain("g")

    def test_a_node_with_a_prefix_fetches_only_what_it_lacks(self) -> None:
        source = self.source()
        target = self.open_state("target")
        first = [L.register_entry("g", BASE["genome.toml"], BASE, 1.0, "node-1", 1000.0)]
        target.apply_batch(list(enumerate(first, 1)))
        have = len(list(target.store.log()))
        peer = Peer(source)
        got = transfer.fetch(peer, target, "node-1", at_least=10)
        assert got is not None and got.events == len(list(source.store.log())) - have
        assert target.store.chain("g") == source.store.chain("g")

    def test_a_peer_not_far_enough_is_skipped_and_nothing_changes(self) -> None:
        source = self.source()
        target = self.open_state("target")
        assert (
            transfer.fetch(Peer(source), target, "node-1", at_least=source.applied_index + 1)
            is None
        )
        assert target.store.positions() == {} and target.applied_index == 0

    @pytest.mark.parametrize(
        ("rewrite", "error", "match"),
        [
            (_past_upto, ConsensusError, r"\(up to \d+\) with positions"),
            (_gap, ConsensusError, "out of order"),
            (_flipped, IntegrityError, "position"),
            (_malformed, ConsensusError, "malformed reply"),
        ],
    )
    def test_a_peer_that_answers_wrongly_stores_nothing(
        self, rewrite: Rewrite, error: type, match: str
    ) -> None:
        source = self.source()
        target = self.open_state("target")
        with pytest.raises(error, match=match):
            transfer.fetch(Peer(source, rewrite), target, "node-1", at_least=10)
        assert (
            target.store.positions() == {}
            and target.applied_index == 0
            and target.store.applied(L.LEDGER) is None
        )

    def test_the_bulk_handler_refuses_what_it_does_not_know(self) -> None:
        source = self.source()
        handle = transfer.serve(source)
        with pytest.raises(ConsensusError, match="unknown op"):
            handle("node-2", {"op": "drop tables"})
        with pytest.raises(ConsensusError, match="lineage, after and upto are required"):
            handle("node-2", {"op": "events", "lineage": "x"})
        with pytest.raises(ConsensusError, match="not a map"):
            handle("node-2", [1, 2])

    def test_the_member_list_at_any_index_since_the_last_restore(self) -> None:
        source = self.source()
        """The snapshot blob at an index holds the members in force there (entry 2 added node-4)."""
        assert source.members_at(1) == MEMBERS
        assert source.members_at(2) == sorted([*MEMBERS, "node-4"])
        assert msgpack.unpackb(source.snapshot_state(1))["members"] == MEMBERS
        source.restore(40, source.snapshot_state(1))
        assert source.members == MEMBERS and source.members_at(39) == MEMBERS
        with pytest.raises(ConsensusError, match="snapshot state at ledger index 41 is malformed"):
            source.restore(41, b"\xc1")
        with pytest.raises(ConsensusError, match="malformed"):
            source.restore(41, msgpack.packb({"members": [1, 2]}))

    def test_a_fetched_state_survives_a_reopen_and_the_log_applies_once_over_it(self) -> None:
        source = self.source()
        target = self.open_state("target")
        got = transfer.fetch(Peer(source), target, "node-1", at_least=10)
        assert got is not None
        self.close_store(target.store)
        again = L.LedgerState(self.reopen_store("target"), MEMBERS)
        assert again.applied_index == got.index == again.store.applied(L.LEDGER)
        # the entries the snapshot covered may still be delivered (the log after it surely is)
        out = again.apply_batch(list(enumerate(source_entries(), 1)))
        assert not any(a.written for a in out)
        assert again.store.chain("g") == source.store.chain("g")
        nxt = L.cycle_entry("g", "node-1", 61, 7, [], [], None, 2000.0)
        for state in (source, again):
            assert state.apply(got.index + 1, nxt).written
        assert again.store.chain("g") == source.store.chain("g")
        again.store.verify()


class Peers:
    """A requester that reaches several peers' bulk handlers by name, counting requests."""

    def __init__(self, **states: L.LedgerState) -> None:
        self.handles = {name: transfer.serve(state) for name, state in states.items()}
        self.asked: list[str] = []

    def request(self, peer: str, channel: str, body: Any, timeout: float = 5.0) -> Any:
        assert channel == transfer.CHANNEL
        self.asked.append(peer)
        return self.handles[peer]("node-1", body)


class CommittedKit(Backend):
    """Issue 9, item 4: a node standing on a snapshot takes only the history that
    snapshot committed (its chain heads), or a later state a majority of members report
    alike; a peer serving events the ledger never made is refused, counted, and the node
    gets the state from another peer."""

    def open_state(self, name: str) -> L.LedgerState:
        return L.LedgerState(self.create_store(name), MEMBERS)

    def honest(self, name: str, upto: int | None = None) -> L.LedgerState:
        state = self.open_state(name)
        state.apply_batch(list(enumerate(source_entries()[:upto], 1)))
        return state

    def liar(self, extra_at_the_end: bool) -> L.LedgerState:
        """A peer whose store chains cleanly but holds one event the ledger never made:
        in place of the last real one, or after all of them, under the same index."""
        entries = source_entries()
        state = self.honest("liar", len(entries) - (0 if extra_at_the_end else 1))
        lineage = state.store.load("g")
        when = datetime.fromtimestamp(5000.0, tz=UTC)
        lineage.complete_cycle(60, None, 0, 99, "node-1", timestamp=when)  # seed 99, not 7
        state.store.commit([lineage], (L.LEDGER, len(entries)) if not extra_at_the_end else None)
        return L.LedgerState(state.store, MEMBERS)  # reads its applied index and heads again

    def fetch(
        self, peers: Peers, order: list[str], target: L.LedgerState, committed: bytes
    ) -> tuple[transfer.Fetched | None, int]:
        stopping = threading.Event()
        timer = threading.Timer(60, stopping.set)  # a hang fails, it does not block the run
        timer.start()
        count = [0]
        try:
            got = transfer.fetch_from_any(
                peers,
                target,
                lambda: order,
                1,
                stopping,
                retry=0.05,
                committed=committed,
                refused=lambda: count.__setitem__(0, count[0] + 1),
            )
        finally:
            timer.cancel()
        return got, count[0]


class CommittedTransferTests(CommittedKit):
    """The attacks on a state transfer, with the peers' bulk handlers called in-process."""

    def test_invented_history_at_a_committed_head_is_refused_and_fetched_elsewhere(
        self,
    ) -> None:
        honest = self.honest("honest")
        committed = honest.snapshot_state(honest.applied_index)
        liar = self.liar(extra_at_the_end=False)
        assert liar.applied_index == honest.applied_index
        assert liar.store.positions() == honest.store.positions()  # same length, clean chain
        liar.store.verify()
        assert liar.store.chain("g") != honest.store.chain("g")
        target = self.open_state("target")
        peers = Peers(liar=liar, honest=honest)
        got, refused = self.fetch(peers, ["liar", "honest"], target, committed)
        assert refused == 1 and got is not None and got.peer == "honest"
        assert target.store.chain("g") == honest.store.chain("g")
        assert target.applied_index == honest.applied_index
        target.store.verify()

    def test_an_extra_event_after_the_committed_heads_is_never_imported(self) -> None:
        honest = self.honest("honest")
        committed = honest.snapshot_state(honest.applied_index)
        liar = self.liar(extra_at_the_end=True)
        assert liar.store.positions() != honest.store.positions()  # one event longer
        target = self.open_state("target")
        got, refused = self.fetch(Peers(liar=liar), ["liar"], target, committed)
        assert got is not None and got.peer == "liar" and refused == 0
        assert target.store.positions() == honest.store.positions()
        assert target.store.chain("g") == honest.store.chain("g")

    def test_a_later_state_a_majority_reports_alike_is_taken_whole(self) -> None:
        """Peers that applied more than the snapshot: when a majority of members report
        the same state, it is fetched whole; a lone liar cannot make one."""
        early = self.honest("early", 30)
        committed = early.snapshot_state(early.applied_index)
        one, two = self.honest("one"), self.honest("two")
        target = self.open_state("target")
        got, refused = self.fetch(Peers(one=one, two=two), ["one", "two"], target, committed)
        assert got is not None and got.index == one.applied_index > 30 and refused == 0
        assert target.store.chain("g") == one.store.chain("g")
        # a liar and one honest peer make no majority: the committed heads are the goal
        liar = self.liar(extra_at_the_end=True)
        other = self.open_state("other")
        peers = Peers(liar=liar, one=one)
        got, refused = self.fetch(peers, ["liar", "one"], other, committed)
        assert got is not None and got.index == early.applied_index and refused == 0
        assert other.store.chain("g") == early.store.chain("g")


class TestCommittedTransferSQLite(SQLiteBackend, CommittedTransferTests):
    pass


class TestCommittedTransferMemory(MemoryBackend, CommittedTransferTests):
    pass


class TestTransferMemory(MemoryBackend, TransferTests):
    pass


class TestTransferSQLite(SQLiteBackend, TransferTests):
    pass


@pytest.mark.postgres
class TestTransferPostgres(PostgresBackend, TransferTests):
    pass


class TestCommittedTransferOverSockets(SQLiteBackend, CommittedKit):
    """The same attack between three real CurveZMQ transports on 127.0.0.1: the node asks
    the liar first, refuses its invented history, counts it, and takes the honest
    peer's state."""

    def test_a_liar_over_the_network_is_refused_and_the_honest_peer_serves(self) -> None:
        from runtime.keys import generate_keypair
        from runtime.testing import free_port
        from runtime.transport import Peer as Address
        from runtime.transport import Transport

        honest = self.honest("honest")
        committed = honest.snapshot_state(honest.applied_index)
        liar, target = self.liar(extra_at_the_end=False), self.open_state("target")
        names = ["node-1", "node-2", "node-3"]
        keys = {n: generate_keypair() for n in names}
        ends = {n: f"tcp://127.0.0.1:{free_port()}" for n in names}
        nets = {
            n: Transport(
                n, ends[n], *keys[n], [Address(p, ends[p], keys[p][0]) for p in names if p != n]
            )
            for n in names
        }
        nets["node-2"].serve(transfer.CHANNEL, transfer.serve(liar))
        nets["node-3"].serve(transfer.CHANNEL, transfer.serve(honest))
        for net in nets.values():
            net.start()
        try:
            got, refused = self.fetch(nets["node-1"], ["node-2", "node-3"], target, committed)  # type: ignore[arg-type]
        finally:
            for net in nets.values():
                net.stop()
        assert refused == 1 and got is not None and got.peer == "node-3"
        assert target.store.chain("g") == honest.store.chain("g")
        assert target.applied_index == honest.applied_index
