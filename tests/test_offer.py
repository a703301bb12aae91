"""A peer's Incubator runs only committed candidates (issue 9, roles per key), tried as an
attacker would: with a member's real key and transport against real nodes (ZeroMQ, Raft,
SQLite, the sandbox) in this process.

The ledger part (the ``offer`` entry, the bounded offers in the ledger state and its
snapshot) is tested on a real store first; then the refusals and the bounded answers
over real sockets; then a whole swarm that evolves with ``evolution.spread`` on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from swarmkit import TINY, in_process_swarm, spread_swarm, wait

from actors.incubator import Incubator
from actors.messages import REMOTE_TYPES, Incubate, IncubateOffered
from actors.spread import TEXT_CAP, OfferedIncubator, bounded
from actors.supervisor import Supervisor
from consensus import entries as E
from consensus import ledger as L
from consensus import offers as O
from events.store import GenomeStore
from evolution.errors import ConsensusError
from evolution.generate import Candidate, candidate_id
from evolution.manifest import parse_manifest
from evolution.patch import make_patch
from evolution.tree import Tree, version_id
from node import SwarmNode
from runtime.genome_files import load_genome
from runtime.incubation import IncubationReport
from runtime.remote import Codec, Refused, RemoteActorRef

MEMBERS = ["node-1", "node-2", "node-3"]
PINNED_OFFER = (
    "87a474797065a56f66666572a667656e6f6d65a167a46e6f6465a66e6f64652d31a26964a26f30a670617265"
    "6e74a27030aa63616e646964617465739182a963616e646964617465a26330a57061746368ac2d2d2d20610a"
    "2b2b2b20620aa26174cb408f400000000000"
)
REGISTER = L.register_entry(
    "g", '[genome]\nname = "g"\n', {"genome.toml": '[genome]\nname = "g"\n'}, 1.0, "node-1", 1.0
)


def offer(n: int, *, node: str = "node-1", patches: list[str] | None = None) -> bytes:
    pairs = [(f"c{i}", p) for i, p in enumerate(patches or ["--- a\n+++ b\n"])]
    return E.offer_entry("g", node, f"o{n}", "p0", pairs, 1000.0 + n)


# ---- the entry and the ledger state ----------------------------------------------------


def test_the_offer_entry_is_pinned_and_both_decoders_agree() -> None:
    data = offer(0)
    assert data.hex() == PINNED_OFFER
    typed = E.Offer("g", "node-1", "o0", "p0", [E.Offered("c0", "--- a\n+++ b\n")], 1000.0)
    assert E.decode(data) == typed == E.parse(E.read_map(data)) == E.fast_decode(data)
    assert E.authored_by("node-1", data) and not E.authored_by("node-2", data)
    bad = msgpack.unpackb(data)
    bad["candidates"] = [{"candidate": "c0", "patch": 7}]
    with pytest.raises(ConsensusError, match=r"offer entry: field 'candidates\[0\].patch'"):
        E.decode(msgpack.packb(bad))
    # the id is the same on every node, and another for another moment or another node
    first = E.offer_id("g", "node-1", "p0", ["c0"], 1000.0)
    assert first == E.offer_id("g", "node-1", "p0", ["c0"], 1000.0)
    assert first != E.offer_id("g", "node-1", "p0", ["c0"], 1000.5)
    assert first != E.offer_id("g", "node-2", "p0", ["c0"], 1000.0)


def test_offers_are_kept_bounded_and_ride_in_the_snapshot() -> None:
    state = L.LedgerState(GenomeStore.open("memory://"), MEMBERS)
    batch = [(1, REGISTER)] + [(2 + n, offer(n)) for n in range(O.KEPT + 4)]
    results = state.apply_batch(batch)
    assert all(r.kind == "offer" and r.decided == {} for r in results[1:])
    assert len(state.offers) == O.KEPT
    assert state.offers.get("o0") is None, "the oldest offers are forgotten"
    newest = state.offers.get(f"o{O.KEPT + 3}")
    assert newest is not None and newest.candidates[0].patch == "--- a\n+++ b\n"
    assert [e.type for e in state.store.log()] == ["Registered"], "offers write no event"
    # a snapshot at an index holds the offers committed up to it, and a node restores them
    blob = state.snapshot_state(2 + O.KEPT)
    other = L.LedgerState(GenomeStore.open("memory://"), ["node-9"])
    other.restore(2 + O.KEPT, blob)
    assert other.members == MEMBERS
    assert other.offers.get(f"o{O.KEPT}") is not None
    assert other.offers.get(f"o{O.KEPT + 1}") is None, "committed after the snapshot's index"
    # a snapshot from before offers existed restores with none; a forged one is refused
    old = L.LedgerState(GenomeStore.open("memory://"), ["node-9"])
    old.restore(5, msgpack.packb({"members": MEMBERS}))
    assert len(old.offers) == 0 and old.members == MEMBERS
    forged = msgpack.packb({"members": MEMBERS, "offers": [[3, REGISTER]]})
    with pytest.raises(ConsensusError, match="Register entry among the offers"):
        old.restore(5, forged)


def test_an_offer_over_the_bounds_is_skipped_on_every_node() -> None:
    huge = offer(1, patches=["x" * (O.MAX_BYTES + 1)])
    many = offer(2, patches=["p"] * (O.MAX_CANDIDATES + 1))
    states = [L.LedgerState(GenomeStore.open("memory://"), MEMBERS) for _ in range(2)]
    for state in states:
        state.apply_batch([(1, REGISTER), (2, huge), (3, many)])
        assert state.rejected_entries == 2 and len(state.offers) == 0
        assert state.applied_index == 3


def test_a_restarted_node_knows_the_offers_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with GenomeStore.open(url) as store:
        L.LedgerState(store, MEMBERS).apply_batch([(1, REGISTER), (2, offer(1))])
    with GenomeStore.open(url) as store:
        again = L.LedgerState(store, MEMBERS)
        assert again.offers.get("o1") is None
        results = again.apply_batch([(1, REGISTER), (2, offer(1))])  # the engine re-delivers
        assert [r.written for r in results] == [False, False]
        assert again.offers.get("o1") is not None


# ---- refusals and bounded answers over real sockets ------------------------------------


@pytest.fixture
def swarm(tmp_path: Path) -> Iterator[list[SwarmNode]]:
    with in_process_swarm(tmp_path, TINY) as nodes:
        _, tree = load_genome(TINY)
        nodes[0].propose(
            L.register_entry("tiny", tree["genome.toml"], tree, 1.0, nodes[0].id, time.time())
        )
        wait(lambda: all("tiny" in n.store.genomes() for n in nodes), what="registration")
        for node in nodes:
            node.spread.offer_wait = 1.0  # an offer never committed is refused within a second
        yield nodes


def edited(tree: Tree, old: str, new: str) -> Candidate:
    child = dict(tree)
    child["tiny/core.py"] = child["tiny/core.py"].replace(old, new)
    assert child != tree
    parent = version_id(tree)
    patch = make_patch(tree, child)
    return Candidate(candidate_id(parent, patch), parent, patch, "test", "test", "", "", 0, "")


def committed(node: SwarmNode, candidates: list[Candidate]) -> str:
    """An offer of ``candidates`` committed in ``node``'s name, as its evolver does it."""
    parent, at = candidates[0].parent, time.time()
    oid = E.offer_id("tiny", node.id, parent, [c.id for c in candidates], at)
    pairs = [(c.id, c.patch) for c in candidates]
    node.propose(E.offer_entry("tiny", node.id, oid, parent, pairs, at))
    return oid


def incubator(asker: SwarmNode, peer: SwarmNode, codec: Codec | None = None) -> RemoteActorRef:
    return RemoteActorRef(asker.transport, peer.id, "incubator", codec or Codec(REMOTE_TYPES))


def test_the_old_incubate_from_a_member_is_refused_and_never_runs(
    swarm: list[SwarmNode], tmp_path: Path
) -> None:
    """node-1's key sends node-2 a manifest of its own whose test writes a marker file."""
    marker = tmp_path / "pwned"
    manifest = parse_manifest(
        f"""
[genome]
name = "tiny"
sources = ["tiny/*.py"]

[commands]
test = ["python", "-c", "open({str(marker)!r}, 'w').write('ran')"]
bench = ["python", "-c", "print('{{\\"seconds\\": 1}}')"]

[fitness]
metric = "seconds"
direction = "minimize"
"""
    )
    _, tree = load_genome(TINY)
    forged = Candidate("c-evil", version_id(tree), "", "evil", "evil", "", "", 0, "")
    codec = Codec([Incubate, type(manifest), Candidate, IncubationReport])  # the attacker's own
    victim = swarm[1]
    with pytest.raises(Refused, match="is not a message type this node accepts"):
        incubator(swarm[0], victim, codec).ask(Incubate(manifest, tree, forged, 1), timeout=30)
    assert victim.counters["refused_incubations"] == 1
    assert victim.counters["incubated_for_peers"] == 0
    assert victim.status()["counters"]["refused_incubations"] == 1, "tars cluster status shows it"
    time.sleep(1.0)  # nothing is running late either
    assert not marker.exists()


def test_a_reference_to_an_offer_never_committed_is_refused(swarm: list[SwarmNode]) -> None:
    asker, victim = swarm[0], swarm[1]
    with pytest.raises(Refused, match="offer nope of tiny is not committed here"):
        incubator(asker, victim).ask(IncubateOffered("tiny", "nope", "c1", 3), timeout=30)
    # a committed offer is only its author's to ask about, and only for its own candidates
    _, tree = load_genome(TINY)
    good = edited(tree, '"""How many of ``words`` are common words."""', '"""Count them."""')
    oid = committed(asker, [good])
    with pytest.raises(Refused, match=f"offer {oid} is node-1's, not node-3's"):
        incubator(swarm[2], victim).ask(IncubateOffered("tiny", oid, good.id, 3), timeout=30)
    with pytest.raises(Refused, match="is not in offer"):
        incubator(asker, victim).ask(IncubateOffered("tiny", oid, "other", 3), timeout=30)
    with pytest.raises(Refused, match="not committed here"):
        incubator(asker, victim).ask(IncubateOffered("other", oid, good.id, 3), timeout=30)
    # committed, but for a genome or a parent version this node does not hold
    for genome, parent, why in (
        ("ghost", good.parent, "genome ghost is not known here"),
        ("tiny", "f" * 64, "version ffffffffffff of tiny is not applied here"),
    ):
        pairs = [(good.id, good.patch)]
        ref = E.offer_id(genome, asker.id, parent, [good.id], 1.0)
        asker.propose(E.offer_entry(genome, asker.id, ref, parent, pairs, 1.0))
        with pytest.raises(Refused, match=why):
            incubator(asker, victim).ask(IncubateOffered(genome, ref, good.id, 3), timeout=30)
    assert victim.counters["refused_incubations"] == 6
    assert victim.counters["incubated_for_peers"] == 0


def test_a_committed_offer_is_proven_on_the_peer_and_the_answer_is_bounded(
    swarm: list[SwarmNode],
) -> None:
    asker, peer = swarm[0], swarm[1]
    _, tree = load_genome(TINY)
    good = edited(tree, '"""How many of ``words`` are common words."""', '"""Count them."""')
    loud = edited(
        tree,
        '"""Word counting, written plainly."""',
        '"""Word counting."""\nimport sys\nsys.stderr.write("S" * (1 << 20))\nraise SystemExit(1)',
    )
    oid = committed(asker, [good, loud])
    ref = incubator(asker, peer)
    report = ref.ask(IncubateOffered("tiny", oid, good.id, 3), timeout=120)
    assert isinstance(report, IncubationReport) and report.candidate == good.id
    assert report.tests_passed and report.parent_samples and report.candidate_samples
    failed = ref.ask(IncubateOffered("tiny", oid, loud.id, 3), timeout=120)
    assert failed.candidate == loud.id and not failed.tests_passed
    assert len(failed.detail.encode()) <= TEXT_CAP
    assert failed.failure is None or len(failed.failure.encode()) <= TEXT_CAP
    assert peer.counters["incubated_for_peers"] == 2
    with pytest.raises(Refused, match="was proven here already"):  # once per candidate
        ref.ask(IncubateOffered("tiny", oid, good.id, 3), timeout=30)


def test_a_report_is_cut_to_its_bounds() -> None:
    big = IncubationReport(
        "c1",
        False,
        "é" * (1 << 20),
        "S" * (1 << 20),
        tuple(float(i) for i in range(10_000)),
        (1.0,),
        extra={f"k{i}" * 50: float(i) for i in range(1000)},
    )
    cut = bounded(big, "c1")
    assert len(cut.detail.encode()) <= TEXT_CAP and cut.detail.startswith("SSS")
    assert cut.failure is not None and len(cut.failure.encode()) <= TEXT_CAP
    assert len(cut.parent_samples) == 256 and cut.candidate_samples == (1.0,)
    assert len(cut.extra) == 32 and all(len(k) <= 64 for k in cut.extra)
    small = IncubationReport("c1", True, None, "ok", (1.0, 2.0), (0.5,), 1.0, 2.0, 3, {"a": 1.0})
    assert bounded(small, "c1") == small, "a report within the bounds is unchanged"
    for forged in (
        IncubationReport("c1", "yes", None, "ok"),  # type: ignore[arg-type]
        IncubationReport("c1", True, None, "ok", ("fast",)),  # type: ignore[arg-type]
        IncubationReport("c1", True, None, 7),  # type: ignore[arg-type]
        IncubationReport("c1", True, None, "ok", measure="anything"),
    ):
        with pytest.raises(Refused, match="malformed"):
            bounded(forged, "c1")


def test_a_refusal_falls_back_to_a_local_incubator_and_the_peer_stays_pooled(
    swarm: list[SwarmNode],
) -> None:
    """The leader's side: its pool holds a local incubator and a peer's; the peer refuses."""
    asker, peer = swarm[0], swarm[1]
    supervisor = Supervisor()
    supervisor.start("incubator", lambda: Incubator.start(asker.node.sandbox), size=1)
    remote = OfferedIncubator(incubator(asker, peer))
    supervisor.add("incubator", remote)
    try:
        manifest, tree = load_genome(TINY)
        good = edited(tree, '"""How many of ``words`` are common words."""', '"""Count."""')
        other = edited(tree, '"""Word counting, written plainly."""', '"""Counting."""')
        # two messages: the second goes to the peer, which never saw offer "never"
        asks = [Incubate(manifest, tree, c, 2, "never") for c in (good, other)]
        reports = supervisor.ask_all("incubator", asks, timeout=120)
        assert [r.candidate for r in reports] == [good.id, other.id]
        assert all(r.tests_passed for r in reports), "proven here, on the local incubator"
        assert supervisor.refused == 1 and peer.counters["refused_incubations"] == 1
        assert remote in supervisor.refs("incubator"), "a refusal is not a dead peer"
        assert supervisor.restarts("incubator") == 0
        # a candidate with no committed offer is never sent at all
        asked = remote.ref.asks
        local_only = [Incubate(manifest, tree, c, 2) for c in (good, other)]
        assert len(supervisor.ask_all("incubator", local_only, timeout=120)) == 2
        assert remote.ref.asks == asked and supervisor.refused == 2
    finally:
        supervisor.stop_all()


# ---- the whole swarm, evolving with spread on ------------------------------------------


def test_with_spread_on_the_swarm_adopts_wins_proven_on_peers(tmp_path: Path) -> None:
    with spread_swarm(tmp_path) as nodes:

        def adopted() -> bool:
            return all(
                "tiny" in n.store.genomes() and n.store.head("tiny").versions_count >= 2
                for n in nodes
            )

        wait(adopted, timeout=300, what="a win adopted on every node")
        served = sum(n.counters["incubated_for_peers"] for n in nodes)
        assert served > 0, "peers proved some of the leader's candidates"
        assert all(len(n.state.offers) > 0 for n in nodes), "every node holds the offers"
        assert sum(n.counters["refused_incubations"] for n in nodes) == 0


def test_a_peers_figures_are_kept_bounded_and_forged_ones_refused() -> None:
    """A limit on peak memory must see a peer's figures: dropped, every remote candidate would
    fail it as "not measured"; unbounded or forged, a peer could flood or lie in any shape."""
    kept = IncubationReport(
        "c1", True, None, "ok", (1.0, 2.0), (0.5, 1.0),
        parent_figures={"peak_memory_mb": 7.5, "lines": 12000.0},
        candidate_figures={"peak_memory_mb": 12.7, "lines": 6000.0},
    )  # fmt: skip
    assert bounded(kept, "c1") == kept
    flood = IncubationReport(
        "c1", True, None, "ok", candidate_figures={f"f{i}" * 40: 1.0 for i in range(1000)}
    )
    cut = bounded(flood, "c1")
    assert len(cut.candidate_figures) == 32 and all(len(k) <= 64 for k in cut.candidate_figures)
    for figures in ({"peak_memory_mb": float("nan")}, {"lines": "12000"}, {7: 1.0}, [1.0]):
        forged = IncubationReport("c1", True, None, "ok", parent_figures=figures)  # type: ignore[arg-type]
        with pytest.raises(Refused, match="malformed"):
            bounded(forged, "c1")
